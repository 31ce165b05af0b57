#!/usr/bin/env bash
# Lint, type-check, check the import contracts, then run the tests: all from Locard's venv.
#
#   scripts/test.sh                  # everything
#   scripts/test.sh -m 'not slow'    # arguments go to pytest
#
# Stops at the first failing step and exits with its status. pytest's "no tests collected" (exit 5)
# counts as a failure: there are tests, so collecting none means something is wrong.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO_ROOT"

VENV=${LOCARD_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$REPO_ROOT/$VENV ;; esac
[[ -x $VENV/bin/python ]] || { echo "test.sh: no virtual environment at $VENV; run scripts/install.sh" >&2; exit 1; }

export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false \
    OMP_THREAD_LIMIT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PATH="$VENV/bin:$PATH"

step() {
    local name=$1 rc=0
    shift
    printf '==> %s\n' "$name"
    "$@" || rc=$?
    if [[ $rc -ne 0 ]]; then
        [[ $name == pytest* && $rc -eq 5 ]] && echo "test.sh: pytest collected no tests" >&2
        echo "test.sh: FAILED: $name (exit $rc)" >&2
        exit "$rc"
    fi
}

step "ruff check" "$VENV/bin/ruff" check .
step "mypy" "$VENV/bin/mypy"
step "lint-imports" "$VENV/bin/lint-imports"
step "pytest $*" "$VENV/bin/pytest" "$@"
echo "==> all checks passed"

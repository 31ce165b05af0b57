# shellcheck shell=bash
# Shell helpers shared by Locard's scripts (sourced, not run). Set SCRIPT_NAME before sourcing.
say() { printf '==> %s\n' "$*"; }
die() { printf '%s: error: %s\n' "${SCRIPT_NAME:-locard}" "$*" >&2; exit 1; }
as_root() {
    if [[ $EUID -eq 0 ]]; then "$@"
    elif command -v sudo >/dev/null; then sudo -- "$@"
    else die "'$*' needs root (and sudo is not available)"
    fi
}

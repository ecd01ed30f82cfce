#!/usr/bin/env bash
# Creates .venv-STACK with one of the other supported stacks (tools/stacks/STACK.txt): the
# oldest (torch2.1) and the newest (torch2.15) ends of the range pyproject.toml declares.
#
#   bash tools/setup_stack.sh torch2.1
#
# The file's `# python: X.Y` line picks the interpreter; the rest are pip constraints. mmcv is
# built *without* its compiled ops (`MMCV_WITH_OPS=0`, about a minute instead of 20): the
# stacks' test subset (tools/test_stacks.sh) needs mmcv.cnn and mmcv.transforms, not mmcv.ops,
# which mmdet's and mmseg's models import, so mmdet and mmseg are installed (the install check
# below needs them) but not imported there. The wheel is built once per stack into
# $MMBCN_WHEELHOUSE/STACK and reused.
#
# The last step checks what a user with this torch gets from `pip install -e '.[tests]'`
# *without* any constraint: pip's dry run must keep the stack's torch (mmbcn pins no
# torch-bound package).
set -euo pipefail

cd "$(dirname "$0")/.."
STACK=${1:?usage: tools/setup_stack.sh STACK (a file in tools/stacks, without .txt)}
CONSTRAINTS=tools/stacks/$STACK.txt
[ -f "$CONSTRAINTS" ] || { echo "no stack file $CONSTRAINTS" >&2; exit 2; }
VENV=.venv-$STACK
WHEELHOUSE=${MMBCN_WHEELHOUSE:-$HOME/.cache/mmbcn/wheels}/$STACK
PYTHON_VERSION=$(sed -n 's/^# python: *//p' "$CONSTRAINTS")
MMCV_VERSION=$(sed -n 's/^mmcv==//p' "$CONSTRAINTS")
TORCH_VERSION=$(sed -n 's/^torch==//p' "$CONSTRAINTS")

step() { printf '\n==> %s [%s] %s\n' "$(date -u +%T)" "$STACK" "$*"; }  # the time: CI's log shows where its minutes go

# pythonX.Y on PATH, else pyenv's newest X.Y (pyenv's shims answer only for its active versions).
find_python() {
    if "python$1" -c pass 2>/dev/null; then echo "python$1"; return; fi
    if command -v pyenv >/dev/null; then
        local full
        full=$(pyenv versions --bare | grep -E "^$1\.[0-9]+$" | tail -n 1)
        if [ -n "$full" ]; then echo "$(pyenv root)/versions/$full/bin/python$1"; return; fi
    fi
    echo "error: no python$1 found; install Python $1 (the stack file asks for it)" >&2
    exit 2
}

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV with python$PYTHON_VERSION"
    "$(find_python "$PYTHON_VERSION")" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# PIP_CONFIG_FILE=/dev/null: this machine's pip configuration caps torch below the newest
# release (see ../shared/STACK.md); the stack file holds every version that matters.
PIP=(env PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --disable-pip-version-check
     -c "$CONSTRAINTS")

step "build tools, torch $TORCH_VERSION, numpy"
"${PIP[@]}" setuptools wheel torch numpy

mmcv_wheel() { ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1; }
if [ -z "$(mmcv_wheel)" ]; then
    step "building mmcv $MMCV_VERSION without ops into $WHEELHOUSE (once)"
    # mmcv's setup.py names an ops-less build 'mmcv-lite', which does not satisfy the 'mmcv'
    # that mmbcn, mmdet, mmseg and mmpretrain require: the build keeps the name 'mmcv' (one
    # edit of the unpacked sdist's setup.py; the package's code is untouched).
    source=$(mktemp -d)
    MMCV_WITH_OPS=1 env PIP_CONFIG_FILE=/dev/null "$PY" -m pip download --no-deps \
        --no-binary mmcv --no-build-isolation -d "$source" "mmcv==$MMCV_VERSION"
    tar -xzf "$source"/mmcv-"$MMCV_VERSION".tar.gz -C "$source"
    sed -i "s/ else 'mmcv-lite'/ else 'mmcv'/" "$source/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$WHEELHOUSE"
    MMCV_WITH_OPS=0 env PIP_CONFIG_FILE=/dev/null "$PY" -m pip wheel --no-deps \
        --no-build-isolation -w "$WHEELHOUSE" "$source/mmcv-$MMCV_VERSION"
    rm -rf "$source"
fi

step "OpenMMLab stack and mmbcn (editable) with its test tools"
"${PIP[@]}" "$(mmcv_wheel)" mmengine torchvision
"${PIP[@]}" --no-build-isolation -e ".[tests]"

step "checking the stack"
"$PY" -m pip check
"$PY" - <<'PY'
import mmcv, mmengine, numpy, torch
import mmbcn  # noqa: F401
print(f'torch {torch.__version__}, numpy {numpy.__version__}, mmcv {mmcv.__version__} '
      f'(no ops), mmengine {mmengine.__version__}')
PY

step "pip install -e '.[tests]' without constraints keeps torch $TORCH_VERSION"
report=$(env PIP_CONFIG_FILE=/dev/null "$PY" -m pip install --disable-pip-version-check \
    --dry-run --no-build-isolation -e ".[tests]" 2>&1)
if grep -E '^Would install .*\btorch-[0-9]' <<<"$report"; then
    echo "error: installing mmbcn would replace torch $TORCH_VERSION" >&2
    exit 1
fi
echo "torch $TORCH_VERSION kept"

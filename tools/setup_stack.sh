#!/usr/bin/env bash
# Creates .venv-STACK with one of the other tested stacks (tools/stacks/STACK.txt): the oldest
# (torch2.1) and the newest (torch2.15) ends of the torch range pyproject.toml declares, with
# upstream OpenMMLab, and the onedl fork family (onedl) on the main stack's torch.
#
#   bash tools/setup_stack.sh torch2.1
#
# The file's `# python: X.Y` line picks the interpreter, `# family: upstream|onedl` the OpenMMLab
# family (mmbcn.openmmlab_family; upstream when absent) and `# mmcv ops: yes|no` whether mmcv is
# built with its compiled ops; the rest are pip constraints. Upstream mmcv is built *without* its
# ops (`MMCV_WITH_OPS=0`, about a minute instead of 20): the stacks' test subset
# (tools/test_stacks.sh) needs mmcv.cnn and mmcv.transforms, not mmcv.ops, which mmdet's and
# mmseg's models import, so mmdet and mmseg are installed (the install check below needs them)
# but not imported there. onedl-mmcv is built with its ops (its setup.py builds them whenever
# torch imports), and the onedl stack also runs the tests marked mmcv_ops. The wheel is built
# once per stack and torch into $MMBCN_WHEELHOUSE/STACK/torchX.Y.Z and reused; nothing else is
# cached (pip runs with --no-cache-dir: the registry's torch is a CUDA build of several GB, and
# a second copy in pip's cache is what filled CI's disk).
#
# The last step checks what a user with this stack gets from `pip install -e '.[tests,FAMILY]'`
# *without* any constraint: pip's dry run must keep the stack's torch and every OpenMMLab
# package of either family (mmbcn requires none of them; its family extra accepts the stack's).
set -euo pipefail

cd "$(dirname "$0")/.."
STACK=${1:?usage: tools/setup_stack.sh STACK (a file in tools/stacks, without .txt)}
CONSTRAINTS=tools/stacks/$STACK.txt
[ -f "$CONSTRAINTS" ] || { echo "no stack file $CONSTRAINTS" >&2; exit 2; }
VENV=.venv-$STACK
PYTHON_VERSION=$(sed -n 's/^# python: *//p' "$CONSTRAINTS")
FAMILY=$(sed -n 's/^# family: *//p' "$CONSTRAINTS")
FAMILY=${FAMILY:-upstream}
MMCV_OPS=$(sed -n 's/^# mmcv ops: *//p' "$CONSTRAINTS")
MMCV_OPS=${MMCV_OPS:-no}
case $FAMILY in
    upstream) MMCV=mmcv; MMENGINE=mmengine ;;
    onedl) MMCV=onedl-mmcv; MMENGINE=onedl-mmengine ;;
    *) echo "unknown family '$FAMILY' in $CONSTRAINTS" >&2; exit 2 ;;
esac
MMCV_VERSION=$(sed -n "s/^$MMCV==//p" "$CONSTRAINTS")
TORCH_VERSION=$(sed -n 's/^torch==//p' "$CONSTRAINTS")
# mmcv's compiled ops serve only the torch they were built against: one wheel folder per torch.
WHEELHOUSE=${MMBCN_WHEELHOUSE:-$HOME/.cache/mmbcn/wheels}/$STACK/torch$TORCH_VERSION

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

# A stack takes up to 7 GB: refuse at once, with the numbers, rather than fail inside pip.
NEEDED_GB=8
if [ ! -x "$VENV/bin/python" ]; then
    free_gb=$(df -P -BG . | awk 'NR == 2 {sub("G", "", $4); print $4}')
    if [ "$free_gb" -lt "$NEEDED_GB" ]; then
        echo "error: $VENV needs about $NEEDED_GB GB (torch $TORCH_VERSION with its libraries," \
             "OpenMMLab, the test tools); $free_gb GB are free on $(df -P . | awk 'NR == 2 {print $6}')." \
             "Free some space (other .venv-* folders: make clean-env) and run it again." >&2
        exit 1
    fi
    step "creating $VENV with python$PYTHON_VERSION"
    "$(find_python "$PYTHON_VERSION")" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# PIP_CONFIG_FILE=/dev/null: this machine's pip configuration caps torch below the newest
# release (see ../shared/STACK.md); the stack file holds every version that matters.
PIP=(env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PY" -m pip install
     --disable-pip-version-check -c "$CONSTRAINTS")

step "build tools, torch $TORCH_VERSION, numpy"
"${PIP[@]}" setuptools wheel packaging torch numpy

# A wheel's file name spells the distribution with underscores (onedl_mmcv-2.3.6-...).
mmcv_wheel() { ls "$WHEELHOUSE"/"${MMCV//-/_}"-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1; }
if [ -z "$(mmcv_wheel)" ] && [ "$MMCV_OPS" = yes ]; then
    step "building $MMCV $MMCV_VERSION with its ops into $WHEELHOUSE (once)"
    mkdir -p "$WHEELHOUSE"
    # --no-build-isolation: the build imports the stack's torch, against which the ops are built.
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PY" -m pip \
        wheel --no-deps --no-build-isolation --no-binary "$MMCV" -c "$CONSTRAINTS" \
        -w "$WHEELHOUSE" "$MMCV==$MMCV_VERSION"
elif [ -z "$(mmcv_wheel)" ]; then
    [ "$FAMILY" = upstream ] || { echo "an ops-less build is set up for upstream mmcv only" >&2; exit 2; }
    step "building mmcv $MMCV_VERSION without ops into $WHEELHOUSE (once)"
    # mmcv's setup.py names an ops-less build 'mmcv-lite', which does not satisfy the 'mmcv'
    # that mmdet, mmseg and mmpretrain (and mmbcn's upstream extra) require: the build keeps the
    # name 'mmcv' (one edit of the unpacked sdist's setup.py; the package's code is untouched).
    source=$(mktemp -d)
    MMCV_WITH_OPS=1 env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PY" -m pip download --no-deps \
        --no-binary mmcv --no-build-isolation -d "$source" "mmcv==$MMCV_VERSION"
    tar -xzf "$source"/mmcv-"$MMCV_VERSION".tar.gz -C "$source"
    sed -i "s/ else 'mmcv-lite'/ else 'mmcv'/" "$source/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$WHEELHOUSE"
    MMCV_WITH_OPS=0 env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PY" -m pip wheel --no-deps \
        --no-build-isolation -w "$WHEELHOUSE" "$source/mmcv-$MMCV_VERSION"
    rm -rf "$source"
fi

step "OpenMMLab stack ($FAMILY) and mmbcn (editable) with its test tools"
"${PIP[@]}" "$(mmcv_wheel)" "$MMENGINE" torchvision
# The family's extra installs its toolboxes (mmdet, mmseg, mmpretrain) at the stack's versions.
"${PIP[@]}" --no-build-isolation -e ".[tests,$FAMILY]"
# As tools/setup_env.sh: `pkg::` config bases through whichever distribution provides the
# module, from the interpreter's start (a .pth file in site-packages), for scripts that read an
# mmbcn config before importing mmbcn.
"$PY" -c 'from mmbcn.patches.config_bases import write_startup_file; print(write_startup_file())'

step "checking the stack"
"$PY" -m pip check
MMBCN_STACK_OPS=$MMCV_OPS "$PY" - <<'PY'
import os

import mmcv, mmengine, numpy, torch
import mmbcn  # noqa: F401
from mmbcn.openmmlab_family import installed_family, mmcv_ops_problem

ops = mmcv_ops_problem()
wanted = os.environ['MMBCN_STACK_OPS'] == 'yes'
assert (ops is None) == wanted, f'mmcv ops: {ops or "available"}, the stack file says {wanted}'
if wanted:
    import mmdet, mmpretrain, mmseg  # noqa: F401  (they import mmcv.ops)
print(f'{installed_family()} family: torch {torch.__version__}, numpy {numpy.__version__}, '
      f'mmcv {mmcv.__version__} ({"with" if wanted else "no"} ops), '
      f'mmengine {mmengine.__version__}')
PY

step "pip install -e '.[tests,$FAMILY]' without constraints keeps torch $TORCH_VERSION and OpenMMLab"
report=$(env PIP_CONFIG_FILE=/dev/null PIP_NO_CACHE_DIR=1 "$PY" -m pip install --disable-pip-version-check \
    --dry-run --no-build-isolation -e ".[tests,$FAMILY]" 2>&1)
# torch, and each OpenMMLab distribution of either family (mmbcn.openmmlab_family.FAMILIES).
KEPT='torch|mmengine|mmcv|mmcv[-_]lite|mmdet|mmsegmentation|mmpretrain|onedl[-_][a-z0-9_-]+'
if planned=$(grep -E '^Would install' <<<"$report" | tr ' ' '\n' |
             grep -Ei "^($KEPT)-[0-9]"); then
    echo "error: installing mmbcn would replace: $planned" >&2
    echo "$report" >&2
    exit 1
fi
echo "torch $TORCH_VERSION and the $FAMILY family's packages kept"

#!/usr/bin/env bash
# Creates the project environment in .venv with the pinned OpenMMLab stack.
#
# Versions (see README "Install"): torch 2.13.0 CPU, mmengine 0.10.7, mmcv 2.1.0 built
# from source with its ops (mmdet 3.3.0 / mmseg 1.2.2 need mmcv < 2.2.0 and mmcv.ops),
# mmdet 3.3.0, mmsegmentation 1.2.2,
# mmpretrain 1.2.0 (with torchvision 0.28.0), openmim 0.3.8 (the `mim` extra, in `tests`: see
# pyproject.toml for why not 0.3.9), triton 3.5.1 (the kernels' interpreter tests). The other
# supported stacks: tools/setup_stack.sh.
#
# mmcv has only an sdist on PyPI and takes ~13 minutes to build on 2 cores, so the wheel
# is built once into $MMBCN_WHEELHOUSE (default ~/.cache/mmbcn/wheels) and reused.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
WHEELHOUSE=${MMBCN_WHEELHOUSE:-$HOME/.cache/mmbcn/wheels}
PYTHON=${PYTHON:-python3}
MMCV_VERSION=2.1.0

step() { printf '\n==> %s %s\n' "$(date -u +%T)" "$*"; }  # the time: CI's log shows where its minutes go

if [ ! -x "$VENV/bin/python" ]; then
    step "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# Every install is held to the versions the README's figures came from.
PIP=("$PY" -m pip install --disable-pip-version-check -c tools/constraints.txt)

step "build tools and torch (CPU wheel)"
# mmcv's setup.py imports pkg_resources, which setuptools 81 dropped; torch wants >=77.
"${PIP[@]}" "setuptools>=77,<81" wheel "torch==2.13.0" "numpy>=1.24"

mmcv_wheel() { ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1; }
if [ -z "$(mmcv_wheel)" ]; then
    step "building mmcv $MMCV_VERSION with ops into $WHEELHOUSE (about 13 minutes on 2 cores, once)"
    mkdir -p "$WHEELHOUSE"
    # --no-build-isolation: mmcv imports torch at build time; in an isolated build it
    # silently builds without ops.
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --no-deps \
        -c tools/constraints.txt \
        --no-build-isolation --no-binary mmcv -w "$WHEELHOUSE" "mmcv==$MMCV_VERSION"
fi

step "OpenMMLab stack"
# torchvision and mmpretrain: the ImageNet configs (mmbcn[pretrain]). PyPI's torchvision is a
# CUDA build whose C++ ops do not load on the CPU torch; mmbcn.torchvision_compat lets it import.
"${PIP[@]}" "$(mmcv_wheel)" "mmengine==0.10.7" "mmdet==3.3.0" "mmsegmentation==1.2.2" \
    ftfy regex "torchvision==0.28.0" "mmpretrain==1.2.0"

step "mmbcn (editable) with test tools"
# upstream: the extra that names this family's packages (all installed above, at the pinned
# versions: pip checks they are in mmbcn's tested ranges and installs none of them again).
# triton: the tests run BCN's kernels under Triton's CPU interpreter, with the Triton they were
# checked with (no extra of mmbcn names triton: see pyproject.toml).
"${PIP[@]}" --no-build-isolation -e ".[tests,docs,upstream]" triton
# openmim finds a package at <its distribution's location>/<name>, i.e. site-packages/mmbcn,
# which an editable install does not create (open-mmlab/mim#114): a link to the checkout's
# package puts it there, so `mim train/test/search mmbcn` work on this install as on a wheel.
# The link and the editable install lead to the same files.
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -sfn "$PWD/mmbcn" "$SITE/mmbcn"
# Scripts that import torchvision before reading any mmbcn config (mmseg's get_flops.py) need
# mmbcn.torchvision_compat from the interpreter's start: a .pth file in site-packages.
"$PY" -c 'from mmbcn.torchvision_compat import write_startup_file; print(write_startup_file())'
# Scripts that read an mmbcn config before importing mmbcn (mmseg's own tools/test.py, `mim
# train mmseg`) resolve its `mmseg::` bases through whichever distribution provides mmseg (the
# onedl family's differs from MMEngine's table) from the interpreter's start: another .pth file.
"$PY" -c 'from mmbcn.patches.config_bases import write_startup_file; print(write_startup_file())'

step "checking that every installed package has what it requires"
# Every requirement of every package met at the pinned versions (a package whose own pins
# clash with the stack's would show here), and mim runs.
"$PY" -m pip check
"$VENV/bin/mim" --version

step "checking that mmcv has its compiled ops"
"$PY" - <<'PY'
import mmcv
from mmcv.ops import nms, RoIAlign  # noqa: F401  (fails when mmcv was built without ops)
import mmbcn  # noqa: F401  (before torchvision: see mmbcn/torchvision_compat.py)
import mmdet, mmseg, mmpretrain  # noqa: F401
print(f'mmcv {mmcv.__version__} with ops, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'mmpretrain {mmpretrain.__version__}')
PY

#!/usr/bin/env bash
# The oldest and the newest supported stacks (tools/stacks/*.txt), each in its own environment
# (tools/setup_stack.sh): the subset of the suite that covers what differs between torch
# versions, on mmcv built without compiled ops (so no test marked mmcv_ops: those build mmdet or
# mmseg models):
#
#   import, the layer in both modes and its distributed statistics (gloo), WS, the Triton
#   interpreter tests where the stack's Triton is one the kernels were checked with,
#   checkpoints (weights-only loading, conversion, resume), the patched seams and their
#   refusals, deploy, ONNX export, torch.export and torch.fx, the norm statistics, and training
#   runs: the ImageNet config (mmpretrain) and MMEngine Runner runs, saved and resumed. Then the
#   demo's classification part (tools/demo.py --only cls), which must learn.
#
#   bash tools/test_stacks.sh torch2.1 [pytest options]
set -euo pipefail

cd "$(dirname "$0")/.."
STACK=${1:?usage: tools/test_stacks.sh STACK [pytest options]}
shift
SUBSET=(
    tests/layers/test_bcn.py tests/layers/test_conv_ws.py tests/layers/test_estimates.py
    tests/layers/test_distributed.py
    tests/ops
    tests/toolbox/test_checkpoints.py tests/toolbox/test_patches.py
    tests/toolbox/test_install_twice.py tests/toolbox/test_norm_conversions.py
    tests/convert/test_deploy.py tests/convert/test_export.py
    tests/analysis/test_measures.py
    tests/engine/test_hook.py
    tests/pretrain/test_imagenet_configs.py
    tests/pretrain/test_torchvision_compat.py::test_mmpretrain_imports_after_mmbcn_and_missing_ops_are_refused_not_faked
)
PY=".venv-$STACK/bin/python"
printf '\n==> %s [%s] the test subset\n' "$(date -u +%T)" "$STACK"
"$PY" -m pytest -m 'not mmcv_ops' "${SUBSET[@]}" "$@"

# The demo's part that needs no compiled mmcv op: the ResNet-18 classifier (mmpretrain), trained
# and evaluated; it must learn (trained top-1 above the untrained one).
WORK_DIR=work_dirs/demo-$STACK
printf '\n==> %s [%s] the demo (cls)\n' "$(date -u +%T)" "$STACK"
"$PY" tools/demo.py --only cls --work-dir "$WORK_DIR"
"$PY" - "$WORK_DIR/results.json" <<'CHECK'
import json, sys
row, = [r for r in json.load(open(sys.argv[1])) if r.get('metric') == 'top-1 accuracy']
assert row['trained'] > row['untrained'], row
print(f"demo (cls) on this stack: top-1 {row['untrained']:.1f} untrained, {row['trained']:.1f} trained")
CHECK

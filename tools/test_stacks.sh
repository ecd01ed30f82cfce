#!/usr/bin/env bash
# The other tested stacks (tools/stacks/*.txt), each in its own environment
# (tools/setup_stack.sh): the subset of the suite that covers what differs between torch
# versions and OpenMMLab families. On a stack whose mmcv is built without compiled ops (the
# oldest and the newest torch, upstream OpenMMLab), no test marked mmcv_ops runs (those build
# mmdet or mmseg models):
#
#   import, the layer in both modes and its distributed statistics (gloo), WS, the Triton
#   interpreter tests where the stack's Triton is one the kernels were checked with,
#   checkpoints (weights-only loading, conversion, resume), the patched seams and their
#   refusals, deploy, ONNX export, torch.export and torch.fx, the norm statistics, and training
#   runs: the ImageNet config (mmpretrain) and MMEngine Runner runs, saved and resumed. Then the
#   demo's classification part (tools/demo.py --only cls), which must learn.
#
# On a stack with mmcv's ops (`# mmcv ops: yes`: the onedl family), the tests marked mmcv_ops
# run too, with what differs between the families (OPS_TESTS: every config loads and builds,
# `pkg::` bases), and the whole demo, each part of which must learn. Its torch and Python are
# the main stack's (tests/tools/test_stacks.py checks it), whose whole suite runs the tests of
# what only torch decides (TORCH_ONLY): those are left out there, two minutes of CI.
#
#   bash tools/test_stacks.sh torch2.1 [pytest options]
set -euo pipefail

cd "$(dirname "$0")/.."
STACK=${1:?usage: tools/test_stacks.sh STACK [pytest options]}
shift
# The layer's maths, its distributed statistics and its kernels, and torch features.
TORCH_ONLY=(
    tests/layers/test_bcn.py tests/layers/test_conv_ws.py tests/layers/test_estimates.py
    tests/layers/test_distributed.py
    tests/ops
    tests/toolbox/test_training_modes.py::test_autocast_bfloat16_normalizes_in_float32
    tests/toolbox/test_training_modes.py::test_compiled_model_equals_the_eager_run
)
SUBSET=(
    "${TORCH_ONLY[@]}"
    tests/checkpoints/test_weights_only.py tests/patches/test_declared.py
    tests/patches/test_install_twice.py tests/layers/test_norm_conversions.py
    tests/test_openmmlab_family.py tests/utils/test_feature_probes.py
    tests/deploy/test_model.py tests/deploy/test_onnx_export.py
    tests/analysis/test_measures.py
    tests/engine/hooks/test_bcn_update_rate_hook.py
    # training modes that differ between torch versions (the rest need mmcv's ops or no torch
    # feature): checkpointing through MMEngine and mmpretrain (autocast and compile: TORCH_ONLY)
    tests/toolbox/test_training_modes.py::test_with_cp_equals_the_plain_run_mmpretrain
    tests/toolbox/test_training_modes.py::test_mmengine_activation_checkpointing_equals_the_plain_run
    tests/toolbox/test_imagenet_configs.py
    tests/test_torchvision_compat.py::test_mmpretrain_imports_after_mmbcn_and_missing_ops_are_refused_not_faked
)
OPS_TESTS=(tests/tools/test_configs.py)
PY=".venv-$STACK/bin/python"
WORK_DIR=work_dirs/demo-$STACK
if [ "$(sed -n 's/^# mmcv ops: *//p' "tools/stacks/$STACK.txt")" = yes ]; then
    printf '\n==> %s [%s] the test subset with the tests marked mmcv_ops\n' "$(date -u +%T)" "$STACK"
    "$PY" -m pytest "${SUBSET[@]:${#TORCH_ONLY[@]}}" "${OPS_TESTS[@]}" "$@"
    DEMO=()
else
    printf '\n==> %s [%s] the test subset\n' "$(date -u +%T)" "$STACK"
    "$PY" -m pytest -m 'not mmcv_ops' "${SUBSET[@]}" "$@"
    # The demo's part that needs no compiled mmcv op: the ResNet-18 classifier (mmpretrain).
    DEMO=(--only cls)
fi

# The demo, trained and evaluated; every part must learn (its trained metric above the
# untrained one).
printf '\n==> %s [%s] the demo %s\n' "$(date -u +%T)" "$STACK" "${DEMO[*]}"
"$PY" tools/demo.py "${DEMO[@]}" --work-dir "$WORK_DIR"
"$PY" - "$WORK_DIR/results.json" <<'CHECK'
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if 'trained' in r]
assert rows, 'no results'
for row in rows:
    assert row['trained'] > row['untrained'], row
    print(f"demo on this stack: {row['model']}, {row['metric']} {row['untrained']:.1f} "
          f"untrained, {row['trained']:.1f} trained")
CHECK

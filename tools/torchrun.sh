#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: torchrun NUM_PROCESSES SCRIPT [args].
# One node by default; several with NNODES, NODE_RANK, MASTER_ADDR, PORT set on every node.
# Without GPUs the processes use gloo on CPU (the same code path as on GPUs).
set -euo pipefail
NPROC=$1
SCRIPT=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
VENV_PYTHON="$HERE/../.venv/bin/python"
PYTHON=${PYTHON:-$( [ -x "$VENV_PYTHON" ] && echo "$VENV_PYTHON" || echo python)}
PYTHONPATH="$HERE/..:${PYTHONPATH:-}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$SCRIPT" "$@" --launcher pytorch

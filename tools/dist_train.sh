#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NUM_PROCESSES [options]
# (multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; see torchrun.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/torchrun.sh" "$2" "$HERE/train.py" "$1" "${@:3}"

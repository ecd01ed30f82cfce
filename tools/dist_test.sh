#!/usr/bin/env bash
# Distributed evaluation with torchrun: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCESSES [options]
# (multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; see torchrun.sh). No restarts: a failed
# evaluation is simply run again.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/torchrun.sh" "$3" 0 "$HERE/test.py" "$1" "$2" "${@:4}"

#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NUM_PROCESSES [options]
# (multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT; see torchrun.sh)
# MAX_RESTARTS (default 3; 0: off): how often the group is restarted after a worker dies; each
# restart resumes the latest checkpoint this launch wrote (mmbcn/commands/restarts.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/torchrun.sh" "$2" "${MAX_RESTARTS:-3}" "$HERE/train.py" "$1" "${@:3}"

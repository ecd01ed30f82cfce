#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: torchrun.sh NUM_PROCESSES MAX_RESTARTS SCRIPT [args].
# One node by default; several with NNODES, NODE_RANK, MASTER_ADDR, PORT set on every node.
# Without GPUs the processes use gloo on CPU (the same code path as on GPUs).
#
# When a worker dies, torchrun stops the others (SIGTERM, then SIGKILL) and starts the whole
# group again, on every node, at most MAX_RESTARTS times (0: never); each worker learns its
# attempt from TORCHELASTIC_RESTART_COUNT. The c10d rendezvous on MASTER_ADDR:PORT (hosted by
# the agent of NODE_RANK 0) lets the group form again; ranks are given out in the order the
# nodes join, so NODE_RANK only says which node hosts it. RDZV_ID names the run (default:
# mmbcn-PORT); every node of one run must use the same. The workers reach rank 0 at its node's
# host name; where that does not resolve to the right network, set LOCAL_ADDR on each node to
# the address the others reach it at.
set -euo pipefail
NPROC=$1
RESTARTS=$2
SCRIPT=$3
shift 3
if [[ ! $RESTARTS =~ ^[0-9]+$ ]]; then
    echo "error: MAX_RESTARTS must be a whole number >= 0 (0: no restarts), got '$RESTARTS'" >&2
    exit 2
fi
HERE=$(cd "$(dirname "$0")" && pwd)
VENV_PYTHON="$HERE/../.venv/bin/python"
PYTHON=${PYTHON:-$( [ -x "$VENV_PYTHON" ] && echo "$VENV_PYTHON" || echo python)}
PORT=${PORT:-29500}
IS_HOST=$([ "${NODE_RANK:-0}" = 0 ] && echo 1 || echo 0)
# torch >= 2.4 hands the rendezvous store to the workers by default, and a restarted group then
# reads the dead group's addresses from it and cannot connect (pytorch/pytorch#135712): with
# this set, each attempt's rank 0 hosts a store of its own, on a fresh port.
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1
export PYTHONPATH="$HERE/..:${PYTHONPATH:-}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --nproc_per_node="$NPROC" --max-restarts="$RESTARTS" \
    --rdzv-backend=c10d --rdzv-endpoint="${MASTER_ADDR:-127.0.0.1}:$PORT" \
    --rdzv-id="${RDZV_ID:-mmbcn-$PORT}" --rdzv-conf="is_host=$IS_HOST" \
    ${LOCAL_ADDR:+--local-addr="$LOCAL_ADDR"} \
    "$SCRIPT" "$@" --launcher pytorch &
TORCHRUN=$!
trap 'kill -TERM "$TORCHRUN" 2>/dev/null' TERM INT HUP  # a stopped launch stops torchrun
status=0
wait "$TORCHRUN" || status=$?
while kill -0 "$TORCHRUN" 2>/dev/null; do  # woken by a trapped signal: wait for torchrun
    status=0
    wait "$TORCHRUN" || status=$?
done
if [ "$status" != 0 ]; then
    echo "error: $(basename "$SCRIPT") failed (torchrun exit code $status) after" \
         "MAX_RESTARTS=$RESTARTS restart(s) were allowed; torchrun's summary above names the" \
         "first failure." >&2
fi
exit "$status"

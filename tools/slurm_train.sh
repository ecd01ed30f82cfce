#!/usr/bin/env bash
# Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [options]   (GPUS, GPUS_PER_NODE: srun.sh)
# MAX_RESTARTS (default 3; 0: off): after a failed step (a task died: --kill-on-bad-exit stops
# the rest) srun is run again in the same allocation, at most MAX_RESTARTS times, each attempt
# with MMBCN_RESTART_COUNT set. A job that Slurm requeues (submitted with sbatch --requeue:
# preemption, node failure) starts again with SLURM_RESTART_COUNT set. Either way the training
# processes resume the latest checkpoint this launch wrote (mmbcn/commands/restarts.py).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RESTARTS=${MAX_RESTARTS:-3}
if [[ ! $RESTARTS =~ ^[0-9]+$ ]]; then
    echo "error: MAX_RESTARTS must be a whole number >= 0 (0: no restarts), got '$RESTARTS'" >&2
    exit 2
fi
trap 'exit 143' TERM  # scancel or preemption: stop here, start no srun again
attempt=0
while :; do
    status=0
    MMBCN_RESTART_COUNT=$attempt bash "$HERE/srun.sh" "$1" "$2" "$HERE/train.py" "$3" "${@:4}" \
        || status=$?
    [ "$status" = 0 ] && exit 0
    if [ "$attempt" -ge "$RESTARTS" ]; then
        echo "error: train.py failed (srun exit code $status) after $attempt restart(s)" \
             "(MAX_RESTARTS=$RESTARTS); srun's output above names the failed task." >&2
        exit "$status"
    fi
    attempt=$((attempt + 1))
    echo "slurm_train.sh: srun failed (exit code $status); restart $attempt of $RESTARTS" >&2
done

#!/usr/bin/env bash
# Slurm: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [options]   (GPUS, GPUS_PER_NODE: srun.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/srun.sh" "$1" "$2" "$HERE/train.py" "$3" "${@:4}"

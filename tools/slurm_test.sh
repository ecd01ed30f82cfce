#!/usr/bin/env bash
# Slurm: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [options]   (see srun.sh)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
exec bash "$HERE/srun.sh" "$1" "$2" "$HERE/test.py" "$3" "$4" "${@:5}"

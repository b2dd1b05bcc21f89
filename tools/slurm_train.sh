#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU):
#   GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [options]
# CPUS_PER_TASK defaults to the config's train_dataloader.num_workers (10 for the
# published pretraining configs: one core per loader worker), read with mmengine;
# set it to override. PYTHON selects the interpreter (default python).
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
PY="${PYTHON:-python}"
if [ -z "${CPUS_PER_TASK:-}" ]; then
    CPUS_PER_TASK=$("$PY" -c '
import sys
from mmengine.config import Config
loader = Config.fromfile(sys.argv[1]).get("train_dataloader") or {}
print(max(1, int(loader.get("num_workers", 1))))' "$CONFIG") || {
        echo "slurm_train.sh: could not read train_dataloader.num_workers from" \
             "$CONFIG; set CPUS_PER_TASK" >&2
        exit 2
    }
fi
SRUN_ARGS=${SRUN_ARGS:-""}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    --gres=gpu:"${GPUS_PER_NODE}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "$PY" -u "$(dirname "$0")/train.py" "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" "${@:5}"

#!/usr/bin/env bash
# Training on a Slurm cluster (one task per GPU):
#   GPUS=16 GPUS_PER_NODE=8 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [options]
# On nodes without GPUs: GPUS_PER_NODE=0 (no --gres asked for), GPUS = the number of
# processes, TASKS_PER_NODE of them per node (default: all on one node); the process
# group then uses gloo.
# CPUS_PER_TASK defaults to the config's train_dataloader.num_workers (10 for the
# published pretraining configs: one core per loader worker), read with mmengine;
# set it to override. PYTHON selects the interpreter (default python).
#
# Preemption (docs/pretraining.md, "Preemption and resume"), on by default:
#   - Slurm sends SIGUSR1 SIGNAL_LEAD seconds (default 120) before the time limit
#     (srun --signal; inside a batch job only the job's own signal counts: submit
#     with sbatch --requeue --signal=USR1@120); on it, or on SIGTERM (scancel,
#     preemption), every rank
#     finishes its iteration, one checkpoint is written and training stops;
#   - the job then requeues itself (scontrol requeue; submit it with sbatch
#     --requeue) and the requeued job resumes from the newest good checkpoint of
#     WORK_DIR (--resume is added; a first run without checkpoints starts afresh).
#   REQUEUE=0 turns off the signal lead, the requeue and the automatic --resume.
set -euo pipefail
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
if [ "$GPUS_PER_NODE" = "0" ]; then
    GRES=()
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS}
else
    GRES=(--gres=gpu:"${GPUS_PER_NODE}")
    TASKS_PER_NODE=${TASKS_PER_NODE:-$GPUS_PER_NODE}
fi
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
REQUEUE=${REQUEUE:-1}
SIGNAL_LEAD=${SIGNAL_LEAD:-120}
PREEMPT_SRUN=()
PREEMPT_TRAIN=()
if [ "$REQUEUE" = "1" ]; then
    export FLSL_MM_REQUEUE=1
    PREEMPT_SRUN=(--signal="USR1@${SIGNAL_LEAD}")
    if [ -n "${SLURM_JOB_ID:-}" ]; then
        # a step's own --signal is not honoured inside a batch job (Slurm 22.05):
        # the time-limit signal must be the job's
        echo "slurm_train.sh: running inside the batch job ${SLURM_JOB_ID}: Slurm" \
             "sends the time-limit signal only if the job was submitted with" \
             "sbatch --signal=USR1@${SIGNAL_LEAD} (and --requeue)" >&2
    fi
    resume_given=0
    for a in "${@:5}"; do
        case "$a" in --resume|--resume=*) resume_given=1 ;; esac
    done
    [ "$resume_given" = "1" ] || PREEMPT_TRAIN=(--resume)
elif [ "$REQUEUE" != "0" ]; then
    echo "slurm_train.sh: REQUEUE must be 1 or 0, got '$REQUEUE'" >&2
    exit 2
else
    export FLSL_MM_REQUEUE=0
fi

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES[@]+"${GRES[@]}"} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${TASKS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${PREEMPT_SRUN[@]+"${PREEMPT_SRUN[@]}"} \
    ${SRUN_ARGS} \
    "$PY" -u "$(dirname "$0")/train.py" "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" ${PREEMPT_TRAIN[@]+"${PREEMPT_TRAIN[@]}"} "${@:5}"

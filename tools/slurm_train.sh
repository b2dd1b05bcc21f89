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
#   - a step that fails (a node lost: its processes gone; srun --kill-on-bad-exit
#     ends the other nodes' at once) is requeued the same way when it wrote a
#     checkpoint since it started, and resumes from the last good one;
#   REQUEUE=0 turns off the signal lead, the requeue and the automatic --resume.
# Multi-node (docs/pretraining.md, "Multi-node"): the work dir must be on a file
# system every node sees; the first node of the allocation is the rendezvous
# (MASTER_PORT, default 29500, open between the nodes); on nodes with several
# interfaces set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME to the one they share.
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

STARTED=$(date +%s)
set +e
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
STATUS=$?
set -e
# A failed step (a node lost, a process killed: srun's --kill-on-bad-exit ends the
# others) inside a requeueable batch job: requeue it to resume from the last good
# checkpoint -- only when this run wrote one (made progress), so that a run that
# fails at once is not started again forever. 75: preempted, train.py requeued it.
if [ "$STATUS" != 0 ] && [ "$STATUS" != 75 ] && [ "$REQUEUE" = "1" ] && \
        [ -n "${SLURM_JOB_ID:-}" ]; then
    LAST="${WORK_DIR}/last_checkpoint"
    if [ -f "$LAST" ] && [ "$(stat -c %Y "$LAST")" -ge "$STARTED" ]; then
        echo "slurm_train.sh: the training step failed (exit status $STATUS) after" \
             "writing $(cat "$LAST"); requeueing job ${SLURM_JOB_ID} to resume from" \
             "the last good checkpoint" >&2
        scontrol requeue "${SLURM_JOB_ID}" || echo "slurm_train.sh: scontrol" \
            "requeue failed; resume with --resume" >&2
    else
        echo "slurm_train.sh: the training step failed (exit status $STATUS) without" \
             "writing a checkpoint since it started; not requeued" >&2
    fi
fi
exit "$STATUS"

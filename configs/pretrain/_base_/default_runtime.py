_base_ = ['../../_base_/default_runtime.py']
default_scope = 'mmpretrain'
visualizer = dict(type='UniversalVisualizer', vis_backends={{_base_.vis_backends}})

# FLSL's training-time machinery (FLSL_SPEC sections 2, 6, 7). These hooks are
# needed for correctness, so they are *default* hooks with names: mmengine merges
# `default_hooks` by key, so a child config that changes one of them (or sets
# `custom_hooks`) keeps the others. The model refuses to train when the teacher
# update or the schedule hook stops running. tau_t's schedule is configured in
# `model.loss` (teacher_temp, warmup_teacher_temp, warmup_teacher_temp_epochs).
# DDP with one gradient-bucket layout for the whole run: a resume with more than 2
# processes stays bitwise (docs/pretraining.md, "Exact mid-epoch resume")
model_wrapper_cfg = dict(type='FixedBucketDDP', broadcast_buffers=False,
                         find_unused_parameters=False)
default_hooks = dict(
    # mmengine's RuntimeInfoHook reads every output on the host every iteration;
    # this one buffers them on the device until a logged iteration (same logs)
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    loss_schedule=dict(type='FLSLScheduleHook'),
    teacher_update=dict(type='FLSLTeacherUpdateHook'),
    freeze_last_layer=dict(type='FreezeLastLayerHook', freeze_last_layer=1),
    grad_clip=dict(type='PerParamGradClipHook', max_norm=3.0),
    non_finite_loss=dict(type='NonFiniteLossHook'),
    rng_state=dict(type='RNGStateHook'),
    # atomic checkpoints; also one mid-epoch every 30 min of wall clock, and one
    # on SIGTERM / SIGUSR1 before stopping (docs/pretraining.md, "Preemption and
    # resume"); the loop (ResumableEpochBasedTrainLoop) resumes from any of them
    checkpoint=dict(type='ResumableCheckpointHook', interval_minutes=30),
)

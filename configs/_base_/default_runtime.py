# Runtime shared by every flsl_mm config (pretraining and detection).
custom_imports = dict(imports=['flsl_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='ResumableCheckpointHook', interval=1, max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # NCCL for GPUs; on a machine without CUDA flsl_mm.compat initialises the
    # process group with gloo instead (every config, demos included)
    # timeout: how long a collective waits for a lost peer before this rank fails
    # (a node that crashed without closing its sockets): 10 minutes, above the
    # longest wait of a healthy run (rank 0 writing a checkpoint, a validation)
    dist_cfg=dict(backend='nccl', timeout=600),
)
vis_backends = [dict(type='LocalVisBackend')]
log_processor = dict(window_size=10, by_epoch=True)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)

# The README's main job: FLSL pretraining of a ViT-Tiny/16 on the embedded demo
# data, on CPU in a few minutes. The demo data is generated at `data_root` on first
# use. Crops are scaled down for CPU (global 128 px = 8 x 8 tokens, local 64 px =
# 4 x 4 tokens, windows 2 -> 16 and 4 queries); everything else is FLSL as
# published, with schedules shortened to the run.
_base_ = [
    '_base_/models/flsl_vit-small-p16.py',
    '_base_/schedules/flsl_300e.py',
    '_base_/default_runtime.py',
]
data_root = 'data/flsl_demo/'
max_epochs = 20
warmup_epochs = 2

model = dict(
    backbone=dict(arch='tiny', drop_path_rate=0.1),
    head=dict(in_channels=192, out_channels=1024, hidden_channels=512,
              bottleneck_channels=128),
    loss=dict(warmup_teacher_temp_epochs=3))

train_pipeline = [
    dict(type='LoadImageLikeImageFolder'),  # decoded as the reference does
    dict(type='FLSLMultiView', patch_size=16, global_size=128, local_size=64,
         teacher_scale=(0.8, 1.0), student_scale=(0.5, 1.0),
         local_scale=(0.2, 0.5), num_local_crops=2, global_window=2,
         local_window=2),
    dict(type='PackInputs', algorithm_keys=['query_masks'], meta_keys=['img_path']),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='flsl_collate'),  # + the query indices (one tensor per view)
    dataset=dict(type='DemoImageDataset', data_root=data_root, split='train',
                 pipeline=train_pipeline))

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # --amp switches to AmpOptimWrapper on a GPU
    optimizer=dict(type='AdamW', lr=5e-4 * 16 / 256, betas=(0.9, 0.999),
                   weight_decay=0.04),
    constructor='FLSLOptimWrapperConstructor',  # leaves the EMA teacher out
    paramwise_cfg=dict(flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-9, end_factor=1.0, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, T_max=max_epochs - warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         eta_min_ratio=10.0, by_epoch=True, begin=0, end=max_epochs,
         T_max=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
auto_scale_lr = dict(base_batch_size=16, enable=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=1),
    checkpoint=dict(type='ResumableCheckpointHook', interval=5, max_keep_ckpts=2,
                    save_last=True))
log_processor = dict(window_size=1)

# Dense probes of the teacher while it trains (docs/probes.md): patch k-NN, linear
# and k-means + Hungarian mIoU on the training demo data's train / val splits, at
# the start, every 2 epochs and at the end
custom_hooks = [
    dict(type='DenseProbeHook', probe_set=dict(type='demo'), interval=2,
         probes=('knn', 'linear', 'cluster')),
]

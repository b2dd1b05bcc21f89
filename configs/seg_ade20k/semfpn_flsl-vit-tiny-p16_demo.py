# Semantic FPN on the embedded demo data's semantic maps (sky, grass, road, circle,
# square, triangle), on CPU in a few minutes, from the demo pretraining checkpoint
# converted with
#   python tools/model_converters/flsl_to_mmdet.py \
#       work_dirs/flsl_vit-tiny-p16_demo/epoch_20.pth \
#       work_dirs/flsl_vit-tiny-p16_demo/backbone_mmdet.pth --arch tiny
# The published recipe with CPU-sized data, width, batch and schedule (whole
# 128 x 160 images, no crop; 600 iterations, lr 4e-4 with a 50-iteration warm-up).
_base_ = [
    '../_base_/models/semfpn_flsl-vit-small-p16.py',
    '../_base_/schedules/adamw_poly_40k.py',
    '../_base_/seg_runtime.py',
]
data_root = 'data/flsl_demo/'
max_iters = 600
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=None, size_divisor=16),  # 128 x 160: no padding
    backbone=dict(
        arch='tiny',
        init_cfg=dict(
            checkpoint='work_dirs/flsl_vit-tiny-p16_demo/backbone_mmdet.pth')),
    neck=dict(in_channels=[192, 192, 192, 192], out_channels=128),
    decode_head=dict(in_channels=[128, 128, 128, 128], channels=64, num_classes=6,
                     norm_cfg=norm_cfg))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMapSize'),  # a map of another size: named, left out
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='CheckSegMapSize', on_invalid='raise'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(type='DemoSegDataset', data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DemoSegDataset', data_root=data_root, split='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=4e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=50,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1))
log_processor = dict(window_size=20)
auto_scale_lr = dict(enable=False, base_batch_size=8)

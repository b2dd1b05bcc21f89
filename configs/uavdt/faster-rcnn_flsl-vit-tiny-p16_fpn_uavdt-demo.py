# UAVDT demo on CPU: a generated UAVDT-format tree (data/uavdt_demo/, written on
# first use: 5 annotated sequences of 24 frames, 3 train / 2 official-test, every
# one with a car, a truck and a bus, plus one sequence without ground truth),
# FLSL ViT-Tiny/16 from the demo pretraining checkpoint. Ends with UAVDT AP@0.7
# and AP@0.5 and COCO AP on the test sequences (see README for what to expect).
_base_ = ['faster-rcnn_flsl-vit-small-p16_fpn_1x_uavdt.py']
data_root = 'data/uavdt_demo/'
max_epochs = 6
demo_kwargs = dict(num_frames=24, img_size=(180, 320))

model = dict(
    backbone=dict(
        arch='tiny',
        init_cfg=dict(
            checkpoint='work_dirs/flsl_vit-tiny-p16_demo/backbone_mmdet.pth')),
    neck=[
        dict(type='ViTFPNAdapter', in_channels=192, patch_size=16,
             norm_cfg=dict(type='BN', requires_grad=True)),
        dict(type='FPN', in_channels=[192, 192, 192, 192], out_channels=256,
             num_outs=5),
    ],
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300),
                  rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(480, 270), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(480, 270), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(
    batch_size=4,
    dataset=dict(type='UAVDTDemoDataset', data_root=data_root, frame_stride=1,
                 demo_kwargs=demo_kwargs, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(type='UAVDTDemoDataset', data_root=data_root, frame_stride=2,
                 demo_kwargs=demo_kwargs, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', metric='bbox'),
    dict(type='UAVDTMetric', iou_thr=0.7),
    dict(type='UAVDTMetric', iou_thr=0.5),  # beside the official 0.7
]
test_evaluator = val_evaluator

train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # --amp switches to AmpOptimWrapper on a GPU
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # no decay on parameters named *norm* (the backbone's LayerNorms), as the
    # published recipe (which matches by name: the adapter's BatchNorm keeps its
    # decay there too); pos_embed is a fixed buffer here, nothing to exempt
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[5], gamma=0.1),
]
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='ResumableCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=5)

# Mask R-CNN fine-tuning on the embedded demo data (3 thing classes), on CPU in
# minutes, starting from the demo pretraining checkpoint converted with
#   python tools/model_converters/flsl_to_mmdet.py \
#       work_dirs/flsl_vit-tiny-p16_demo/epoch_20.pth \
#       work_dirs/flsl_vit-tiny-p16_demo/backbone_mmdet.pth --arch tiny
_base_ = [
    '../_base_/models/mask-rcnn_flsl-vit-small-p16_fpn.py',
    '../_base_/det_runtime.py',
]
data_root = 'data/flsl_demo/'
max_epochs = 6

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
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)),
    # fewer proposals / sampled RoIs than on COCO: a few small things per image,
    # and a CPU budget
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300),
                  rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(320, 256), (288, 224), (352, 288)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(320, 256), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type='DemoCocoDataset', data_root=data_root,
                 ann_file='annotations/instances_train.json',
                 data_prefix=dict(img='train/images/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=4),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='DemoCocoDataset', data_root=data_root,
                 ann_file='annotations/instances_val.json',
                 data_prefix=dict(img='val/images/'), test_mode=True,
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric',
                     ann_file=data_root + 'annotations/instances_val.json',
                     metric=['bbox', 'segm'])
test_evaluator = val_evaluator

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',  # --amp switches to AmpOptimWrapper on a GPU
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    # no decay on parameters named *norm* (the backbone's LayerNorms), as the
    # published recipe (which matches by name: the adapter's BatchNorm keeps its
    # decay there too); pos_embed is a fixed buffer here, nothing to exempt
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[4, 5], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='ResumableCheckpointHook', interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=5)

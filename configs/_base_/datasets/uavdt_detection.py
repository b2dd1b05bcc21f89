# UAVDT read from its downloaded folders (any layout; see docs/uavdt.md).
# Official split; every 10th training frame (30 fps video is redundant);
# keep-ratio resize around 1024 x 540; ignore regions skipped by the assigners
# (ignore_iof_thr in the model config) and by both metrics.
dataset_type = 'UAVDTDataset'
data_root = 'data/UAVDT/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(1024, 540), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(1024, 540), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape',
                                          'img_shape', 'scale_factor', 'instances')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 frame_stride=10, filter_cfg=dict(filter_empty_gt=True),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='test',
                 frame_stride=1, test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
# COCO-style AP / AP50 / AP75 / AP_s/m/l (pycocotools, ignore regions as crowd)
# and UAVDT's AP at IoU 0.7 per class and overall.
val_evaluator = [
    dict(type='CocoMetric', metric='bbox'),
    dict(type='UAVDTMetric', iou_thr=0.7),
]
test_evaluator = val_evaluator

# ImageNet (or any folder of images; labels are not used) with FLSL's views.
dataset_type = 'CustomDataset'
data_root = 'data/imagenet/'

train_pipeline = [
    dict(type='LoadImageLikeImageFolder'),  # decoded as the reference does
    dict(type='FLSLMultiView', patch_size=16, global_size=224, local_size=96,
         teacher_scale=(0.8, 1.0), student_scale=(0.5, 1.0),
         local_scale=(0.05, 0.4), num_local_crops=2, global_window=3,
         local_window=2, random_sampling=False),
    dict(type='PackInputs', algorithm_keys=['query_masks'], meta_keys=['img_path']),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    # a full batch every iteration, as DINO's loader (the code FLSL builds on):
    # one static shape for the compiled step (docs/pretraining.md)
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='flsl_collate'),  # + the query indices (one tensor per view)
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='train',
                 with_label=False, pipeline=train_pipeline))

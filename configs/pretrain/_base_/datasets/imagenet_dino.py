# ImageNet (or any folder of images; labels are not used) with DINO's multi-crop:
# 2 global 224 px crops, scale (0.4, 1), and 10 local 96 px crops, scale (0.05, 0.4).
dataset_type = 'CustomDataset'
data_root = 'data/imagenet/'

train_pipeline = [
    dict(type='LoadImageLikeImageFolder'),  # decoded as the reference does
    dict(type='DINOMultiCrop', global_size=224, local_size=96,
         global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), num_local_crops=10),
    dict(type='PackInputs', meta_keys=['img_path']),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=10,
    persistent_workers=True,
    pin_memory=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix='train',
                 with_label=False, pipeline=train_pipeline))

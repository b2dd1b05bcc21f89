# The views are made on the training device (docs/pretraining.md, "Views"): the
# loader workers decode and draw the random parameters (the same draws as the parent
# config's PIL path), DeviceViewPreprocessor applies them. Everything else is the
# parent config.
_base_ = [
    'dino_vit-small-p16_8xb64-100e_in1k.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already
]
model = dict(data_preprocessor=dict(
    _delete_=True, type='DeviceViewPreprocessor', mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375], non_blocking=True))
train_dataloader = dict(
    collate_fn=dict(type='pack_images_collate'),  # decoded images of any size
    dataset=dict(pipeline=[
        dict(type='LoadImageLikeImageFolder', to_tensor=True),  # RGB 3xHxW uint8
        dict(type='DINOMultiCrop', global_size=224, local_size=96,
             global_scale=(0.4, 1.0), local_scale=(0.05, 0.4), num_local_crops=10,
             on_device=True),
        dict(type='PackInputs', algorithm_keys=['view_params'], meta_keys=['img_path']),
    ]))

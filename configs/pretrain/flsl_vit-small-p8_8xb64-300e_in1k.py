# ViT-S/8: 28 x 28 teacher/student tokens, local crops 12 x 12.
_base_ = [
    'flsl_vit-small-p16_8xb64-300e_in1k.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already; with probe_set short_side=112 (the
    # tokens per image of ViT-S/16 at 224)
]
model = dict(backbone=dict(patch_size=8))
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageLikeImageFolder'),  # decoded as the reference does
    dict(type='FLSLMultiView', patch_size=8, global_size=224, local_size=96,
         teacher_scale=(0.8, 1.0), student_scale=(0.5, 1.0),
         local_scale=(0.05, 0.4), num_local_crops=2, global_window=3,
         local_window=2, random_sampling=False),
    dict(type='PackInputs', algorithm_keys=['query_masks'], meta_keys=['img_path']),
]))

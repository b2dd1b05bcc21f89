# ViT-B/16 (flsl_vit-base-p16_8xb64-300e_in1k.py) with the views made on the training
# device: the ViT-S/16 -gpuaug config with the same model change as its parent.
_base_ = [
    'flsl_vit-small-p16_8xb64-300e_in1k-gpuaug.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already
]
model = dict(
    backbone=dict(arch='base'),
    head=dict(in_channels=768))

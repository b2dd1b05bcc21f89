# DINO ViT-S/16, 8 GPUs x 64 images, 100 epochs (main_dino.py's ViT-S/16 setting,
# 10 local crops): the baseline of every FLSL table, from the same code, data
# pipeline and evaluation. docs/dino.md lists each value and its source.
_base_ = [
    '_base_/models/dino_vit-small-p16.py',
    '_base_/datasets/imagenet_dino.py',
    '_base_/schedules/dino_100e.py',
    '_base_/dino_runtime.py',
    # '_base_/probes/ade20k.py',  # dense probes while training (docs/probes.md)
]

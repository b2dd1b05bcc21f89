# The published FLSL run: ViT-S/16, K = 4096, 8 GPUs x 64 images, 300 epochs.
_base_ = [
    '_base_/models/flsl_vit-small-p16.py',
    '_base_/datasets/imagenet_flsl.py',
    '_base_/schedules/flsl_300e.py',
    '_base_/default_runtime.py',
    # '_base_/probes/ade20k.py',  # dense probes while training (docs/probes.md)
]

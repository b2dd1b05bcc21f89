# Published recipe: Mask R-CNN + FPN, FLSL ViT-S/16, 12 epochs, total batch 8
# (8 GPUs x 1 image; --auto-scale-lr rescales lr for other batch sizes), fp16.
# Paper: 44.9 box AP / 40.8 mask AP. Backbone weights from
# tools/model_converters/flsl_to_mmdet.py (see README).
_base_ = [
    '../_base_/models/mask-rcnn_flsl-vit-small-p16_fpn.py',
    '../_base_/datasets/coco_instance_detr-aug.py',
    '../_base_/schedules/adamw_1x_amp.py',
    '../_base_/det_runtime.py',
]

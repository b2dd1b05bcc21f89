# Faster R-CNN + ViTFPNAdapter + FPN on an FLSL ViT-S/16, UAVDT (car / truck /
# bus), 12 epochs, AdamW as in det_coco (total batch 8 -> lr 5e-5; use
# --auto-scale-lr for other batch sizes).
_base_ = [
    '../_base_/models/faster-rcnn_flsl-vit-small-p16_fpn.py',
    '../_base_/datasets/uavdt_detection.py',
    '../_base_/schedules/adamw_1x_amp.py',
    '../_base_/det_runtime.py',
]
model = dict(
    roi_head=dict(bbox_head=dict(num_classes=3)),
    train_cfg=dict(rpn=dict(assigner=dict(ignore_iof_thr=0.5)),
                   rcnn=dict(assigner=dict(ignore_iof_thr=0.5))))
train_dataloader = dict(batch_size=1)  # x 8 GPUs = 8

# The mask-free variant of the COCO model: Faster R-CNN + FPN on the same FLSL
# ViT-S/16 backbone and ViTFPNAdapter (shared from the Mask R-CNN base).
_base_ = ['mask-rcnn_flsl-vit-small-p16_fpn.py']
model = dict(
    type='FasterRCNN',
    data_preprocessor=dict(pad_mask=False),
    roi_head=dict(mask_roi_extractor=None, mask_head=None),
    train_cfg=dict(rcnn=dict(mask_size=None)))

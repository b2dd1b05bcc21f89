# Mask R-CNN + FPN on an FLSL ViT-S/16 (FLSL_SPEC section 8): features of blocks
# [3, 5, 7, 11] -> ViTFPNAdapter (strides 4/8/16/32) -> mmdet's FPN.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)  # BN for single-process runs
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='FLSLViT',
        arch='small',
        patch_size=16,
        drop_path_rate=0.05,
        final_norm=False,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/flsl_vit-small-p16_backbone.pth',
                      prefix='backbone.')),
    neck=[
        dict(type='ViTFPNAdapter', in_channels=384, patch_size=16,
             norm_cfg=norm_cfg),
        dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256,
             num_outs=5),
    ])

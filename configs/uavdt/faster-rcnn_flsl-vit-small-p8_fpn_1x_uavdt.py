# ViT-S/8 variant (patch-8 adapter).
_base_ = ['faster-rcnn_flsl-vit-small-p16_fpn_1x_uavdt.py']
model = dict(
    backbone=dict(patch_size=8,
                  init_cfg=dict(checkpoint='checkpoints/flsl_vit-small-p8_backbone.pth')),
    neck=[
        dict(type='ViTFPNAdapter', in_channels=384, patch_size=8,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256,
             num_outs=5),
    ])

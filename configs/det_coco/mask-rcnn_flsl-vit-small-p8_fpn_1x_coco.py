# ViT-S/8 variant (paper: 46.5 box AP / 42.1 mask AP): patch-8 adapter
# (deconv, identity, maxpool 2, maxpool 4).
_base_ = ['mask-rcnn_flsl-vit-small-p16_fpn_1x_coco.py']
model = dict(
    backbone=dict(patch_size=8,
                  init_cfg=dict(checkpoint='checkpoints/flsl_vit-small-p8_backbone.pth')),
    neck=[
        dict(type='ViTFPNAdapter', in_channels=384, patch_size=8,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256,
             num_outs=5),
    ])

# Variant: the ViT-to-FPN adapter of the detection configs (strides 4/8/16/32 from
# blocks 3, 5, 7, 11) in front of the FPN, instead of four stride-16 maps. Whether
# this beats the published stride-16-only recipe is an open question.
_base_ = ['semfpn_flsl-vit-small-p16_8xb4-40k_ade20k-512x512.py']
model = dict(
    backbone=dict(out_indices=(3, 5, 7, 11)),
    neck=[
        dict(type='ViTFPNAdapter', in_channels=384, patch_size=16,
             norm_cfg=dict(type='SyncBN', requires_grad=True)),
        dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256,
             num_outs=4),
    ])

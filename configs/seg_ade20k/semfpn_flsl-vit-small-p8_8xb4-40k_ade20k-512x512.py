# ViT-S/8 variant of the published Semantic FPN recipe: the same blocks, now all at
# stride 8 (the head configuration is unchanged; the authors released only the /16
# config).
_base_ = ['semfpn_flsl-vit-small-p16_8xb4-40k_ade20k-512x512.py']
model = dict(backbone=dict(
    patch_size=8,
    init_cfg=dict(checkpoint='checkpoints/flsl_vit-small-p8_backbone.pth')))

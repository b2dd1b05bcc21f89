# ViT-B/16 (C = 768). beta_sa / beta_ca stay 0.1/sqrt(384), 0.2/sqrt(384): the
# reference uses these constants whatever C is.
_base_ = [
    'flsl_vit-small-p16_8xb64-300e_in1k.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already
]
model = dict(
    backbone=dict(arch='base'),
    head=dict(in_channels=768))

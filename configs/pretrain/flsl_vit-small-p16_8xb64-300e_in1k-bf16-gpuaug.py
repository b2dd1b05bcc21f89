# The published run in bf16 (flsl_vit-small-p16_8xb64-300e_in1k-bf16.py) with the views
# made on the training device: the -gpuaug config with the same change as its parent.
_base_ = [
    'flsl_vit-small-p16_8xb64-300e_in1k-gpuaug.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already
]
optim_wrapper = dict(dtype='bfloat16', loss_scale=dict(_delete_=True, enabled=False))

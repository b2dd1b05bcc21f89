# The published run with bf16 autocast instead of fp16 (GPUs with bf16: A100,
# H100, ...). bf16 has float32's exponent range, so no loss scaling is needed: the
# GradScaler is disabled (no inf checks, no per-step host read); it has fewer
# mantissa bits than fp16 (8 vs 11). Trade-off and measurements: docs/pretraining.md.
_base_ = [
    'flsl_vit-small-p16_8xb64-300e_in1k.py',
    # '_base_/probes/ade20k.py',  # dense probes (docs/probes.md); not when the
    # parent config names it already
]
optim_wrapper = dict(dtype='bfloat16', loss_scale=dict(_delete_=True, enabled=False))

# main_dino.py's optimisation: AdamW, lr 5e-4 * batch / 256 (1e-3 for 8 x 64),
# linear warm-up from 0 over 10 epochs, cosine to 1e-6; weight decay cosine
# 0.04 -> 0.4 with none on biases / 1-D params; fp16 (on a GPU); per-parameter
# clipping to 3.0 and the last layer frozen in epoch 1 (hooks in dino_runtime.py).
max_epochs = 100
warmup_epochs = 10
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    # fused: one kernel for every parameter, and fp16's loss scaler hands it its
    # inf check on the device (the unfused step reads it on the host every
    # iteration; docs/pretraining.md, "Host synchronisations")
    optimizer=dict(type='AdamW', lr=5e-4 * 512 / 256, betas=(0.9, 0.999),
                   weight_decay=0.04, fused=True),
    constructor='FLSLOptimWrapperConstructor',  # leaves the EMA teacher out
    paramwise_cfg=dict(flat_decay_mult=0.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-9, end_factor=1.0, by_epoch=True,
         begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True,
         begin=warmup_epochs, end=max_epochs, T_max=max_epochs - warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingParamScheduler', param_name='weight_decay',
         eta_min_ratio=10.0, by_epoch=True, begin=0, end=max_epochs,
         T_max=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs)
# lr above is for 8 GPUs x 64 images; --auto-scale-lr rescales it linearly.
auto_scale_lr = dict(base_batch_size=512, enable=False)

# The authors' Semantic FPN schedule: AdamW lr 6e-5, betas (0.9, 0.999), weight
# decay 0.01 without decay on parameters named *norm* (pos_embed is a fixed buffer
# here); linear warm-up over 1500 iterations from 1e-6 x lr (mmcv 1.x's
# warmup_ratio=1e-6), then poly decay (power 1.0) to 0 at 40k iterations;
# evaluation (mIoU) and a checkpoint every 4000 iterations.
max_iters = 40000
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500,
         end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

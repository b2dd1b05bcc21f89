# Published detection schedule (FLSL_SPEC section 8): AdamW lr 5e-5 for a total
# batch of 8 (auto_scale_lr rescales it), weight decay 0.05 without decay on
# parameters named *norm*, linear warm-up over 1000 iterations, 12 epochs with lr
# steps at 8 and 11, fp16.
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[8, 11], gamma=0.1),
]
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=5e-5, betas=(0.9, 0.999), weight_decay=0.05),
    # Layer-wise lr decay (ViTDet style), off by default: set
    # constructor='LayerDecayOptimWrapperConstructor' and
    # paramwise_cfg.layer_decay_rate (e.g. 0.7), e.g. on the command line:
    #   --cfg-options optim_wrapper.constructor=LayerDecayOptimWrapperConstructor \
    #                 optim_wrapper.paramwise_cfg.layer_decay_rate=0.7
    # no decay on parameters named *norm* (the backbone's LayerNorms), as the
    # published recipe (which matches by name: the adapter's BatchNorm keeps its
    # decay there too); pos_embed is a fixed buffer here, nothing to exempt
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=8)

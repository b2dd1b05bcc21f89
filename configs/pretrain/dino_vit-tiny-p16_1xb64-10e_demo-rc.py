# The DINO arm of the CPU learning study (docs/benchmarks.md): DINO at exactly the
# budget of configs/pretrain/flsl_vit-tiny-p16_1xb64-10e_demo-rc.py: the same 512
# random-colour images, batch 64, lr 5e-4, 10 epochs (80 iterations), lr warm-up 1
# epoch, K = 256 / hidden 512 / bottleneck 64, the published EMA 0.996 -> 1.
_base_ = ['./dino_vit-tiny-p16_demo.py']

data_root = 'data/flsl_demo_rc512/'
max_epochs = 10
warmup_epochs = 1

model = dict(
    head=dict(out_channels=256, hidden_channels=512, bottleneck_channels=64))

train_dataloader = dict(
    batch_size=64,
    dataset=dict(data_root=data_root,
                 demo_kwargs=dict(num_train=512, num_val=64, random_colours=True)))

optim_wrapper = dict(optimizer=dict(lr=5e-4))
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
train_cfg = dict(max_epochs=max_epochs)
default_hooks = dict(
    logger=dict(interval=2),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
randomness = dict(seed=0)
# the probe curve of every study run (docs/probes.md): k-NN and k-means mIoU of
# the teacher on this random-colour set, at the start, every 2 epochs and at the end
custom_hooks = [
    dict(type='DenseProbeHook', probe_set=dict(type='demo'), interval=2,
         probes=('knn', 'cluster')),
]

# The DINO arm of the learning study sized for one GPU (docs/benchmarks.md): DINO
# at exactly the budget of flsl_vit-tiny-p16_1xb256-100e_demo-rc4k.py (4096
# random-colour images, batch 256, lr 5e-4, 100 epochs = 1600 iterations, lr
# warm-up 10 epochs, hidden width 2048, K = 256, bottleneck 64, the published EMA).
#   python tools/analysis/learning_study.py \
#       configs/pretrain/flsl_vit-tiny-p16_1xb256-100e_demo-rc4k.py --device cuda \
#       --amp --dino-config configs/pretrain/dino_vit-tiny-p16_1xb256-100e_demo-rc4k.py
_base_ = ['./dino_vit-tiny-p16_1xb64-10e_demo-rc.py']

data_root = 'data/flsl_demo_rc4k/'
max_epochs = 100
warmup_epochs = 10

model = dict(head=dict(hidden_channels=2048))

train_dataloader = dict(
    batch_size=256,
    num_workers=12,
    dataset=dict(data_root=data_root,
                 demo_kwargs=dict(num_train=4096, num_val=64, random_colours=True)))

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
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
# probe curve: every 10 epochs, k-NN memory from a fixed subset of 512 train images
custom_hooks = [
    dict(type='DenseProbeHook', probe_set=dict(type='demo', max_train=512),
         interval=10, probes=('knn', 'cluster')),
]

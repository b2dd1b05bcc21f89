# "Does FLSL learn?" on CPU (docs/benchmarks.md): FLSL pretraining of a ViT-Tiny/16 on
# the random-colour demo set, where colour does not give the class away (classes
# differ only by texture and shape). FLSL as published; what is scaled for a 2-core
# CPU, and why (each is written down in docs/benchmarks.md):
# - data: 512 generated 128 x 160 images (the demo set at 8x the images);
# - crops: global 128 px (8 x 8 tokens), local 64 px (4 x 4), windows 2 (from the
#   demo config);
# - head: K = 256 prototypes, hidden 512, bottleneck 64 (K scaled to the queries
#   one VMR batch holds, bottleneck kept below K);
# - batch 64 (one process), lr 5e-4 (the lr of the 256-image reference batch:
#   the linear rule's 1.25e-4 barely moves the backbone in 80 iterations);
# - schedules: 10 epochs, lr warm-up 1 epoch, tau_t warm-up 3 epochs, the rest per
#   iteration over the run as published.
# Run it with tools/analysis/learning_study.py (3 seeds, ablations, probes).
_base_ = ['./flsl_vit-tiny-p16_demo.py']

data_root = 'data/flsl_demo_rc512/'
max_epochs = 10
warmup_epochs = 1

model = dict(
    head=dict(out_channels=256, hidden_channels=512, bottleneck_channels=64),
    loss=dict(warmup_teacher_temp_epochs=3))

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

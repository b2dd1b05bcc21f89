# FLSL with a ViT-S/16 student and EMA teacher (FLSL_SPEC sections 1, 2, 5, 6, 7).
model = dict(
    type='FLSL',
    data_preprocessor=dict(
        # mmpretrain's SelfSupDataPreprocessor without its host syncs (the BGR->RGB
        # list index), plus the batch's query indices (docs/pretraining.md)
        type='MultiViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        non_blocking=True),  # pinned batches to the GPU without waiting for it
    backbone=dict(type='FLSLViT', arch='small', patch_size=16, img_size=224,
                  drop_path_rate=0.1, final_norm=True, out_type='tokens'),
    head=dict(type='FLSLHead', in_channels=384, out_channels=4096,
              hidden_channels=2048, bottleneck_channels=256, norm_last_layer=True),
    loss=dict(type='FLSLLoss', upsilon=0.03, eta=1.0, gamma=5.0, student_temp=0.1,
              teacher_temp=0.07, warmup_teacher_temp=0.04,
              warmup_teacher_temp_epochs=30, use_centering=False),
    beta_sa=0.1 / 384**0.5,
    beta_ca=0.2 / 384**0.5,
    # student weight of the EMA: teacher momentum 0.996 -> 1 (cosine, per iter)
    teacher_momentum=0.004,
    teacher_end_momentum=0.0)

# DINO with a ViT-S/16 student and EMA teacher (Caron et al. 2021; docs/dino.md):
# main_dino.py's ViT-S/16 setting. The ViT is FLSL's with a class token and a
# learned position embedding; the head is DINO's (FLSLHead is the same module).
model = dict(
    type='DINO',
    data_preprocessor=dict(
        # mmpretrain's SelfSupDataPreprocessor without its host syncs (the BGR->RGB
        # list index), plus the batch's query indices (docs/pretraining.md)
        type='MultiViewDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        to_rgb=True,
        non_blocking=True),
    backbone=dict(type='FLSLViT', arch='small', patch_size=16, img_size=224,
                  drop_path_rate=0.1, final_norm=True, with_cls_token=True,
                  pos_embed_type='learnable', out_type='cls_token'),
    head=dict(type='FLSLHead', in_channels=384, out_channels=65536,
              hidden_channels=2048, bottleneck_channels=256, num_layers=3,
              use_bn=False, norm_last_layer=True),
    # tau_t 0.04 throughout (main_dino.py's default; the 800-epoch ViT-S/16 run
    # warms 0.04 -> 0.07 over 30 epochs: warmup_teacher_temp_epochs=30,
    # teacher_temp=0.07)
    loss=dict(type='DINOLoss', num_global_crops=2, student_temp=0.1,
              teacher_temp=0.04, warmup_teacher_temp=0.04,
              warmup_teacher_temp_epochs=0, center_momentum=0.9),
    # student weight of the EMA: teacher momentum 0.996 -> 1 (cosine, per iter)
    teacher_momentum=0.004,
    teacher_end_momentum=0.0)

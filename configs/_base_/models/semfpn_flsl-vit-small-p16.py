# Semantic FPN on the FLSL ViT-S/16, as the authors' segmentation release
# (semfpn_vit-s16_512x512_40k_ade20k.py): blocks (2, 5, 8, 11) (0-based), all at
# stride 16, no class token, no final norm on them, drop path 0.1; the fixed 2-D
# sin-cos position embedding of the 224 grid is resized per input (bicubic, the
# reference rule). FPN 384 x 4 -> 256 x 4; FPNHead with the feature strides of
# their config ([4, 8, 16, 32]: the head upsamples each map and resizes to the
# first one), 128 channels, dropout 0.1, SyncBN, cross-entropy; whole-image test.
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=(512, 512),  # pads each training crop to 512 x 512
    # whole-image test: pad to a multiple of the patch (the prediction is cropped
    # back), as the reference ViT's padded patch embedding does
    test_cfg=dict(size_divisor=16))
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='FLSLViT',
        arch='small',
        patch_size=16,
        img_size=224,
        drop_path_rate=0.1,
        final_norm=False,
        out_type='featmap',
        out_indices=(2, 5, 8, 11),
        # the teacher backbone converted with tools/model_converters/flsl_to_mmdet.py
        init_cfg=dict(type='Pretrained',
                      checkpoint='checkpoints/flsl_vit-small-p16_backbone.pth',
                      prefix='backbone.')),
    neck=dict(type='FPN', in_channels=[384, 384, 384, 384], out_channels=256,
              num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                         loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))

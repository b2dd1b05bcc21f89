import pytest
import torch
from mmdet.registry import MODELS as DET_MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.registry import DefaultScope

from flsl_mm.models import FLSLViT, ViTFPNAdapter


@pytest.mark.parametrize('patch,hw', [(16, (64, 64)), (16, (64, 96)),
                                      (8, (64, 64)), (8, (32, 96))])
def test_adapter_strides_and_channels(patch, hw):
    backbone = FLSLViT(arch=dict(embed_dims=32, num_layers=4, num_heads=2),
                       patch_size=patch, out_type='featmap', out_indices=(0, 1, 2, 3),
                       final_norm=False)
    adapter = ViTFPNAdapter(in_channels=32, patch_size=patch)
    outs = adapter(backbone(torch.randn(2, 3, *hw)))
    assert [o.shape[1] for o in outs] == [32] * 4
    assert [tuple(o.shape[-2:]) for o in outs] == [(hw[0] // s, hw[1] // s)
                                                   for s in (4, 8, 16, 32)]


@pytest.mark.parametrize('norm', ['BN', 'LN2d'])
def test_adapter_norms(norm):
    adapter = ViTFPNAdapter(in_channels=8, patch_size=16, norm_cfg=dict(type=norm))
    assert type(adapter.branches[0][1]).__name__ in ('BatchNorm2d', 'LayerNorm2d')
    outs = adapter([torch.randn(1, 8, 4, 4)] * 4)
    assert outs[0].shape == (1, 8, 16, 16)


def test_adapter_rejects_bad_inputs():
    with pytest.raises(ValueError, match='patch_size'):
        ViTFPNAdapter(8, patch_size=14)
    with pytest.raises(ValueError, match='4 feature maps'):
        ViTFPNAdapter(8)([torch.randn(1, 8, 4, 4)] * 3)


def _tiny_mask_rcnn(repo_root):
    cfg = Config.fromfile(str(repo_root / 'configs/det_coco/'
                              'mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    model_cfg.backbone.arch = dict(embed_dims=32, num_layers=12, num_heads=2)
    model_cfg.neck[0].in_channels = 32
    model_cfg.neck[1].in_channels = [32] * 4
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(model_cfg)
    model.init_weights()
    return model


def _batch(h, w):
    from mmengine.structures import InstanceData
    from mmdet.structures.mask import BitmapMasks
    torch.manual_seed(0)
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                         scale_factor=(1.0, 1.0), pad_shape=(h, w)))
    inst = InstanceData()
    inst.bboxes = torch.tensor([[10.0, 12.0, 50.0, 60.0]])
    inst.labels = torch.tensor([1])
    mask = torch.zeros(1, h, w, dtype=torch.uint8)
    mask[0, 12:60, 10:50] = 1
    inst.masks = BitmapMasks(mask.numpy(), h, w)
    sample.gt_instances = inst
    img = (torch.rand(3, h, w) * 255).to(torch.uint8)
    return dict(inputs=[img], data_samples=[sample])


def test_mask_rcnn_loss_and_predict_non_square(repo_root):
    model = _tiny_mask_rcnn(repo_root)
    data = model.data_preprocessor(_batch(90, 150), training=True)
    # padded to a multiple of 32: the position embedding is resized to 6 x 10
    assert data['inputs'].shape[-2:] == (96, 160)
    losses = model(**data, mode='loss')
    for key in ('loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert key in losses
    total = sum(v if torch.is_tensor(v) else sum(v) for k, v in losses.items()
                if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(_batch(90, 150), training=False)
        preds = model(**data, mode='predict')
    assert preds[0].pred_instances.bboxes.shape[-1] == 4

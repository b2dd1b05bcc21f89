"""The analysis tools normalise inputs with the config's data preprocessor."""
import numpy as np
import pytest
import torch

from flsl_mm.analysis import extract_tokens, load_backbone

CFG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def test_mean_std_and_channel_order_come_from_the_config(repo_root, tmp_path):
    child = tmp_path / 'child.py'
    child.write_text(f"_base_ = ['{repo_root / CFG}']\n"
                     "model = dict(data_preprocessor=dict(mean=[10.0, 20.0, 30.0], "
                     "std=[2.0, 4.0, 8.0], to_rgb=False))\n")
    backbone = load_backbone(str(child), random_init=True)
    norm = backbone.input_norm
    np.testing.assert_array_equal(norm.mean, [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(norm.std, [2.0, 4.0, 8.0])
    img = np.random.RandomState(0).randint(0, 256, (32, 48, 3)).astype(np.uint8)
    x = norm(img)
    expected = (img.astype(np.float32) - [10.0, 20.0, 30.0]) / [2.0, 4.0, 8.0]
    torch.testing.assert_close(x[0].permute(1, 2, 0),
                               torch.from_numpy(expected.astype(np.float32)))
    # the published config: ImageNet statistics, BGR -> RGB
    published = load_backbone(str(repo_root / CFG), random_init=True)
    assert published.input_norm.to_rgb
    rgb = published.input_norm(img)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(rgb[0, 0], (img[0, 0, ::-1] - published.input_norm.mean)
                               / published.input_norm.std, rtol=1e-6)
    # the tokens differ accordingly
    a = extract_tokens(backbone, img)
    b = extract_tokens(load_backbone(str(repo_root / CFG), random_init=True), img)
    assert a.shape == b.shape == (2, 3, 192) and not np.allclose(a, b)


def test_backbone_without_input_norm_is_refused():
    from flsl_mm.models import FLSLViT
    with pytest.raises(ValueError, match='load_backbone'):
        extract_tokens(FLSLViT(arch='tiny'), np.zeros((32, 32, 3), np.uint8))


def test_a_timm_vit_with_class_token_loads(repo_root, tmp_path):
    """DINO / timm ViT checkpoints feed the analysis tools (and the DAVIS tool):
    the class token and its position slot are dropped."""
    import timm
    from safetensors.torch import save_file
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False)
    torch.save(vit.state_dict(), tmp_path / 'vit.pth')
    # the same weights as timm publishes them on the Hugging Face hub
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()},
              str(tmp_path / 'model.safetensors'))
    for name in ('vit.pth', 'model.safetensors'):
        backbone = load_backbone(str(repo_root / CFG), str(tmp_path / name))
        torch.testing.assert_close(backbone.pos_embed, vit.pos_embed[:, 1:])
        torch.testing.assert_close(backbone.blocks[3].mlp.fc1.weight,
                                   vit.blocks[3].mlp.fc1.weight)
    with pytest.raises(ValueError, match='cannot be read as a torch checkpoint'):
        (tmp_path / 'junk.pth').write_bytes(b'junk')
        load_backbone(str(repo_root / CFG), str(tmp_path / 'junk.pth'))


def test_device_view_configs_normalise_as_their_parents(repo_root):
    """DeviceViewPreprocessor has no to_rgb (it gets RGB images): the analysis tools
    must still flip their BGR images, as for the CPU-path parent config."""
    from mmengine.config import Config

    from flsl_mm.analysis.tokens import InputNorm
    norms = [InputNorm.from_config(Config.fromfile(str(
        repo_root / f'configs/pretrain/flsl_vit-tiny-p16_demo{s}.py')))
        for s in ('', '-gpuaug')]
    assert norms[1].to_rgb and norms[0].to_rgb
    assert (norms[0].mean == norms[1].mean).all() and (norms[0].std == norms[1].std).all()

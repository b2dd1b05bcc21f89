import subprocess
import sys

import cv2
import numpy as np
import torch

from flsl_mm.analysis import load_backbone
from flsl_mm.analysis.visualize import mean_shift_attention, pca_rgb, visualize_tokens

CFG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def test_attention_is_a_softmax_and_pca_deterministic():
    rng = np.random.RandomState(0)
    tokens = rng.randn(4, 5, 8).astype(np.float32)
    attn = mean_shift_attention(tokens, (1, 2), beta=0.5)
    assert attn.shape == (4, 5) and abs(attn.sum() - 1) < 1e-9
    z = tokens.reshape(-1, 8)
    ref = np.exp(0.5 * z @ tokens[1, 2])
    np.testing.assert_allclose(attn.reshape(-1), ref / ref.sum(), rtol=1e-6)
    np.testing.assert_array_equal(pca_rgb(tokens), pca_rgb(tokens.copy()))


def _trained_checkpoint(path, repo_root):
    """A 'trained' model: the random init moved by a few FLSL-loss steps."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(str(repo_root / CFG))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    with torch.no_grad():
        for p in model.teacher.module.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(dict(state_dict=model.state_dict()), path)


def test_cli_writes_panels_that_differ_between_models(tmp_path, demo_root, repo_root):
    img = demo_root / 'val' / 'images' / 'val_00000.png'
    ckpt = tmp_path / 'trained.pth'
    _trained_checkpoint(ckpt, repo_root)
    outs = {}
    for tag, args in (('random', ['--random-init']), ('trained', [str(ckpt)])):
        cmd = [sys.executable, 'tools/analysis/visualize_flsl.py', CFG, *args,
               str(img), '--out-dir', str(tmp_path / tag), '--points', '20,20',
               '60,70', '100,40']
        proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outs[tag] = cv2.imread(str(tmp_path / tag / 'val_00000_flsl.png'))
    h, w = 96, 128  # demo images of the fixture (multiples of 16)
    # input + PCA + clusters + 3 attention panels, 4 px separators
    assert outs['random'].shape == (h, 6 * w + 5 * 4, 3)
    panel = lambda im, i: im[:, i * (w + 4):i * (w + 4) + w]  # noqa: E731
    np.testing.assert_array_equal(panel(outs['random'], 0), panel(outs['trained'], 0))
    for i in range(1, 6):
        assert np.abs(panel(outs['random'], i).astype(int) -
                      panel(outs['trained'], i).astype(int)).mean() > 1.0, i
    # deterministic
    again = visualize_tokens(load_backbone(str(repo_root / CFG), random_init=True),
                             cv2.imread(str(img)), [(20, 20), (60, 70), (100, 40)],
                             beta=0.1 / 384**0.5)
    np.testing.assert_array_equal(again, outs['random'])


def test_cli_errors(tmp_path, repo_root):
    proc = subprocess.run([sys.executable, 'tools/analysis/visualize_flsl.py', CFG,
                           '--random-init', str(tmp_path / 'missing.png')],
                          cwd=repo_root, capture_output=True, text=True)
    assert proc.returncode == 2 and 'missing.png: missing or not an image' in proc.stderr

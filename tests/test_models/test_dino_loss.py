"""DINOLoss against hand-computed values: centring, temperatures, crop pairs,
centre update, tau_t warm-up (Caron et al. 2021, Eq. 3-4; docs/dino.md)."""
import math

import numpy as np
import pytest
import torch

from flsl_mm.models import DINOLoss


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_loss_and_centre_by_hand():
    # B = 1 image, K = 3, 2 global crops + 1 local crop
    t = np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]])          # teacher, globals
    s = np.array([[0.3, 0.1, 0.0], [0.0, 0.4, 0.2], [0.2, 0.2, 0.5]])  # student, all
    c = np.array([[0.1, -0.2, 0.05]])
    loss = DINOLoss(out_dim=3, teacher_temp=0.04, warmup_teacher_temp=0.04,
                    student_temp=0.1, center_momentum=0.9)
    loss.center.copy_(torch.tensor(c, dtype=torch.float32))
    out = loss(torch.tensor(s, dtype=torch.float32), torch.tensor(t, dtype=torch.float32))
    assert set(out) == {'loss_dino'}
    p_t = softmax((t - c) / 0.04)
    log_p_s = np.log(softmax(s / 0.1))
    # teacher crop 0 with student crops 1, 2; teacher crop 1 with student 0, 2
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    want = np.mean([-(p_t[i] * log_p_s[j]).sum() for i, j in pairs])
    assert out['loss_dino'].item() == pytest.approx(want, rel=1e-5)
    # centre: 0.9 c + 0.1 mean of the teacher rows (before centring)
    np.testing.assert_allclose(loss.center.numpy(), 0.9 * c + 0.1 * t.mean(0, keepdims=True),
                               rtol=1e-6)


def test_batch_rows_are_crop_major():
    """Rows are [crop 0 of every image, crop 1 of every image, ...]: a batch of 2
    equals the mean of the two single-image losses."""
    torch.manual_seed(0)
    t = torch.randn(2, 2, 5)   # crop x image x K
    s = torch.randn(4, 2, 5)
    whole = DINOLoss(out_dim=5)(s.reshape(8, 5), t.reshape(4, 5))['loss_dino']
    parts = [DINOLoss(out_dim=5)(s[:, b], t[:, b])['loss_dino'] for b in range(2)]
    assert whole.item() == pytest.approx(sum(p.item() for p in parts) / 2, rel=1e-5)


def test_the_same_view_is_skipped_and_gradient_reaches_the_student_only():
    loss = DINOLoss(out_dim=4)
    t = torch.randn(2, 4, requires_grad=True)
    s = torch.randn(2, 4, requires_grad=True)  # two global crops only: 2 pairs
    out = loss(s, t)['loss_dino']
    out.backward()
    assert t.grad is None and s.grad is not None
    p_t = torch.softmax(t.detach() / 0.04, -1)
    log_ps = torch.log_softmax(s.detach() / 0.1, -1)
    want = (-(p_t[0] * log_ps[1]).sum() - (p_t[1] * log_ps[0]).sum()) / 2
    assert out.item() == pytest.approx(want.item(), rel=1e-5)


def test_teacher_temperature_warmup_per_epoch():
    loss = DINOLoss(out_dim=2, teacher_temp=0.07, warmup_teacher_temp=0.04,
                    warmup_teacher_temp_epochs=30)
    sched = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(70, 0.07)])
    for epoch in (0, 1, 15, 29, 30, 99):
        assert loss.set_epoch(epoch) == pytest.approx(sched[epoch])
        assert loss.current_teacher_temp == pytest.approx(sched[epoch])
    assert DINOLoss(out_dim=2).set_epoch(5) == 0.04  # the default: 0.04 throughout


def test_bad_row_counts_are_explained():
    loss = DINOLoss(out_dim=3)
    with pytest.raises(ValueError, match='teacher rows'):
        loss(torch.randn(6, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match='student rows'):
        loss(torch.randn(5, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match='at least 2 crops'):
        loss(torch.randn(2, 3), torch.randn(4, 3))


def test_uniform_outputs_give_log_k():
    loss = DINOLoss(out_dim=8)
    out = loss(torch.zeros(6, 8), torch.zeros(4, 8))['loss_dino']
    assert out.item() == pytest.approx(math.log(8), rel=1e-6)

import math

import pytest
import torch

from flsl_mm.models import FLSLLoss, kmeans_loss, meanshift_loss, vmr_loss

LN3 = math.log(3.0)


def test_meanshift_loss_hand_computed():
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    m = torch.tensor([[1.0, 1.0], [0.0, 5.0]])
    # cos = 1/sqrt(2) and 1 -> 2 - 2 * mean
    assert meanshift_loss(q, m).item() == pytest.approx(2 - (1 / math.sqrt(2) + 1))


def test_kmeans_loss_hand_computed():
    logits = torch.tensor([[0.0, LN3]])  # tau_s = 1 -> p_s = (1/4, 3/4)
    p_t = torch.tensor([[1.0, 0.0]])
    assert kmeans_loss(logits, p_t, 1.0).item() == pytest.approx(math.log(4))
    # temperature divides the logits: tau_s = 0.5 -> softmax([0, 2 ln 3]) = (.1, .9)
    assert kmeans_loss(logits, p_t, 0.5).item() == pytest.approx(math.log(10))


def test_vmr_is_kl_to_uniform():
    balanced = torch.tensor([[0.0, LN3], [LN3, 0.0]])  # pbar = (1/2, 1/2)
    assert vmr_loss(balanced, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    one = torch.tensor([[0.0, LN3]])
    expected = 0.25 * math.log(0.25) + 0.75 * math.log(0.75) + math.log(2)
    assert vmr_loss(one, 1.0).item() == pytest.approx(expected)
    torch.manual_seed(0)
    logits = torch.randn(7, 5)
    pbar = torch.softmax(logits / 0.1, -1).mean(0)
    kl = torch.nn.functional.kl_div(torch.full((5,), 0.2).log(), pbar,
                                    reduction='sum')
    assert vmr_loss(logits, 0.1).item() == pytest.approx(kl.item(), rel=1e-5)


def test_total_loss_weights_and_teacher_temperature():
    # tau_t: 1.0 at epoch 0, then ln3 / ln9 (a one-epoch warm-up)
    loss = FLSLLoss(out_dim=2, upsilon=0.5, eta=2.0, gamma=3.0, student_temp=1.0,
                    warmup_teacher_temp=1.0, teacher_temp=LN3 / math.log(9),
                    warmup_teacher_temp_epochs=1)
    q = torch.tensor([[1.0, 0.0]])
    m = torch.tensor([[1.0, 1.0]])
    s = torch.tensor([[0.0, LN3]])
    t = torch.tensor([[LN3, 0.0]])  # tau_t = 1 -> p_t = (3/4, 1/4)
    out = loss(q, m, s, t)
    assert set(out) == {'loss_meanshift', 'loss_kmeans', 'loss_vmr'}
    assert out['loss_meanshift'].item() == pytest.approx(0.5 * (2 - math.sqrt(2)))
    km = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    assert out['loss_kmeans'].item() == pytest.approx(2.0 * km)
    vmr = 0.25 * math.log(0.25) + 0.75 * math.log(0.75) + math.log(2)
    assert out['loss_vmr'].item() == pytest.approx(3.0 * vmr)
    # teacher temperature sharpens p_t: tau_t = ln3 / ln9 -> p_t = (.9, .1)
    assert loss.set_epoch(1) == pytest.approx(LN3 / math.log(9))
    out = loss(q, m, s, t)
    km = -(0.9 * math.log(0.25) + 0.1 * math.log(0.75))
    assert out['loss_kmeans'].item() == pytest.approx(2.0 * km)


def test_centering_replaces_vmr_and_updates_center():
    loss = FLSLLoss(out_dim=2, student_temp=1.0, teacher_temp=1.0,
                    warmup_teacher_temp=1.0, use_centering=True, center_momentum=0.9)
    t = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    out = loss(torch.ones(2, 2), torch.ones(2, 2), torch.zeros(2, 2), t)
    assert 'loss_vmr' not in out
    torch.testing.assert_close(loss.center, torch.tensor([[0.1, 0.0]]))
    # the next call centres the teacher logits with the stored centre
    p = loss.teacher_probs(torch.tensor([[0.1, 0.0]]))
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.5]]))


def test_gradients_reach_student_inputs_only():
    loss = FLSLLoss(out_dim=4)
    q = torch.randn(6, 8, requires_grad=True)
    m = torch.randn(6, 8, requires_grad=True)
    s = torch.randn(6, 4, requires_grad=True)
    t = torch.randn(6, 4, requires_grad=True)
    sum(loss(q, m, s, t).values()).backward()
    assert q.grad is not None and m.grad is not None and s.grad is not None
    assert t.grad is None

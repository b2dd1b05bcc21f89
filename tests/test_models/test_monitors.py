"""FLSL health monitors against hand-computed values; on/off changes nothing."""
import copy
import math

import pytest
import torch

from flsl_mm.models import FLSL
from flsl_mm.models.utils import monitors as mon

from test_flsl import TINY, make_batch  # noqa: E402 (same folder)


def test_target_entropy_coverage_agreement():
    k = 8
    uniform = torch.full((5, k), 1 / k)
    one_hot = torch.nn.functional.one_hot(torch.full((5,), 3), k).float()
    m = mon.prototype_monitors(student_probs=one_hot, teacher_probs=uniform)
    assert m['mon_target_entropy'].item() == pytest.approx(1.0)  # uniform targets
    assert m['mon_coverage'].item() == pytest.approx(0.0)  # one prototype for all
    assert m['mon_prototypes_used'].item() == 1
    m = mon.prototype_monitors(student_probs=one_hot, teacher_probs=one_hot)
    assert m['mon_target_entropy'].item() == pytest.approx(0.0)
    assert m['mon_agreement'].item() == 1.0
    # two queries on prototypes 0 and 1: pbar = (.5, .5, 0, ...) -> ln 2 / ln 8
    two = torch.nn.functional.one_hot(torch.tensor([0, 1]), k).float()
    m = mon.prototype_monitors(student_probs=two, teacher_probs=two.flip(0))
    assert m['mon_coverage'].item() == pytest.approx(math.log(2) / math.log(k))
    assert m['mon_prototypes_used'].item() == 2 and m['mon_agreement'].item() == 0.0


def test_attention_entropy_displacement_spread_distance():
    q = torch.randn(2, 3, 4)
    z = torch.randn(2, 6, 4)
    assert mon.attention_entropy(q, z, beta=0.0).item() == pytest.approx(1.0)
    sharp = mon.attention_entropy(z, z, beta=100.0).item()  # each token on itself
    assert sharp < 0.05
    q = torch.tensor([[3.0, 4.0]])
    assert mon.displacement(q, torch.tensor([[3.0, 0.0]])).item() == pytest.approx(0.8)
    collapsed = torch.ones(4, 10, 16)
    assert mon.token_spread(collapsed).item() == pytest.approx(0.0, abs=1e-6)
    spread = mon.token_spread(torch.randn(64, 50, 128, generator=torch.Generator()
                                          .manual_seed(0))).item()
    assert spread == pytest.approx(1.0, abs=0.02)  # spread over the sphere
    a = [torch.zeros(2, 2), torch.zeros(3)]
    b = [torch.full((2, 2), 1.0), torch.tensor([0.0, 2.0, 0.0])]
    assert mon.parameter_distance(a, b).item() == pytest.approx(math.sqrt(4 + 4))


def test_monitors_change_no_loss_or_gradient():
    outs = []
    for monitors in (True, False):
        torch.manual_seed(0)
        model = FLSL(**copy.deepcopy(TINY), monitors=monitors).train()
        inputs, samples = make_batch()
        torch.manual_seed(5)  # drop path draws
        losses = model.loss(inputs, samples)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        outs.append((losses, {n: p.grad.clone() for n, p in model.named_parameters()
                              if p.grad is not None}))
    (with_mon, g1), (without, g2) = outs
    assert any(k.startswith('mon_') for k in with_mon)
    assert not any(k.startswith('mon_') for k in without)
    for k in without:
        assert torch.equal(with_mon[k], without[k]), k
    assert g1.keys() == g2.keys()
    for n in g1:
        assert torch.equal(g1[n], g2[n]), n


def test_monitor_values_of_a_fresh_model_are_in_range():
    torch.manual_seed(0)
    model = FLSL(**copy.deepcopy(TINY)).train()
    inputs, samples = make_batch()
    out = model.loss(inputs, samples)
    for key in ('mon_target_entropy', 'mon_coverage', 'mon_agreement',
                'mon_sa_attention_entropy', 'mon_ca_attention_entropy'):
        assert 0.0 <= out[key].item() <= 1.0 + 1e-6, key
    assert 1 <= out['mon_prototypes_used'].item() <= 16
    assert out['mon_token_spread'].item() > 0.3 and out['mon_displacement'] > 0
    assert model.teacher_student_distance().item() == 0.0  # teacher = student copy

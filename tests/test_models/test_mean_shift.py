import math

import torch

from flsl_mm.models import mean_shift


def test_mean_shift_hand_computed():
    q = torch.tensor([[[1.0, 0.0]]])
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    e = math.e
    out = mean_shift(q, z, beta=1.0)
    torch.testing.assert_close(out, torch.tensor([[[e / (e + 1), 1 / (e + 1)]]]))
    # beta multiplies the logits: beta = 2 -> weights softmax([2, 0])
    out2 = mean_shift(q, z, beta=2.0)
    w = e**2 / (e**2 + 1)
    torch.testing.assert_close(out2, torch.tensor([[[w, 1 - w]]]))


def test_mean_shift_broadcasts_teacher_without_copy():
    torch.manual_seed(0)
    views, b, m, n, c = 3, 2, 4, 5, 8
    q = torch.randn(views, b, m, c)
    zt = torch.randn(b, n, c)
    out = mean_shift(q, zt.unsqueeze(0), 0.5)
    for v in range(views):
        torch.testing.assert_close(out[v], mean_shift(q[v], zt, 0.5))

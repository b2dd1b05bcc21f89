import torch

from flsl_mm.models import FLSLHead


def test_head_structure_and_norm_last_layer():
    head = FLSLHead(in_channels=16, out_channels=32, hidden_channels=24,
                    bottleneck_channels=8)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 24), (24, 24),
                                                                  (24, 8)]
    g = head.last_layer.parametrizations.weight.original0
    assert torch.all(g == 1) and not g.requires_grad
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 32)
    # with g = 1 each prototype has unit norm and the input is L2-normalised:
    # every logit is a cosine in [-1, 1]
    assert out.abs().max() <= 1 + 1e-5


def test_head_loads_reference_weight_norm_names():
    head = FLSLHead(in_channels=4, out_channels=6, hidden_channels=5,
                    bottleneck_channels=3)
    sd = head.state_dict()
    ref = {k: v for k, v in sd.items() if 'parametrizations' not in k}
    ref['last_layer.weight_g'] = torch.full((6, 1), 1.0)
    ref['last_layer.weight_v'] = torch.randn(6, 3)
    other = FLSLHead(in_channels=4, out_channels=6, hidden_channels=5,
                     bottleneck_channels=3)
    other.load_state_dict(ref)
    torch.testing.assert_close(other.last_layer.parametrizations.weight.original1,
                               ref['last_layer.weight_v'])

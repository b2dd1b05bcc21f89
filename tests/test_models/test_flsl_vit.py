import pytest
import torch

from flsl_mm.models import FLSLViT, get_2d_sincos_pos_embed, resize_pos_embed


def test_tokens_shape_no_class_token_and_final_norm():
    torch.manual_seed(0)
    model = FLSLViT(arch='tiny', patch_size=16).eval()
    out = model(torch.randn(2, 3, 96, 160))
    assert out.shape == (2, 6 * 10, 192)
    # post LayerNorm (weight 1, bias 0): every token has ~zero mean, unit variance
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 60), atol=1e-5, rtol=0)
    no_norm = FLSLViT(arch='tiny', patch_size=16, final_norm=False)
    assert isinstance(no_norm.norm, torch.nn.Identity)


def test_fixed_pos_embed_and_reference_names():
    model = FLSLViT(arch='small', patch_size=16)
    torch.testing.assert_close(model.pos_embed[0], get_2d_sincos_pos_embed(384, 14))
    assert not any(n == 'pos_embed' for n, _ in model.named_parameters())
    keys = set(model.state_dict())
    for k in ('patch_embed.proj.weight', 'pos_embed', 'blocks.0.attn.qkv.weight',
              'blocks.0.attn.qkv.bias', 'blocks.11.mlp.fc2.weight', 'norm.weight',
              'blocks.3.norm1.weight'):
        assert k in keys
    assert not any('cls_token' in k for k in keys)
    assert model.blocks[0].attn.fused_attn  # timm's SDPA path


def test_pos_embed_resized_per_input():
    model = FLSLViT(arch='tiny', patch_size=16)
    pe = model.interpolate_pos_encoding(6, 10)
    torch.testing.assert_close(pe, resize_pos_embed(model.pos_embed, 14, (6, 10)))


def test_featmap_mode_and_drop_path():
    model = FLSLViT(arch='tiny', patch_size=8, out_type='featmap', final_norm=False,
                    out_indices=(3, 5, 7, 11), drop_path_rate=0.1)
    outs = model(torch.randn(1, 3, 64, 96))
    assert [o.shape for o in outs] == [(1, 192, 8, 12)] * 4
    rates = [getattr(blk.drop_path1, 'drop_prob', 0.0) for blk in model.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.1)
    assert rates[6] == pytest.approx(0.1 * 6 / 11)  # linear over depth


def test_bad_input_size_and_arch_messages():
    model = FLSLViT(arch='tiny')
    with pytest.raises(ValueError, match='not divisible by the patch size 16'):
        model(torch.randn(1, 3, 100, 96))
    with pytest.raises(KeyError, match='unknown arch'):
        FLSLViT(arch='huge')


def test_gradients_flow():
    model = FLSLViT(arch='tiny')
    model(torch.randn(1, 3, 32, 32)).sum().backward()
    assert model.patch_embed.proj.weight.grad is not None


def test_out_indices_are_validated_and_kept_in_order():
    vit = FLSLViT(arch=dict(embed_dims=24, num_layers=6, num_heads=2),
                  final_norm=False, out_type='featmap', out_indices=(5, 1, -4))
    assert vit.out_indices == [5, 1, 2]
    x = torch.randn(1, 3, 32, 48)
    outs = vit(x)
    assert len(outs) == 3
    # the maps come in the order asked for: recompute block outputs by hand
    tokens, (h, w) = vit.prepare_tokens(x)
    by_block = []
    for blk in vit.blocks:
        tokens = blk(tokens)
        by_block.append(tokens.transpose(1, 2).reshape(1, 24, h, w))
    for out, i in zip(outs, (5, 1, 2)):
        torch.testing.assert_close(out, by_block[i])
    for bad, msg in (((3, 6), 'out of range'), ((1, -6, 0), 'twice'),
                     ((-7,), 'out of range')):
        with pytest.raises(ValueError, match=msg):
            FLSLViT(arch=dict(embed_dims=24, num_layers=6, num_heads=2),
                    final_norm=False, out_type='featmap', out_indices=bad)


def test_featmap_mode_has_no_unused_parameters():
    with pytest.raises(ValueError, match='final_norm=False'):
        FLSLViT(arch='tiny', out_type='featmap', final_norm=True)
    vit = FLSLViT(arch=dict(embed_dims=24, num_layers=6, num_heads=2),
                  final_norm=False, out_type='featmap', out_indices=(1, 3))
    sum(o.sum() for o in vit(torch.randn(2, 3, 32, 32))).backward()
    trainable = [n for n, p in vit.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith(('blocks.4.', 'blocks.5.'))
                                 for n in trainable)
    unused = [n for n, p in vit.named_parameters()
              if p.requires_grad and p.grad is None]
    assert unused == []


def test_dino_class_token_and_learned_position_embedding():
    """DINO's ViT: class token first, its position slot unchanged by resizing,
    the normalised class token out; patch tokens alone in 'tokens' mode."""
    torch.manual_seed(0)
    model = FLSLViT(arch='tiny', with_cls_token=True, pos_embed_type='learnable',
                    out_type='cls_token').eval()
    names = dict(model.named_parameters())
    assert names['cls_token'].shape == (1, 1, 192)
    assert names['pos_embed'].shape == (1, 1 + 196, 192)
    assert 0.015 < model.pos_embed.std().item() < 0.025  # trunc-normal .02
    x = torch.randn(2, 3, 64, 96)
    tokens, (h, w) = model.prepare_tokens(x)
    assert (h, w) == (4, 6) and tokens.shape == (2, 1 + 24, 192)
    pe = model.interpolate_pos_encoding(4, 6)
    torch.testing.assert_close(pe[:, 0], model.pos_embed[:, 0])
    torch.testing.assert_close(pe[:, 1:], resize_pos_embed(model.pos_embed[:, 1:],
                                                           14, (4, 6)))
    torch.testing.assert_close(tokens[:, 0], (model.cls_token + model.pos_embed[:, :1])
                               .expand(2, -1, -1)[:, 0])
    with torch.no_grad():
        ref = tokens
        for blk in model.blocks:
            ref = blk(ref)
        ref = model.norm(ref)
        torch.testing.assert_close(model(x), ref[:, 0])
        model.out_type = 'tokens'
        torch.testing.assert_close(model(x), ref[:, 1:])
    dense = FLSLViT(arch='tiny', with_cls_token=True, out_type='featmap',
                    final_norm=False, out_indices=(11,))
    assert dense(x)[0].shape == (2, 192, 4, 6)
    # a fixed sin-cos embedding with a class token: zero class slot, patch slots
    # as without one
    fixed = FLSLViT(arch='tiny', with_cls_token=True)
    assert fixed.pos_embed.shape == (1, 197, 192) and 'pos_embed' not in dict(
        fixed.named_parameters())
    torch.testing.assert_close(fixed.pos_embed[0, 0], torch.zeros(192))
    torch.testing.assert_close(fixed.pos_embed[0, 1:], get_2d_sincos_pos_embed(192, 14))


def test_class_token_options_are_checked():
    with pytest.raises(ValueError, match='needs with_cls_token=True'):
        FLSLViT(arch='tiny', out_type='cls_token')
    with pytest.raises(ValueError, match="'sincos' or 'learnable'"):
        FLSLViT(arch='tiny', pos_embed_type='rope')
    frozen = FLSLViT(arch='tiny', with_cls_token=True, pos_embed_type='learnable',
                     frozen_stages=1)
    assert not frozen.cls_token.requires_grad and not frozen.pos_embed.requires_grad
    assert frozen.get_layer_depth('cls_token')[0] == 0

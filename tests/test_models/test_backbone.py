# Copyright (c) mdeq_mm authors. All rights reserved.
"""The MDEQ backbone: shapes, parameter counts, per-forward reset, implicit
gradients, input sizes, freezing, init."""
import pytest
import torch

from mdeq_mm.models import MDEQ, VariationalDropout2d, WeightNormConv2d
from mdeq_mm.models.backbones import ARCH_SETTINGS

FAST = dict(solver_cfg=dict(max_iter=3, tol=1e-3),
            grad_cfg=dict(solver_cfg=dict(max_iter=3)))


@pytest.mark.parametrize('arch,size,strides', [
    ('tiny', 32, (1, 2)),
    ('small', 64, (4, 8, 16, 32)),
    ('large', 64, (4, 8, 16, 32)),
    ('xl', 64, (4, 8, 16, 32)),
])
def test_output_shapes_for_every_preset(arch, size, strides):
    torch.manual_seed(0)
    model = MDEQ(arch, **FAST).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, size, size * 2))
    channels = ARCH_SETTINGS[arch]['num_channels']
    assert len(outs) == len(channels) == len(strides)
    for out, c, s in zip(outs, channels, strides):
        assert out.shape == (1, c, size // s, 2 * size // s)


@pytest.mark.parametrize('arch,f_params', [('tiny', 111_792),
                                           ('small', 8_716_192),
                                           ('xl', 77_699_952)])
def test_f_parameter_counts_match_reference(arch, f_params):
    # the reference's f_θ parameter counts (weight-norm g included)
    f_theta = MDEQ(arch).deq_layer
    assert sum(p.numel() for p in f_theta.parameters()) == f_params


def test_weight_norm_is_exact_and_computed_once_per_forward():
    torch.manual_seed(0)
    model = MDEQ('tiny', dropout=0.2, solver_cfg=dict(max_iter=6, tol=0.),
                 grad_cfg=dict(solver_cfg=dict(max_iter=3)))
    convs = [m for m in model.modules() if isinstance(m, WeightNormConv2d)]
    # block conv1/conv2 per branch + post-fusion conv per branch
    assert len(convs) == 3 * 2
    for conv in convs:
        v, g = conv.weight_v, conv.weight_g
        # torch's own weight norm with the same g and v, as the reference
        c_out, c_in, k, _ = v.shape
        ref = torch.nn.utils.parametrizations.weight_norm(
            torch.nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False),
            dim=0)
        with torch.no_grad():
            ref.parametrizations.weight.original0.copy_(g * 1.7)
            ref.parametrizations.weight.original1.copy_(v)
            g.mul_(1.7)  # away from the init g = ‖v‖, where W = v
        torch.testing.assert_close(conv.compute_weight(), ref.weight)
        x = torch.randn(2, c_in, 6, 6)
        with torch.no_grad():
            torch.testing.assert_close(conv(x), ref(x))
            g.div_(1.7)
        # starts as PyTorch's default conv init with g = ‖v‖
        torch.testing.assert_close(g.flatten(), v.flatten(1).norm(dim=1))
    model.train()
    out = model(torch.randn(2, 3, 16, 16))
    sum(o.sum() for o in out).backward()
    assert all(c.n_computed == 1 for c in convs)
    assert model.last_stats.forward.nfev.max() == 7  # 7 f evaluations
    model(torch.randn(2, 3, 16, 16))
    assert all(c.n_computed == 2 for c in convs)
    # gradients reach g and v through the cached weight
    assert all(c.weight_v.grad is not None and c.weight_g.grad.abs().sum() > 0
               for c in convs)


def test_dropout_mask_shared_by_all_iterations_and_redrawn_next_forward():
    torch.manual_seed(0)
    model = MDEQ('tiny', dropout=0.5, solver_cfg=dict(max_iter=5, tol=0.),
                 grad='phantom', grad_cfg=dict(k=1)).train()
    drops = [m for m in model.modules()
             if isinstance(m, VariationalDropout2d)]
    assert len(drops) == 2
    x = torch.randn(2, 3, 16, 16)
    out = model(x)
    assert [d.n_drawn for d in drops] == [1, 1]
    masks = [d.mask.clone() for d in drops]
    assert masks[0].shape == (2, 24, 1, 1)
    assert set(masks[0].unique().tolist()) <= {0.0, 2.0}
    out2 = model(x)
    assert [d.n_drawn for d in drops] == [2, 2]
    assert any(not torch.equal(m, d.mask) for m, d in zip(masks, drops))
    del out, out2
    # eval: identity, no mask drawn
    model.eval()
    with torch.no_grad():
        model(x)
    assert [d.n_drawn for d in drops] == [2, 2]


def test_dropout_mask_is_identical_in_every_f_call_of_a_forward():
    torch.manual_seed(0)
    model = MDEQ('tiny', dropout=0.5, solver_cfg=dict(max_iter=4, tol=0.),
                 grad='phantom', grad_cfg=dict(k=2)).train()
    seen = []
    drop = model.deq_layer.branches[0].blocks[0].drop
    drop.register_forward_hook(lambda m, i, o: seen.append(m.mask.clone()))
    model(torch.randn(2, 3, 16, 16))
    assert len(seen) == 5 + 2  # 5 solver evaluations + 2 phantom steps
    assert all(torch.equal(s, seen[0]) for s in seen)


def train_with_frozen_bn(model):
    """Training mode, but BatchNorm (stem/injection, outside f) uses its
    running statistics so that the instance stays the same contraction."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()
    return model


def contractive_mdeq(**kw):
    """A small MDEQ made contractive: a small post-fusion GroupNorm scale
    (0.1) with large random biases makes f insensitive to z (fixed-point
    iteration converges at a rate of about 0.3 per step)."""
    torch.manual_seed(0)
    arch = dict(num_channels=(8, 16), num_blocks=(1, 1), expansion=2,
                num_groups=4, downsample_times=0, weight_norm=True)
    model = MDEQ(arch, **kw).double()
    with torch.no_grad():
        for post in model.deq_layer.post_fuse_layers:
            post.gnorm.weight.fill_(0.1)
            post.gnorm.bias.normal_(0, 3)
    return model


def test_implicit_gradient_matches_unrolled_to_convergence():
    tight = dict(max_iter=100, tol=1e-11, stop_mode='abs')
    implicit = train_with_frozen_bn(
        contractive_mdeq(solver_cfg=tight, grad_cfg=dict(solver_cfg=tight)))
    unrolled = train_with_frozen_bn(
        contractive_mdeq(mode='unrolled', unrolled_depth=80))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    w = [torch.randn(2, 8, 16, 16, dtype=torch.float64),
         torch.randn(2, 16, 8, 8, dtype=torch.float64)]

    def grads(model):
        out = model(x)
        loss = sum((o * wi).sum() for o, wi in zip(out, w))
        model.zero_grad()
        loss.backward()
        return out, {n: p.grad.clone() for n, p in model.named_parameters()
                     if p.grad is not None}

    out_i, g_i = grads(implicit)
    out_u, g_u = grads(unrolled)
    assert implicit.last_stats.forward.reasons == ['converged'] * 2
    assert implicit.last_stats.backward.reasons == ['converged'] * 2
    for a, b in zip(out_i, out_u):
        torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-8)
    assert set(g_i) == set(g_u)
    num = sum((g_i[k] - g_u[k]).pow(2).sum() for k in g_i).sqrt()
    den = sum(g_u[k].pow(2).sum() for k in g_u).sqrt()
    assert num / den <= 1e-3
    # stem and injection too
    for k in ('conv1.weight', 'bn1.weight'):
        rel = (g_i[k] - g_u[k]).norm() / g_u[k].norm()
        assert rel <= 1e-3, k


def test_evaluation_always_solves_and_returns_z_star():
    model = contractive_mdeq(
        mode='unrolled', unrolled_depth=2,
        solver_cfg=dict(max_iter=60, tol=1e-10, stop_mode='abs'))
    model.eval()
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    stats = model.last_stats
    assert stats.mode == 'solve' and stats.forward is not None
    assert not out[0].requires_grad
    assert (stats.rel_residual_per_scale < 1e-8).all()
    assert stats.rel_residual_per_scale.shape == (1, 2)


def test_unrolled_training_mode_applies_f_depth_times():
    model = MDEQ('tiny', mode='unrolled', unrolled_depth=3).train()
    calls = []
    model.deq_layer.register_forward_hook(lambda *a: calls.append(1))
    model(torch.randn(1, 3, 8, 8))
    assert len(calls) == 3
    assert model.last_stats.mode == 'unrolled'
    assert model.last_stats.nfev_tracked == 3


def test_input_size_not_divisible_is_padded_or_gives_a_clear_error():
    strict = MDEQ('small', pad_input=False, **FAST).eval()
    with pytest.raises(ValueError, match='size_divisor=32'):
        strict(torch.randn(1, 3, 70, 64))
    padded = MDEQ('small', **FAST).eval()  # the default pads
    padded.load_state_dict(strict.state_dict())
    x = torch.randn(1, 3, 70, 100)
    with torch.no_grad():
        outs = padded(x)
        # the same as zero-padding the (normalised) image to 96x128
        ref = strict(torch.nn.functional.pad(x, (0, 28, 0, 26)))
    assert [o.shape[-2:] for o in outs] == [(18, 25), (9, 13), (5, 7),
                                            (3, 4)]
    for o, r in zip(outs, ref):
        h, w = o.shape[-2:]
        torch.testing.assert_close(o, r[..., :h, :w])


def test_frozen_backbone_computes_no_gradients_and_keeps_norms_in_eval():
    model = MDEQ('tiny', frozen=True, **FAST)
    model.train()
    assert all(not p.requires_grad for p in model.parameters())
    assert not model.bn1.training and not model.training
    bn_mean = model.bn1.running_mean.clone()
    out = model(torch.randn(2, 3, 16, 16))
    assert not out[0].requires_grad
    assert model.last_stats.mode == 'solve'
    assert model.last_stats.backward is None
    torch.testing.assert_close(model.bn1.running_mean, bn_mean)


def test_reference_init():
    torch.manual_seed(0)
    model = MDEQ('small')
    # plain convs (stem, injection, fusion) ~ N(0, 0.01)
    fuse = torch.cat([m.weight.flatten() for m in model.deq_layer.modules()
                      if isinstance(m, torch.nn.Conv2d)])
    assert abs(fuse.std().item() - 0.01) < 5e-4
    assert abs(model.conv1.weight.std().item() - 0.01) < 2e-3
    # weight-normed convs keep PyTorch's kaiming-uniform(a=√5) init
    v = model.deq_layer.branches[0].blocks[0].conv1.weight_v
    bound = 1 / (v[0].numel())**0.5
    assert v.abs().max() <= bound and v.std() > 0.5 * bound / 3**0.5
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_pretrained_init_cfg_loads_backbone_weights(tmp_path):
    src = MDEQ('tiny')
    ckpt = tmp_path / 'cls.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in src.state_dict().items()},
                'meta': {}}, ckpt)
    dst = MDEQ('tiny', init_cfg=dict(type='Pretrained', checkpoint=str(ckpt),
                                     prefix='backbone.'))
    dst.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_bad_configs_name_the_valid_choices():
    with pytest.raises(KeyError, match='presets'):
        MDEQ('medium')
    with pytest.raises(ValueError, match="valid options: \\['num_channels'"):
        MDEQ(dict(base='small', channels=(8, 16)))
    with pytest.raises(ValueError, match="valid options: \\['max_iter'"):
        MDEQ('tiny', solver_cfg=dict(f_thres=3))
    with pytest.raises(ValueError, match='mode'):
        MDEQ('tiny', mode='pretrain')
    arch = MDEQ(dict(base='small', num_channels=(16, 32, 64, 128))).arch
    assert arch['expansion'] == 5 and arch['num_channels'][0] == 16


def test_single_stream_and_two_branch_variants():
    """num_channels of length 1 is the single-stream DEQ."""
    for channels, strides in (((16, ), (4, )), ((16, 32), (4, 8))):
        arch = dict(base='small', num_channels=channels,
                    num_blocks=(1, ) * len(channels))
        model = MDEQ(arch, **FAST).eval()
        assert model.size_divisor == strides[-1]
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 32, 32))
        assert [o.shape for o in outs] == [
            (1, c, 32 // s, 32 // s) for c, s in zip(channels, strides)]
        assert len(model.deq_layer.fuse_layers) == len(channels)


def test_injection_into_every_branch():
    torch.manual_seed(0)
    model = MDEQ('small', inject='all', **FAST).train()
    assert len(model.inject_layers) == 3
    # branch i's projection: i stride-2 convs, C0 -> C_i at the last one
    assert [len([m for m in layer if isinstance(m, torch.nn.Conv2d)])
            for layer in model.inject_layers] == [1, 2, 3]
    seen = []
    model.deq_layer.register_forward_pre_hook(
        lambda m, args: seen.append([x is not None for x in args[1]]))
    outs = model(torch.randn(2, 3, 64, 64))
    assert seen[0] == [True] * 4
    sum(o.sum() for o in outs).backward()
    assert model.inject_layers[2][0].weight.grad.abs().sum() > 0
    reference = MDEQ('small', **FAST)
    assert sum(p.numel() for p in model.parameters()) > sum(
        p.numel() for p in reference.parameters())
    with pytest.raises(ValueError, match='inject'):
        MDEQ('small', inject='lowest')


def test_unrolled_eval_applies_f_depth_times_without_solver():
    model = MDEQ('tiny', mode='unrolled', unrolled_depth=3,
                 unrolled_eval=True).eval()
    calls = []
    model.deq_layer.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    assert len(calls) == 3 and model.last_stats.mode == 'unrolled'
    model.unrolled_eval = False
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    assert model.last_stats.mode == 'solve'


def test_jac_loss_options_are_validated():
    with pytest.raises(ValueError, match=r"\['weight', 'freq', 'n_samples'\]"):
        MDEQ('tiny', jac_loss=dict(weight=1., samples=2))
    with pytest.raises(ValueError, match='needs a weight'):
        MDEQ('tiny', jac_loss=dict(freq=0.5))
    assert MDEQ('tiny', jac_loss=dict(weight=2.)).jac_loss_cfg == dict(
        weight=2., freq=1.0, n_samples=2)


def test_heads_must_take_the_backbone_channels():
    """Every stock head's way of naming its inputs, against MDEQ-Small's
    outputs (32, 64, 128, 256 at strides 4 to 32)."""
    from mdeq_mm.models.backbones.mdeq import check_head_channels

    def model(**heads):
        return dict(backbone=dict(type='MDEQ', arch='small'), **heads)

    good = [
        dict(type='MDEQHead', in_channels=[32, 64, 128, 256]),
        dict(type='FCNHead', in_channels=[32, 64, 128, 256],
             in_index=(0, 1, 2, 3), input_transform='resize_concat'),
        dict(type='PSPHead', in_channels=256, in_index=3),
        dict(type='DepthwiseSeparableASPPHead', in_channels=256, in_index=3,
             c1_in_channels=32),
    ]
    for head in good:
        check_head_channels(model(decode_head=head))
    check_head_channels(model(decode_head=good[1:3],
                              auxiliary_head=dict(in_channels=128,
                                                  in_index=2)))
    bad = [
        (dict(decode_head=dict(in_channels=[18, 36, 72, 144])),
         'decode_head.in_channels=[32, 64, 128, 256]'),
        (dict(decode_head=dict(in_channels=2048, in_index=3)),
         'decode_head.in_channels=256'),
        (dict(decode_head=dict(in_channels=256, in_index=3,
                               c1_in_channels=48)),
         'decode_head.c1_in_channels=32'),
        (dict(decode_head=[good[1], dict(in_channels=512, in_index=3)]),
         'decode_head[1].in_channels=256'),
        (dict(decode_head=good[0], auxiliary_head=dict(in_channels=1024,
                                                       in_index=2)),
         'auxiliary_head.in_channels=128'),
        (dict(decode_head=dict(in_channels=256, in_index=4)),
         'in_index 0 to 3'),
    ]
    for heads, fix in bad:
        with pytest.raises(ValueError, match='32 at stride 4, 64 at stride 8'
                           ) as e:
            check_head_channels(model(**heads))
        assert fix in str(e.value), str(e.value)
    # a neck in between changes the channels: not checked here
    check_head_channels(dict(model(decode_head=bad[0][0]['decode_head']),
                             neck=dict(type='MDEQFuseNeck')))


def test_a_base_configs_backbone_weights_are_rejected():
    with pytest.raises(ValueError, match='model.pretrained=None'):
        MDEQ('tiny', pretrained='open-mmlab://resnet50_v1c')

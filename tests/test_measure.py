# Copyright (c) mdeq_mm authors. All rights reserved.
"""FLOP counts against a count by hand."""
import torch

from mdeq_mm.measure import count_flops
from mdeq_mm.models import MDEQ


def test_one_f_evaluation_of_the_tiny_arch_counts_as_by_hand():
    """MDEQ 'tiny' (2 branches of 24 channels, 1 block each, expansion 5,
    GroupNorm everywhere, no stem downsampling) on a 32x32 input: branch 0
    at 32x32, branch 1 at 16x16. Per block: 3x3 convs c -> 5c -> c and
    GroupNorms on 5c, c, c (6 FLOPs per element: statistics and affine),
    one ReLU module on 5c; fusion: 1x1 conv + GroupNorm up, 3x3 stride-2
    conv + GroupNorm down (both at 16x16); per branch after fusion: ReLU,
    1x1 conv, GroupNorm."""
    c, h = 24, 120
    pixels = (32 * 32, 16 * 16)
    macs = sum(p * (h * c * 9 + c * h * 9) for p in pixels)  # blocks
    macs += pixels[1] * c * c + pixels[1] * c * c * 9  # up and down fusion
    macs += sum(p * c * c for p in pixels)  # post-fusion 1x1 convs
    other = sum(p * (6 * h + h + 6 * c + 6 * c) for p in pixels)
    other += 2 * 6 * pixels[1] * c  # the fusion GroupNorms
    other += sum(p * (c + 6 * c) for p in pixels)  # post ReLU, GroupNorm
    model = MDEQ('tiny', eval_solver_cfg=dict(max_iter=6, tol=0.)).eval()
    r = count_flops(model, torch.randn(1, 3, 32, 32))
    assert r['f_macs'] == macs == 68_567_040
    assert r['f_flops'] == 2 * macs + other
    assert r['f_calls'] == 7  # max_iter 6: 7 evaluations, no early stop
    # the stem: 3x3 convs 3 -> 24 -> 24 at 32x32, each with BatchNorm
    # (evaluation: 4 FLOPs per element) and a ReLU module
    stem_macs = pixels[0] * (24 * 3 * 9 + 24 * 24 * 9)
    stem_other = 2 * pixels[0] * 24 * (4 + 1)
    assert r['outside_flops'] == 2 * stem_macs + stem_other
    assert r['flops'] == r['outside_flops'] + 7 * r['f_flops']
    assert r['params'] == sum(p.numel() for p in model.parameters())
    # twice the input, four times the FLOPs of f
    r2 = count_flops(model, torch.randn(1, 3, 64, 64))
    assert r2['f_flops'] == 4 * r['f_flops']


def test_flops_tool_on_a_config():
    """tools/analysis/get_flops.py: the parts it prints add up to the
    count of a full solve at the config's budget."""
    from mdeq_mm.apis import init_model
    from tests.helpers import run_tool
    config = 'configs/demo/mdeq-demo_seg.py'
    out = run_tool('analysis/get_flops', config, '--shape', '64', '128',
                   '--budgets', '2')
    model = init_model(config)  # its evaluation budget: 9 evaluations
    r = count_flops(model, torch.randn(1, 3, 64, 128))
    assert r['f_calls'] == 9
    assert f"| 9 | {r['flops'] / 1e9:.2f} |" in out
    two = r['outside_flops'] + 2 * r['f_flops']
    assert f'| 2 | {two / 1e9:.2f} |' in out
    assert f"{r['params'] / 1e6:.2f} M parameters" in out


def test_speed_tool_on_a_config(tmp_path):
    """tools/analysis/speed.py: inference at a fixed budget runs exactly
    that many f evaluations; a training step reports the backward solve;
    a model without an MDEQ has no solver figures."""
    import json

    from tests.helpers import run_tool
    config = 'configs/demo/mdeq-demo_seg.py'
    out = run_tool('analysis/speed', config, '--shape', '64', '128',
                   '--repeat', '2', '--budget', '5', '--device', 'cpu',
                   '--out', tmp_path / 'infer.json')
    r = json.load(open(tmp_path / 'infer.json'))
    assert r['kind'] == 'infer' and r['nfev_fwd'] == 5
    assert r['latency_s'] > 0 and r['images_per_s'] == 1 / r['latency_s']
    assert 'f evaluations forward 5.0' in out
    run_tool('analysis/speed', config, '--shape', '64', '128', '--repeat',
             '2', '--train', '--batch', '2', '--device', 'cpu', '--out',
             tmp_path / 'train.json')
    r = json.load(open(tmp_path / 'train.json'))
    assert r['kind'] == 'train' and r['nfev_bwd'] >= 1
    assert r['images_per_s'] == 2 / r['latency_s']
    out = run_tool('analysis/speed', 'configs/speed/hrnet-w18.py',
                   '--shape', '64', '128', '--repeat', '2', '--device',
                   'cpu')
    assert 'images/s' in out and 'f evaluations' not in out


def test_a_jacobian_loss_on_some_steps_is_timed_as_its_expectation():
    """measure() times the training steps with and without the Jacobian
    loss apart and reports (1 - p) t0 + p t1 whatever the draws."""
    from mmengine.registry import DefaultScope

    from mdeq_mm.apis import find_mdeq
    from mdeq_mm.measure import measure_random
    from tests.test_models.test_heads import segmentor
    with DefaultScope.overwrite_default_scope('mmseg'):
        net = segmentor('tiny',
                        jac_loss=dict(weight=0.1, freq=0.3, n_samples=1))
        r = measure_random(net, 'train', (32, 32), 1, 'cpu', repeat=1)
        assert r['jac_freq'] == 0.3
        assert r['s'] == 0.7 * r['s_without_jac'] + 0.3 * r['s_with_jac']
        # the last timed step was a forced one with the loss; the forcing
        # ends with the measurement
        assert find_mdeq(net).last_output.jac_loss is not None
        assert find_mdeq(net)._jac_forced is None
        plain = segmentor('tiny')
        assert 'jac_freq' not in measure_random(plain, 'train', (32, 32), 1,
                                                'cpu', repeat=1)

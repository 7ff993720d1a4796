# Copyright (c) mdeq_mm authors. All rights reserved.
"""The MDEQ backbone: stem, input injection, f_θ and the implicit layer.

Registered as ``MDEQ`` in mmseg's and mmpretrain's MODELS (whichever are
installed). Imports only torch, mmengine and mmcv.cnn.
"""
import copy
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from contextlib import contextmanager
from typing import (Callable, Dict, Iterator, List, Optional, Tuple,
                    Union)

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm

from mdeq_mm.ops import (DEQStats, ImplicitLayer, StatePacker,
                         jacobian_frobenius)
from mdeq_mm.ops.solvers import LEARNED_SOLVERS, LearnedSolver
from mdeq_mm.ops.validation import (check_keys, check_value, is_int,
                                    is_number)
from mdeq_mm.registry import register
from ..layers import MDEQLayer, WeightNormConv2d

# Architectures of the reference configs (locuslab/mdeq's experiments/
# *.yaml: MODEL.EXTRA channels, blocks, expansion, groups, downsampling).
ARCH_SETTINGS: Dict[str, dict] = {
    # CIFAR-10 TINY: two branches, no stem downsampling, no injection conv
    'tiny': dict(
        num_channels=(24, 24),
        num_blocks=(1, 1),
        expansion=5,
        num_groups=8,
        downsample_times=0,
        weight_norm=True),
    # ImageNet / Cityscapes SMALL (and, with downsample_times=0, CIFAR LARGE)
    'small': dict(
        num_channels=(32, 64, 128, 256),
        num_blocks=(1, 1, 1, 1),
        expansion=5,
        num_groups=8,
        downsample_times=2,
        weight_norm=True),
    # Cityscapes LARGE and locuslab/deq ImageNet LARGE
    'large': dict(
        num_channels=(80, 160, 320, 640),
        num_blocks=(1, 1, 1, 1),
        expansion=5,
        num_groups=8,
        downsample_times=2,
        weight_norm=True),
    # ImageNet / Cityscapes XL
    'xl': dict(
        num_channels=(88, 176, 352, 704),
        num_blocks=(1, 1, 1, 1),
        expansion=6,
        num_groups=8,
        downsample_times=2,
        weight_norm=True),
}
ARCH_KEYS = ('num_channels', 'num_blocks', 'expansion', 'num_groups',
             'downsample_times', 'weight_norm')
MODES = ('implicit', 'unrolled')
#: unrolled training iterations under a Runner when neither ``warmup_iters``
#: nor a DEQWarmupHook sets them: out of the random-initialisation regime,
#: where f is not contractive and the implicit backward cannot solve
AUTO_WARMUP_ITERS = 2000
JAC_LOSS_KEYS = ('weight', 'freq', 'n_samples')


def runner_iteration() -> Optional[int]:
    """The training iteration of the mmengine Runner of this process (its
    message hub's ``iter``), None outside a Runner."""
    from mmengine.logging import MessageHub
    return MessageHub.get_current_instance().get_info('iter')


def push_telemetry(output: 'MDEQOutput') -> None:
    """``output``'s statistics as ``train/deq/*`` scalars of the Runner's
    message hub (host syncs)."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_current_instance()
    for key, value in output.summary().items():
        hub.update_scalar(f'train/deq/{key}', value)


# eq=False: hashed by identity (torch.compile hashes the record while
# tracing its construction, before the fields a generated hash reads)
@dataclass(frozen=True, eq=False)
class FixedPointMap:
    """The fixed-point problem of one input: z = f_θ(z; x), with f applied
    by calling the record on a list of per-branch maps.

    Attributes:
        layer (nn.Module): the backbone's weight-tied layer.
        injection (list[Tensor | None]): x's injection per branch (the
            stride-4 one first; None where a branch gets none).
        z0 (list[Tensor]): the initial state of the solve.
        start (str): where ``z0`` came from: 'cold' (zeros), 'warm' (the
            previous forward's state) or 'given'.
    """
    layer: nn.Module
    injection: List[Optional[Tensor]]
    z0: List[Tensor]
    start: str = 'cold'

    def __call__(self, z: List[Tensor]) -> List[Tensor]:
        return self.layer(z, self.injection)

    @property
    def packer(self) -> StatePacker:
        """Packs states into the (B, D) tensors the solvers work on."""
        return StatePacker.like(self.z0)

    def flat(self) -> Callable[[Tensor], Tensor]:
        """f on packed (B, D) states."""
        packer = self.packer
        return lambda z: packer.pack(self(packer.unpack(z)))

    def sample(self, b: int) -> 'FixedPointMap':
        """The problem of sample ``b`` alone (batch 1)."""
        return FixedPointMap(
            self.layer, [t if t is None else t[b:b + 1]
                         for t in self.injection],
            [t[b:b + 1] for t in self.z0], self.start)


@dataclass(frozen=True)
class MDEQOutput:
    """What one MDEQ forward produced besides its maps, built once at the
    end of the forward and kept as the backbone's ``last_output`` until the
    next one. The segmentor / classifier take the regularisers from it
    (``DEQEncoderDecoder``, ``DEQImageClassifier``), the hooks its
    statistics, the next forward its state (a warm start).

    Attributes:
        stats (DEQStats): the implicit (or unrolled) layer's statistics.
        start (str): where the solve started: 'cold' (z = 0), 'warm' (the
            previous forward's ``state``) or 'given' (``z_init``).
        state (list[Tensor]): the detached, padded-size state to start the
            next input from: f(z*) without grad (one step past z*, for
            free), z* otherwise.
        jac_loss (Tensor | None): weight × the Jacobian estimate (a
            differentiable scalar), in the training forwards that drew it.
        jac_frobenius (Tensor | None): (B,) the estimate of
            ‖J_f(z*)‖²_F / D behind ``jac_loss``.
        corrections (tuple): the fixed-point correction states, each cropped
            like the backbone's output (a tuple of maps), earliest first.
        correction_weights (tuple[float]): their loss weights.
    """
    stats: DEQStats
    start: str
    state: List[Tensor]
    jac_loss: Optional[Tensor] = None
    jac_frobenius: Optional[Tensor] = None
    corrections: Tuple[Tuple[Tensor, ...], ...] = ()
    correction_weights: Tuple[float, ...] = ()

    def summary(self) -> Dict[str, float]:
        """Scalars for logging: the layer's, plus the Jacobian estimate
        (host syncs; call after backward)."""
        out = self.stats.summary()
        if self.jac_frobenius is not None:
            out['jac_frobenius'] = self.jac_frobenius.mean().item()
            out['nfev_tracked'] += 1
        return out


def output_strides(arch: dict) -> List[int]:
    """The strides of a resolved arch's outputs: 2^(downsample_times + i)
    for branch i."""
    return [2**(arch['downsample_times'] + i)
            for i in range(len(arch['num_channels']))]


def check_head_channels(model_cfg) -> None:
    """Raise a ValueError naming MDEQ's channels per stride when a
    segmentor config's heads expect other input channels (``in_channels``
    per ``in_index``, DeepLabV3+'s ``c1_in_channels``); a config with a
    neck between them, or without an MDEQ backbone, is not checked."""
    backbone = model_cfg.get('backbone') or {}
    if backbone.get('type') != 'MDEQ' or model_cfg.get('neck'):
        return
    arch = resolve_arch(backbone.get('arch', 'small'))
    channels, strides = list(arch['num_channels']), output_strides(arch)
    outputs = ', '.join(f'{c} at stride {s}'
                        for c, s in zip(channels, strides))
    for name in ('decode_head', 'auxiliary_head'):
        heads = model_cfg.get(name) or []
        for k, head in enumerate(heads if isinstance(heads, list)
                                 else [heads]):
            where = f'{name}[{k}]' if isinstance(heads, list) else name
            given = head.get('in_channels')
            if given is None:
                continue
            # a list of channels without in_index takes every output
            index = head.get('in_index', list(range(len(channels)))
                             if isinstance(given, (list, tuple)) else -1)
            try:
                want = [channels[i] for i in index] if isinstance(
                    index, (list, tuple)) else channels[index]
            except IndexError:
                raise ValueError(
                    f'{where}.in_index={index} selects no output of the '
                    f'MDEQ backbone: it has {len(channels)} ({outputs}), '
                    f'in_index 0 to {len(channels) - 1}') from None
            checks = [('in_channels', list(given) if isinstance(
                given, (list, tuple)) else given, want)]
            if 'c1_in_channels' in head:  # the low-level stride-4 input
                checks.append(('c1_in_channels', head['c1_in_channels'],
                               channels[0]))
            for key, got, expected in checks:
                if got != expected:
                    raise ValueError(
                        f'{where}.{key}={got} does not match the MDEQ '
                        f'backbone ({arch_name(backbone)}): its outputs are '
                        f'{outputs}; with in_index={index} set '
                        f'{where}.{key}={expected}')


def _stock_output_strides(backbone_cfg) -> List[int]:
    """The strides of a stock backbone's outputs: a ResNet-style
    ``strides`` (the stages' own, after the stride-4 stem) multiplied up,
    dilated ones included (ResNet-D8: 4, 8, 8, 8); otherwise (HRNet, MiT,
    Swin, ...) 4, 8, 16, 32."""
    out, s = [], 4
    for step in backbone_cfg.get('strides') or (1, 2, 2, 2):
        s *= step
        out.append(s)
    return out


def swap_backbone(model_cfg, arch: Union[str, dict] = 'small',
                  **backbone) -> dict:
    """The ``model`` of a stock segmentor config with an MDEQ in place of
    its backbone: each head reads the MDEQ output at the stride where it
    read the old backbone's (``in_index`` and ``in_channels``; DeepLabV3+'s
    ``c1_in_channels`` is the stride-4 output), and a head whose
    ``channels`` were the sum of its concatenated inputs (HRNet's FCN)
    keeps that rule. In a config::

        _base_ = ['mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py']
        custom_imports = dict(imports=['mdeq_mm'])
        from mdeq_mm.models.backbones.mdeq import swap_backbone  # noqa
        model = swap_backbone(_base_.model, arch='small')

    The heads are returned whole (a list of heads, as OCRNet's, cannot be
    merged key by key); ``pretrained`` is cleared (it was the old
    backbone's); ``backbone`` keys go to the MDEQ."""
    arch_cfg = resolve_arch(arch)
    channels = list(arch_cfg['num_channels'])
    strides = output_strides(arch_cfg)
    old_strides = _stock_output_strides(model_cfg.get('backbone') or {})

    def at(index):
        stride = old_strides[index]
        if stride not in strides:
            raise ValueError(f'the head reads the old backbone at stride '
                             f'{stride}; the MDEQ has strides {strides}')
        return strides.index(stride)

    def rewire(head):
        head = copy.deepcopy(dict(head))
        given = head.get('in_channels')
        if given is None:
            return head
        many = isinstance(given, (list, tuple))
        index = head.get('in_index', list(range(len(given))) if many else -1)
        if isinstance(index, (list, tuple)):
            new_index = [at(i) for i in index]
            new_channels = [channels[i] for i in new_index]
            if head.get('channels') == sum(given):
                head['channels'] = sum(new_channels)
        else:
            new_index = at(index)
            new_channels = channels[new_index]
        head['in_index'], head['in_channels'] = new_index, new_channels
        if 'c1_in_channels' in head:
            head['c1_in_channels'] = channels[0]
        return head

    out = dict(pretrained=None,
               backbone=dict(_delete_=True, type='MDEQ', arch=arch,
                             **backbone))
    for name in ('decode_head', 'auxiliary_head'):
        heads = model_cfg.get(name)
        if heads:
            out[name] = ([rewire(h) for h in heads]
                         if isinstance(heads, list) else rewire(heads))
    return out


def arch_name(backbone_cfg) -> str:
    arch = backbone_cfg.get('arch', 'small')
    return f"arch '{arch}'" if isinstance(arch, str) else 'a custom arch'


def resolve_arch(arch: Union[str, dict]) -> dict:
    """A preset name, or a dict (a preset's keys, all given or with
    ``base='<preset>'`` to override some of them)."""
    if isinstance(arch, str):
        if arch not in ARCH_SETTINGS:
            raise KeyError(f'unknown MDEQ arch {arch!r}; presets: '
                           f'{sorted(ARCH_SETTINGS)}, or pass a dict with '
                           f'keys {list(ARCH_KEYS)}')
        return dict(ARCH_SETTINGS[arch])
    arch = dict(arch)
    base = arch.pop('base', None)
    check_keys(arch, ARCH_KEYS, 'an MDEQ arch dict', ' (and base=<preset>)')
    out = resolve_arch(base) if base else {}
    out.update(arch)
    missing = sorted(set(ARCH_KEYS) - set(out))
    if missing:
        raise KeyError(f'MDEQ arch dict misses {missing}; give them or a '
                       'base preset')
    if len(out['num_blocks']) != len(out['num_channels']):
        raise ValueError('num_blocks and num_channels need one entry per '
                         f'branch: {out}')
    return out


@register('MODELS')
class MDEQ(BaseModule):
    """Multiscale Deep Equilibrium backbone (Bai, Koltun, Kolter, 2020).

    The output is the fixed point z* = f_θ(z*, x) of the MDEQ layer over
    n branches at strides 2^(d), ..., 2^(d + n − 1) (d stem downsamplings:
    4, 8, 16, 32 for the ImageNet/Cityscapes presets), found by a root
    solver; gradients come from the implicit function theorem (``grad='ift'``)
    or a cheaper strategy. In training the output is the tracked application
    f(z*); in evaluation it is z*. With ``mode='unrolled'`` training applies
    f ``unrolled_depth`` times from z = 0 instead; evaluation always solves.

    Healthy in any config: trained by an mmengine Runner, the backbone
    trains unrolled for its first ``warmup_iters`` iterations (the Runner's
    iteration, so a resume continues the schedule) and pushes the solver
    statistics of every training iteration to the message hub
    (``train/deq/*``, logged by LoggerHook), without any hook;
    :class:`~mdeq_mm.engine.DEQWarmupHook` and
    :class:`~mdeq_mm.engine.DEQTelemetryHook` take these over when a config
    registers them.

    Args:
        arch (str | dict): 'tiny', 'small', 'large', 'xl', or a dict with
            keys num_channels, num_blocks, expansion, num_groups,
            downsample_times, weight_norm (optionally base=<preset>).
        in_channels (int): image channels.
        dropout (float): variational dropout rate inside f_θ.
        norm_cfg (dict): norm of the stem and the injection (BN / SyncBN);
            f_θ itself always uses GroupNorm.
        mode (str): 'implicit' or 'unrolled' (training only).
        warmup_iters (int | None): under a Runner, train unrolled before
            this iteration, implicitly after (0: no warm-up; None:
            ``AUTO_WARMUP_ITERS``, 2000, unless a DEQWarmupHook sets it).
            Outside a Runner ``mode`` alone decides.
        telemetry (bool): under a Runner, push each training iteration's
            solver statistics to the message hub (one host sync per
            iteration; a DEQTelemetryHook replaces this with its own
            interval, totals and warnings).
        unrolled_depth (int): f applications in unrolled mode.
        unrolled_eval (bool): in unrolled mode, also evaluate by applying f
            ``unrolled_depth`` times instead of solving (a plain weight-tied
            network, for ablations); default False: evaluation solves.
        solver (str): forward solver ('broyden', 'anderson', 'fixed_point').
        solver_cfg (dict): forward solver options in training.
        eval_solver_cfg (dict | None): forward solver options in evaluation;
            None uses ``solver_cfg``.
        solver_dtype (str | None): 'float64' runs the solvers' arithmetic in
            float64 (f stays in the model's dtype); see
            :class:`~mdeq_mm.ops.ImplicitLayer`.
        grad (str): 'ift', 'phantom' (k damped steps) or 'unrolled'.
        grad_cfg (dict): options of the gradient strategy (see
            :class:`~mdeq_mm.ops.ImplicitLayer`).
        pad_input (bool): pad inputs whose size is not a multiple of
            2^(downsample_times + n − 1) with zeros (bottom/right) and crop
            the outputs back, like a padded input image (default, so that
            configs written for HRNet, which takes any size, work
            unchanged); False raises a clear error instead.
        frozen (bool): freeze all weights, keep norms in eval mode and skip
            every gradient computation (transfer evaluation).
        post_gn_affine (bool): affine post-fusion GroupNorm (False for the
            Jacobian-regularised locuslab/deq checkpoints).
        inject (str): 'highest' (the reference: the input enters the
            highest-resolution branch only) or 'all' (every branch i > 0
            also gets its own projection of the stem features, downsampled
            by i stride-2 3x3 conv + norm stages).
        fp_correction (dict | None): fixed-point correction (DEQ flow):
            in training, n_states − 1 forward iterates get a tracked damped
            step each (see :class:`~mdeq_mm.ops.ImplicitLayer`'s
            ``correction``), left in ``last_output.corrections`` with
            their loss weights ``correction_weights`` = gamma^(n − i)
            (gamma default 0.8; z* has weight 1); ``DEQEncoderDecoder`` /
            ``DEQImageClassifier`` add the head's losses on each as
            ``fpc<i>.<loss>``. Keys: n_states, tau, gamma. None: off.
        learned_solver (dict | None): a learned forward solver's network
            (:class:`~mdeq_mm.ops.solvers.LearnedSolver`: keys m, hidden,
            lam, beta), which ``solver='neural'`` runs, its initializer
            starting every cold solve. Fitted to a trained model by
            ``tools/train_solver.py``, which writes a config with this set.
            None: none.
        jac_loss (dict | None): Jacobian regularisation (Bai et al., ICML
            2021): in training, with probability ``freq`` per forward,
            ``weight`` × the Hutchinson estimate of ‖J_f(z*)‖²_F / D
            (``n_samples`` probes, on one extra application of f at the
            detached output state; differentiable) is left in
            ``last_output.jac_loss``; ``DEQEncoderDecoder`` /
            ``DEQImageClassifier`` add it to the losses as ``loss_jac``.
            Keys: weight, freq (default 1.0), n_samples (default 2).
            None: off.
        pretrained (str | None): deprecated; use init_cfg.
        init_cfg (dict | None): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 dropout: float = 0.0,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 mode: str = 'implicit',
                 warmup_iters: Optional[int] = None,
                 telemetry: bool = True,
                 unrolled_depth: int = 5,
                 unrolled_eval: bool = False,
                 solver: str = 'broyden',
                 solver_cfg: dict = dict(
                     max_iter=27, tol=1e-3, stop_mode='rel'),
                 eval_solver_cfg: Optional[dict] = None,
                 solver_dtype: Optional[str] = None,
                 grad: str = 'ift',
                 grad_cfg: dict = dict(
                     solver='broyden',
                     solver_cfg=dict(
                         max_iter=30, tol=1e-4, stop_mode='initial')),
                 pad_input: bool = True,
                 frozen: bool = False,
                 post_gn_affine: bool = True,
                 inject: str = 'highest',
                 jac_loss: Optional[dict] = None,
                 fp_correction: Optional[dict] = None,
                 learned_solver: Optional[dict] = None,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if isinstance(pretrained, str) and '://' in pretrained:
            # a base config's model-level pretrained (mmseg passes it to
            # the backbone): weights of another network, to be downloaded
            raise ValueError(
                f'MDEQ got pretrained={pretrained!r}: the weights of the '
                "base config's backbone (e.g. ResNet-50), not of an MDEQ. "
                'Set model.pretrained=None in your config; load MDEQ '
                "weights with backbone.init_cfg=dict(type='Pretrained', "
                "checkpoint=..., prefix='backbone.')")
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('init_cfg and pretrained cannot be set at '
                                 'the same time; use init_cfg')
            warnings.warn('pretrained is deprecated, use init_cfg='
                          "dict(type='Pretrained', checkpoint=...)")
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch = resolve_arch(arch)
        channels = list(self.arch['num_channels'])
        self.num_branches = len(channels)
        self.downsample_times = self.arch['downsample_times']
        self.size_divisor = 2**(self.downsample_times + self.num_branches - 1)
        self.out_channels = channels
        self.pad_input = pad_input
        self.frozen = frozen
        self._build_stem(in_channels, channels[0], norm_cfg)
        self._build_injection(inject, channels, norm_cfg)
        self.deq_layer = MDEQLayer(
            channels,
            self.arch['num_blocks'],
            expansion=self.arch['expansion'],
            groups=self.arch['num_groups'],
            dropout=dropout,
            weight_norm=self.arch['weight_norm'],
            post_gn_affine=post_gn_affine)
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.mode = mode
        check_value('MDEQ warmup_iters', warmup_iters, warmup_iters is None
                    or is_int(warmup_iters, 0), 'None or an int >= 0')
        self.warmup_iters = warmup_iters
        self.telemetry = bool(telemetry)
        self.unrolled_eval = unrolled_eval
        correction = dict(fp_correction or {})
        gamma = correction.pop('gamma', 0.8)
        self.learned_solver = None if learned_solver is None else \
            LearnedSolver(channels[0], channels, **learned_solver)
        self.deq = ImplicitLayer(solver, solver_cfg, eval_solver_cfg, grad,
                                 grad_cfg, solver_dtype,
                                 correction if fp_correction else None,
                                 self.learned_solver)
        self.correction_gamma = gamma
        self.unrolled = ImplicitLayer(
            grad='unrolled', grad_cfg=dict(depth=unrolled_depth))
        # start each forward from the last one's state when the shapes
        # match (a warm start across video frames; see set_warm_start)
        self.warm_start = False
        # what the last forward produced (see MDEQOutput)
        self.last_output: Optional[MDEQOutput] = None
        self.jac_loss_cfg = self._jac_loss_cfg(jac_loss)
        # None: the Jacobian loss on a random ``freq`` fraction of training
        # forwards; True / False: on every one / none (jacobian_loss_on)
        self._jac_forced: Optional[bool] = None
        self._reference_init()
        if frozen:
            self._freeze()

    # ------------------------------------------------------------------
    def _build_stem(self, in_channels: int, c0: int, norm_cfg: dict) -> None:
        """Stem ("downsample" in the reference): two 3x3 convs, stride 2
        each for the first ``downsample_times`` of them, then the injection
        transform (1x1 conv, BN, ReLU; omitted, as in the reference, for
        CIFAR TINY)."""
        self.conv1 = nn.Conv2d(
            in_channels, c0, 3, 2 if self.downsample_times >= 1 else 1, 1,
            bias=False)
        self.bn1 = build_norm_layer(norm_cfg, c0)[1]
        self.conv2 = nn.Conv2d(
            c0, c0, 3, 2 if self.downsample_times >= 2 else 1, 1, bias=False)
        self.bn2 = build_norm_layer(norm_cfg, c0)[1]
        self.relu = nn.ReLU(inplace=True)
        if self.downsample_times == 0 and self.num_branches <= 2:
            self.stage0 = None
        else:
            self.stage0 = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c0, c0, 1, bias=False),
                    bn=build_norm_layer(norm_cfg, c0)[1],
                    relu=nn.ReLU(inplace=True)))

    def _build_injection(self, inject: str, channels: List[int],
                         norm_cfg: dict) -> None:
        """'highest': the input enters the highest resolution only (the
        reference); 'all': strided convs bring it to every scale."""
        if inject not in ('highest', 'all'):
            raise ValueError(f"inject must be 'highest' or 'all', got "
                             f'{inject!r}')
        self.inject = inject
        self.inject_layers = nn.ModuleList()
        if inject == 'highest':
            return
        c0 = channels[0]
        for i, c in enumerate(channels[1:], 1):
            stages = []
            for k in range(i):
                cout = c if k == i - 1 else c0
                stages += [
                    nn.Conv2d(c0, cout, 3, 2, 1, bias=False),
                    build_norm_layer(norm_cfg, cout)[1]
                ]
                if k < i - 1:
                    stages.append(nn.ReLU(inplace=True))
            self.inject_layers.append(nn.Sequential(*stages))

    @staticmethod
    def _jac_loss_cfg(jac_loss: Optional[dict]) -> Optional[dict]:
        """The validated Jacobian-loss options with their defaults."""
        if jac_loss is None:
            return None
        check_keys(jac_loss, JAC_LOSS_KEYS, 'jac_loss')
        if 'weight' not in jac_loss:
            raise ValueError(f'jac_loss needs a weight; got {jac_loss}')
        cfg = dict(dict(freq=1.0, n_samples=2), **jac_loss)
        w, freq = cfg['weight'], cfg['freq']
        check_value('jac_loss weight', w, is_number(w, 0), 'a number >= 0')
        check_value('jac_loss freq', freq, is_number(freq, 0) and freq <= 1,
                    'a number in [0, 1]')
        check_value('jac_loss n_samples', cfg['n_samples'],
                    is_int(cfg['n_samples'], 1), 'an int >= 1')
        return cfg

    def _reference_init(self) -> None:
        """The reference's init: plain convs (stem, injection, fusion)
        ~ N(0, 0.01); weight-normed convs keep PyTorch's default v with
        g = ‖v‖; norms weight 1, bias 0. A learned solver starts unfitted
        (z0 = 0, classical mixing)."""
        learned = set(self.learned_solver.modules()) \
            if self.learned_solver is not None else set()
        for m in self.modules():
            if m in learned:
                continue
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.01)
                if m.bias is not None:
                    nn.init.normal_(m.bias, 0, 0.01)
            elif isinstance(m, (_BatchNorm, nn.GroupNorm)):
                if m.weight is not None:
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        if self.init_cfg is None:
            self._reference_init()
            self._is_init = True
        else:
            super().init_weights()
        if self.frozen:
            self._freeze()

    def _freeze(self) -> None:
        self.eval()
        for p in self.parameters():
            p.requires_grad = False

    def train(self, mode: bool = True) -> 'MDEQ':
        super().train(mode)
        if self.frozen:
            for m in self.modules():
                m.training = False
        return self

    # ------------------------------------------------------------------
    def _prepare_input(self, x: Tensor) -> Tuple[Tensor, Tuple[int, int]]:
        h, w = x.shape[-2:]
        d = self.size_divisor
        if h % d == 0 and w % d == 0:
            return x, (h, w)
        if not self.pad_input:
            raise ValueError(
                f'MDEQ needs input height and width divisible by {d} '
                f'(2^(downsample_times + num_branches - 1)), got {h}x{w}. '
                f'Fix: set size_divisor={d} (or a crop size that is a '
                f'multiple of {d}) in the data_preprocessor, or build the '
                'backbone with pad_input=True.')
        pad_h, pad_w = (-h) % d, (-w) % d
        return F.pad(x, (0, pad_w, 0, pad_h)), (h, w)

    def stem(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(x)))

    def initial_state(self, injection: Tensor) -> List[Tensor]:
        """z^0 = 0 at every scale; scale i has half the size of scale i−1."""
        bsz, _, h, w = injection.shape
        shapes = []
        for c in self.out_channels:
            shapes.append((bsz, c, h, w))
            h, w = h // 2, w // 2
        # float32 (float64 for a float64 model) even when autocast makes the
        # injection half precision: the solver state stays full precision.
        dtype = torch.float64 if injection.dtype == torch.float64 else \
            torch.float32
        return [injection.new_zeros(s, dtype=dtype) for s in shapes]

    def forward(self, x: Tensor,
                z_init: Optional[List[Tensor]] = None) -> Tuple[Tensor, ...]:
        """Args:
            x (Tensor): images (B, in_channels, H, W).
            z_init (list[Tensor] | None): initial state, one map per branch
                of the shapes of :meth:`initial_state` (the input padded to
                a multiple of ``size_divisor``), e.g. the
                ``last_output.state`` of the previous video frame; None
                starts from z = 0, or from that state when ``warm_start``
                is set and its shapes match.

        Returns:
            tuple[Tensor]: n maps, map i of shape (B, C_i, H / s_i, W / s_i)
            with s_i = 2^(downsample_times + i).
        """
        x, (h, w) = self._prepare_input(x)
        if self.frozen:
            with torch.no_grad():
                return self._forward(x, h, w, z_init)
        return self._forward(x, h, w, z_init)

    @property
    def last_stats(self) -> Optional[DEQStats]:
        """The statistics of the last forward (``last_output.stats``)."""
        return self.last_output.stats if self.last_output else None

    def set_warm_start(self, enabled: bool) -> None:
        """Start each forward from the previous one's state (when the
        shapes match) or from z = 0; either way, the next forward starts
        cold (the carried state is dropped)."""
        self.warm_start = bool(enabled)
        self.last_output = None

    def _start(self, inj: Tensor, z_init: Optional[List[Tensor]]
               ) -> Tuple[List[Tensor], str]:
        """The initial state and where it came from: ``z_init`` (checked,
        'given'), the last forward's state ('warm') or zeros ('cold'; the
        learned solver's initializer when the solver is one)."""
        z0 = self.initial_state(inj)
        last = self.last_output
        if z_init is None and self.warm_start and last is not None and \
                [t.shape for t in last.state] == [t.shape for t in z0]:
            return [a.to(b) for a, b in zip(last.state, z0)], 'warm'
        if z_init is None:
            if self.deq.solver in LEARNED_SOLVERS:  # its initializer starts
                with torch.no_grad():  # (fitted by tools/train_solver.py)
                    z0 = self.learned_solver.initial_state(inj, z0)
            return z0, 'cold'
        if len(z_init) != len(z0) or any(
                a.shape != b.shape for a, b in zip(z_init, z0)):
            raise ValueError(
                'z_init must hold one map per branch with the shapes '
                f'{[tuple(t.shape) for t in z0]} (this input, padded to a '
                f'multiple of {self.size_divisor}), got '
                f'{[tuple(t.shape) for t in z_init]}; pass the '
                'last_output.state of a forward on an input of the same size')
        return [a.detach().to(b) for a, b in zip(z_init, z0)], 'given'

    @contextmanager
    def _problem(self, x: Tensor, z_init: Optional[List[Tensor]]
                 ) -> Iterator[FixedPointMap]:
        """The fixed-point problem of padded images ``x``, with the layer's
        normalised weights computed once and its dropout masks kept while
        the block runs (one forward)."""
        feat = self.stem(x)
        inj = self.stage0(feat) if self.stage0 is not None else feat
        injection = [inj] + [layer(inj) for layer in self.inject_layers]
        injection += [None] * (self.num_branches - len(injection))
        z0, start = self._start(inj, z_init)
        self.deq_layer.reset()
        try:
            yield FixedPointMap(self.deq_layer, injection, z0, start)
        finally:
            self.deq_layer.clear()

    @contextmanager
    def jacobian_loss_on(self, on: bool) -> Iterator[None]:
        """Within the block the Jacobian loss (when configured) runs on
        every training forward (``on``) or on none, instead of on a random
        ``freq`` fraction: the two kinds of training step, timed apart,
        give the expected step time exactly (:func:`mdeq_mm.measure.measure`).
        """
        before, self._jac_forced = self._jac_forced, bool(on)
        try:
            yield
        finally:
            self._jac_forced = before

    @contextmanager
    def fixed_point(self, x: Tensor,
                    z_init: Optional[List[Tensor]] = None
                    ) -> Iterator[FixedPointMap]:
        """The fixed-point problem the forward on images ``x`` solves
        (``x`` padded as the forward pads it; ``z_init`` as in
        :meth:`forward`), for solvers, benchmarks and tests outside the
        forward::

            with backbone.fixed_point(x) as f:
                z, stats = solve('anderson', f.flat(), f.packer.pack(f.z0))

        Inside the block the layer's normalised weights are computed once
        and its dropout masks kept (as within one forward)."""
        x, _ = self._prepare_input(x)
        with self._problem(x, z_init) as problem:
            yield problem

    def _forward(self, x: Tensor, h: int, w: int,
                 z_init: Optional[List[Tensor]] = None
                 ) -> Tuple[Tensor, ...]:
        it = runner_iteration() if self.training else None
        with self._problem(x, z_init) as f:
            start, inj = f.start, f.injection[0]
            if self.mode == 'unrolled' and (self.training
                                            or self.unrolled_eval) or \
                    self.training and self.in_warmup(it):
                z, stats = self.unrolled(f, f.z0)
            else:
                z, stats = self.deq(f, f.z0, training=self.training)
            jac = self._jacobian_loss(f, z)
        states = stats.corrections or ()
        n = len(states) + 1
        self.last_output = MDEQOutput(
            stats=stats, start=start,
            # f(z*) when the solve kept it (no grad): one step closer to
            # the fixed point than z*, for free (video: with 1 f evaluation
            # per frame, z_t = f_t(z_t-1) tracks the fixed point instead of
            # standing at z = 0)
            state=[t.detach() for t in stats.next_state or z],
            jac_loss=jac[0] if jac else None,
            jac_frobenius=jac[1] if jac else None,
            corrections=tuple(self._crop(zc, h, w) for zc in states),
            correction_weights=tuple(self.correction_gamma**(n - 1 - i)
                                     for i in range(len(states))))
        if it is not None and self.telemetry:
            output = self.last_output
            if inj.requires_grad:  # after the backward solve reached inj
                inj.register_hook(lambda grad: push_telemetry(output))
            else:
                push_telemetry(output)
        return self._crop(z, h, w)

    def effective_warmup(self) -> int:
        """Unrolled iterations under a Runner: ``warmup_iters``, or
        ``AUTO_WARMUP_ITERS`` when it is None."""
        return AUTO_WARMUP_ITERS if self.warmup_iters is None else \
            self.warmup_iters

    def in_warmup(self, it: Optional[int]) -> bool:
        """Whether training iteration ``it`` of a Runner (None: outside
        one) trains unrolled."""
        return self.mode == 'implicit' and it is not None and \
            it < self.effective_warmup()

    def _crop(self, z: List[Tensor], h: int, w: int) -> Tuple[Tensor, ...]:
        """The maps of the unpadded input (see ``pad_input``)."""
        out = []
        for i, zi in enumerate(z):
            s = 2**(self.downsample_times + i)
            out.append(zi[..., :math.ceil(h / s), :math.ceil(w / s)])
        return tuple(out)

    def _jacobian_loss(self, f, z: List[Tensor]
                       ) -> Optional[Tuple[Tensor, Tensor]]:
        """(weight × ‖J_f(z)‖²_F / D as a batch mean, the per-sample
        estimate), on one extra application of f at the detached state, in
        a ``freq`` fraction of training forwards; None otherwise."""
        cfg = self.jac_loss_cfg
        if (cfg is None or not cfg['weight'] or not self.training
                or self.frozen or not torch.is_grad_enabled()):
            return None
        if not (self._jac_forced if self._jac_forced is not None else
                float(torch.rand(())) < cfg['freq']):
            return None
        packer = StatePacker.like(z)
        flat = packer.pack([t.detach() for t in z]).requires_grad_()
        fz = packer.pack(f(packer.unpack(flat)), flat.dtype)
        estimate = jacobian_frobenius(fz, flat, cfg['n_samples'])
        return cfg['weight'] * estimate.mean(), estimate.detach()

    # ------------------------------------------------------------------
    def extra_repr(self) -> str:
        return (f'arch={self.arch}, mode={self.mode!r}, '
                f'solver={self.deq.solver!r}, grad={self.deq.grad!r}')


__all__ = ['MDEQ', 'MDEQOutput', 'FixedPointMap', 'ARCH_SETTINGS',
           'resolve_arch', 'swap_backbone', 'check_head_channels',
           'WeightNormConv2d']

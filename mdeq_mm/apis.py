# Copyright (c) mdeq_mm authors. All rights reserved.
"""Operations on a built model, in one place.

* :func:`load_config` reads a config the way this stack needs it;
  :func:`config_path` finds the package's own configs (checkout or wheel).
* :func:`init_model` builds a config's model for inference, with a
  checkpoint (mmseg's and mmpretrain's ``init_model``, for both tasks).
* :func:`find_mdeqs` / :func:`find_mdeq` find the MDEQ backbones of a
  model (also inside a DDP wrapper); :func:`data_batch` makes a few
  preprocessed inputs from its config's data.
* :func:`set_solver` changes their solver, budget, tolerance and solver
  dtype through the implicit layer's validated owner of its settings;
  :func:`solver_settings` reads them.
* :func:`segment_sequence` segments consecutive video frames, each solve
  starting from the previous frame's fixed point (a warm start).

**The budget unit is f evaluations**, everywhere in the project: a solver
with ``max_iter=N`` evaluates f at most N + 1 times (f(z0), then once per
iteration), so ``budget=B`` sets ``max_iter=B - 1``
(:func:`mdeq_mm.ops.solvers.max_iter_for` / ``budget_of``, the one
conversion). The solver configs themselves keep ``max_iter``
(iterations), the reference's unit.
"""
import copy
import logging
import os.path as osp
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch
from torch import nn


PACKAGE = osp.dirname(osp.abspath(__file__))
_CHECKOUT = osp.dirname(PACKAGE)
# a checkout's own configs first (an editable install's .mim may hold stale
# copies after a wheel was built in the tree), then the installed ones
CONFIG_DIRS = tuple(
    d for d in (osp.join(_CHECKOUT, 'configs') if osp.isfile(
        osp.join(_CHECKOUT, 'setup.py')) else None,
                osp.join(PACKAGE, '.mim', 'configs')) if d)


def config_path(name: str) -> str:
    """The file of a config named like ``configs/mdeq/<name>.py`` (or
    relative to ``configs/``), from the installed package's
    ``mdeq_mm/.mim/configs/`` (a wheel copies them there, an editable
    install links them, as mmseg and mmpretrain ship theirs) or a
    checkout's ``configs/``.

    Raises:
        FileNotFoundError: neither holds it.
    """
    if osp.isabs(name) and osp.isfile(name):
        return name
    rel = name[len('configs/'):] if name.startswith('configs/') else name
    for folder in CONFIG_DIRS:
        path = osp.join(folder, rel)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'config {name} is not in {" or ".join(CONFIG_DIRS)}; reinstall '
        'mdeq_mm (pip install .) or give the path of a config file')


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None):
    """``Config.fromfile`` plus what a run needs on this stack.

    Merges ``cfg_options`` and imports ``custom_imports`` again after the
    merge (mmengine imports them inside ``Config.fromfile``, before any
    override, so ``custom_imports`` given as an option were never
    imported); sets ``work_dir`` (default ``./work_dirs/<config stem>``
    when the config has none); turns ``persistent_workers`` off for loaders
    without workers (mmengine refuses the combination); checks that the
    heads take MDEQ's channels (a ValueError naming them otherwise).
    """
    import mdeq_mm  # noqa: F401 (registers modules, checkpoint loading)
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        if 'custom_imports' in cfg:
            from mmengine.utils import import_modules_from_strings
            import_modules_from_strings(**cfg['custom_imports'])
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader and loader.get('num_workers', 0) == 0:
            loader['persistent_workers'] = False
    from mdeq_mm.models.backbones.mdeq import check_head_channels
    check_head_channels(cfg.get('model') or {})
    return cfg


def _read_config(config, cfg_options: Optional[dict]):
    """A private copy of ``config``: a file (:func:`load_config`), a host
    package's config (``mmseg::...``, ``mmpretrain::...``) or a loaded
    Config."""
    if not isinstance(config, str):
        return copy.deepcopy(config)
    if '::' in config:
        from mmengine.hub import get_config
        cfg = get_config(config)
        if cfg_options:
            cfg.merge_from_dict(cfg_options)
        return cfg
    return load_config(config, cfg_options)


def init_model(config,
               checkpoint: Optional[str] = None,
               device: str = 'cpu',
               cfg_options: Optional[dict] = None,
               seed: int = 0) -> nn.Module:
    """A config's model for inference, in eval mode on ``device``.

    Args:
        config (str | Config): a file (read by :func:`load_config` with
            ``cfg_options``), a host package's config (``mmseg::...``,
            ``mmpretrain::...``) or a loaded Config (copied, not modified).
        checkpoint (str | None): weights to load; None keeps the
            initialisation seeded by ``seed``. No pretrained weights are
            ever fetched (``pretrained`` / ``init_cfg`` are dropped).
        device (str): where the model goes.
        cfg_options (dict | None): overrides merged into a config file.
        seed (int): seed of the initialisation.

    Returns:
        nn.Module: the model, with SyncBN turned into the BN it computes in
        evaluation, its config as ``model.cfg`` (its ``test_pipeline``
        without label loading) and ``model.dataset_meta``
        (classes, palette: the checkpoint's, else the config's test
        dataset's), like mmseg's / mmpretrain's ``init_model``; the
        config's default scope becomes the current one, so that the host
        package's inference functions (``mmseg.apis.inference_model``) run
        on it.
    """
    from mmengine.logging import MMLogger
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner import load_checkpoint

    from mdeq_mm.registry import build_model, scope_of
    cfg = _read_config(config, cfg_options)
    init_default_scope(scope_of(cfg))
    if 'pretrained' in cfg.model:
        cfg.model.pretrained = None
    cfg.model.pop('init_cfg', None)
    if 'backbone' in cfg.model:
        cfg.model.backbone.pop('init_cfg', None)
    torch.manual_seed(seed)
    # building and initialising log every parameter at INFO: keep warnings
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    ckpt = {}
    try:
        model = build_model(cfg)
        if checkpoint:
            ckpt = load_checkpoint(model, checkpoint, map_location='cpu')
        else:
            model.init_weights()
    finally:
        logger.setLevel(level)
    model = revert_sync_batchnorm(model).eval().to(device)
    if cfg.get('test_pipeline'):  # inference has no label maps to load
        cfg.test_pipeline = [t for t in cfg.test_pipeline
                             if 'Annotations' not in t['type']]
    model.cfg = cfg
    model.dataset_meta = (ckpt.get('meta') or {}).get(
        'dataset_meta') or _dataset_meta(cfg)
    return model


def _dataset_meta(cfg) -> Optional[dict]:
    """The metainfo (classes, palette) of the config's test (else val)
    dataset: its class's METAINFO updated with the config's ``metainfo``;
    None when the config has no such dataset."""
    import importlib

    from mdeq_mm.registry import scope_of
    loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
    dataset = (loader or {}).get('dataset')
    if not dataset or 'type' not in dataset:
        return None
    datasets = importlib.import_module(f'{scope_of(cfg)}.registry').DATASETS
    cls = datasets.get(dataset['type'])
    meta = dict(getattr(cls, 'METAINFO', None) or {})
    meta.update(dataset.get('metainfo') or {})
    return meta or None


def data_batch(model: nn.Module, n: int = 2, split: str = 'val',
               training: bool = False):
    """``n`` preprocessed samples of the first ones of the
    ``<split>_dataloader`` dataset of ``model.cfg`` (a model from
    :func:`init_model`): ``(inputs, data_samples)`` as the model's data
    preprocessor makes them (``training`` selects its training mode)."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mdeq_mm.registry import scope_of
    cfg = model.cfg
    with DefaultScope.overwrite_default_scope(scope_of(cfg)):
        loader = dict(cfg[f'{split}_dataloader'])
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        dataset = Runner.build_dataloader(loader).dataset
        items = [dataset[i] for i in range(min(n, len(dataset)))]
        data = model.data_preprocessor(pseudo_collate(items), training)
    return data['inputs'], data['data_samples']


def find_mdeqs(model: nn.Module) -> List[nn.Module]:
    """Every MDEQ backbone inside ``model`` (an MDEQ itself, a segmentor,
    a classifier, a TTA or DDP wrapper), in module order."""
    from mdeq_mm.models.backbones.mdeq import MDEQ
    return [m for m in model.modules() if isinstance(m, MDEQ)]


def find_mdeq(model: nn.Module) -> nn.Module:
    """The one MDEQ backbone of ``model``.

    Raises:
        TypeError: the model has none (or more than one).
    """
    found = find_mdeqs(model)
    if len(found) != 1:
        what = 'no MDEQ backbone' if not found else \
            f'{len(found)} MDEQ backbones (expected one)'
        raise TypeError(
            f'{type(model).__name__} contains {what}; use '
            "backbone=dict(type='MDEQ', ...), or remove the DEQ hooks from "
            'custom_hooks')
    return found[0]


def set_solver(model: nn.Module,
               solver: Optional[str] = None,
               budget: Optional[int] = None,
               tol: Optional[float] = None,
               dtype: Optional[str] = None,
               phase: str = 'eval',
               options: Optional[dict] = None) -> List[Dict]:
    """Set the solver of every MDEQ in ``model`` through its implicit
    layer's validated owner (:meth:`~mdeq_mm.ops.ImplicitLayer.set_solver`).

    Args:
        solver (str | None): a registered solver; None keeps the current
            one. Options of the current solver config that the new solver
            accepts (e.g. ``stop_mode``, Broyden's ``history``) are kept.
        budget (int | None): f evaluations, >= 1 (``max_iter = budget -
            1``); None keeps the current ``max_iter``.
        tol (float | None): stopping tolerance; 0 runs the whole budget
            (a fixed graph, as ONNX export needs); None keeps it.
        dtype (str | None): the solvers' arithmetic, 'float32' or
            'float64' (f keeps the model's dtype); None keeps it.
        phase (str): the forward solve in 'eval' (``eval_solver_cfg``, the
            default), 'train' (``solver_cfg``) or 'both'; or the
            'backward' solve of the 'ift' gradient.
        options (dict | None): further options of the solver (e.g.
            ``stop_mode``, Broyden's ``history``), merged over the kept
            ones; a budget or tol given above wins.

    Returns:
        list[dict]: per MDEQ, what it solves with now:
        ``dict(solver=..., solver_cfg=..., budget=..., dtype=...)``
        (:func:`solver_settings` of ``phase``, 'eval' for 'both').

    Raises:
        ValueError: an unknown solver, option or phase, a budget below 1,
            a combination the gradient cannot use (SHINE after a
            non-Broyden forward solve) or a model without an MDEQ.
    """
    backbones = find_mdeqs(model)
    if not backbones:
        raise ValueError(f'{type(model).__name__} has no MDEQ backbone '
                         'whose solver could be set')
    keep = {} if dtype is None else dict(dtype=dtype)
    return [m.deq.set_solver(phase, solver, budget, tol, options, **keep)
            for m in backbones]


def solver_settings(mdeq: nn.Module, phase: str = 'eval') -> Dict:
    """What an MDEQ's solve runs with in ``phase`` ('eval', 'train' or
    'backward'): ``dict(solver, solver_cfg, budget, dtype)`` with the
    budget in f evaluations (``max_iter + 1``, the solver's default
    ``max_iter`` when the config sets none)."""
    return mdeq.deq.settings(phase)


def test_at_budgets(runner, budgets: Sequence[int]) -> List[Dict]:
    """Run ``runner``'s test loop (its real metric) once per forward budget
    in ``budgets`` (f evaluations, the whole budget: ``tol=0``) of its
    MDEQ; one row per budget: ``budget``, ``metric`` (mIoU or top-1),
    ``value`` and the solve's mean final relative residual."""
    backbone = find_mdeq(runner.model)
    rows = []
    for budget in budgets:
        set_solver(backbone, budget=budget, tol=0.,
                   options=dict(stop_mode='rel'))
        metrics = runner.test()
        key = next(k for k in ('mIoU', 'accuracy/top1') if k in metrics)
        residual = backbone.last_stats.forward.rel_lowest.mean().item()
        rows.append(dict(budget=budget, metric=key,
                         value=float(metrics[key]), rel_residual=residual))
    return rows


def budget_curve(config: str, checkpoint: str, budgets: Sequence[int],
                 png: str, work_dir: str,
                 cfg_options: Optional[dict] = None) -> List[Dict]:
    """:func:`test_at_budgets` for a config and checkpoint (its own test
    Runner in ``work_dir``), saved as JSON + a PNG of the metric against
    the budget."""
    from mmengine.runner import Runner

    from mdeq_mm.report import plot_panels, save_results
    cfg = load_config(config, cfg_options, work_dir)
    cfg.load_from = checkpoint
    rows = test_at_budgets(Runner.from_cfg(cfg), budgets)
    save_results(rows, png, lambda rows, path: plot_panels(path, [dict(
        lines=[('', [r['budget'] for r in rows], [r['value'] for r in rows],
                'o-')], xlabel='forward f evaluations at test time',
        ylabel=rows[0]['metric'], xscale='log2', legend=False)],
        size=(5, 4)))
    return rows


def summarize_run(name: str, config: str, work_dir: str) -> Dict:
    """A trained run of ``config`` in ``work_dir``
    (:func:`mdeq_mm.engine.run_summary`) with the config's parameter
    count, the inference time per validation image and the forward solve's
    evaluations and residual in the last validation."""
    from mdeq_mm.engine import run_summary
    run = run_summary(work_dir, name)
    val = run['val']
    cfg = load_config(config)
    params = sum(p.numel() for p in init_model(cfg).parameters())
    return dict(name=name, config=config, mIoU=run['mIoU'], params=params,
                s_per_iter=run['s_per_iter'], peak_mem_mb=run['peak_mem_mb'],
                infer_s_per_image=val.get('time', float('nan')) /
                cfg.val_dataloader.batch_size,
                nfev=val.get('deq/fwd_nfev') or val.get('deq/nfev_tracked'),
                rel_residual=val.get('deq/fwd_rel_residual'))


def _frame_pipeline(cfg):
    """The config's test pipeline for unlabelled frames: its image loader
    (a file, or an array for ``LoadImageFromNDArray``), no annotations."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    steps = []
    for t in cfg.test_pipeline:
        if 'Annotations' in t['type']:
            continue
        steps.append(dict(t))
    with DefaultScope.overwrite_default_scope('mmseg'):
        return Compose(steps), Compose(
            [dict(type='LoadImageFromNDArray')] +
            [t for t in steps if 'LoadImage' not in t['type']])


class VideoSegmenter:
    """Segment a video one frame per call, each forward solve starting
    from the previous frame's fixed point (a warm start), as a stream: the
    result of a frame is there before the next one is read.

    The stream starts cold on its first frame, after a size change (the
    state no longer fits) and after a scene cut: a frame whose 32x32
    grayscale thumbnail differs from the previous one's by more than
    ``cut_threshold`` (mean absolute difference, intensities in [0, 1]:
    consecutive frames of one shot differ by a few hundredths, a cut
    between two smooth scenes of the same mean brightness by 0.25; a
    false cut costs one cold start, a missed one a poor start). The
    model's own warm-start setting is restored by :meth:`close` (or at the
    end of a ``with`` block).

    Args:
        model: a segmentor from :func:`init_model` (``model.cfg`` holds its
            config; the test pipeline's annotation loaders are skipped).
        warm_start (bool): False solves every frame from z = 0.
        cut_threshold (float | None): scene-cut threshold; None: never.

    Calling it on a frame (an image file or a BGR uint8 array) returns a
    dict: ``pred`` (H, W) int64 train ids at the frame's size, ``nfev``
    (f evaluations of the forward solve), ``residual`` (its relative
    residual), ``warm`` (whether it started warm), ``cut`` (a detected
    scene cut) and ``seconds`` (the model's time on the frame).
    """

    def __init__(self, model: nn.Module, warm_start: bool = True,
                 cut_threshold: Optional[float] = 0.15):
        test_cfg = getattr(model, 'test_cfg', None) or {}
        if warm_start and test_cfg.get('mode', 'whole') != 'whole':
            raise ValueError(
                'warm starts need whole-image inference, the model\'s '
                f"test_cfg has mode={test_cfg['mode']!r} (each crop would "
                "start from another crop's state); set "
                "model.test_cfg.mode='whole'")
        self.model, self.mdeq = model, find_mdeq(model)
        self.warm_start, self.cut_threshold = warm_start, cut_threshold
        self.from_file, self.from_array = _frame_pipeline(model.cfg)
        self._saved = self.mdeq.warm_start
        self._thumb = None
        self.mdeq.set_warm_start(warm_start)

    def reset(self) -> None:
        """Start the next frame cold."""
        self.mdeq.set_warm_start(self.warm_start)
        self._thumb = None

    def _is_cut(self, image: torch.Tensor) -> bool:
        import torch.nn.functional as F
        gray = image.float().mean(0, keepdim=True)[None] / 255
        thumb = F.adaptive_avg_pool2d(gray, 32)
        previous, self._thumb = self._thumb, thumb
        return self.cut_threshold is not None and previous is not None \
            and float((thumb - previous).abs().mean()) > self.cut_threshold

    def __call__(self, frame) -> Dict:
        import time

        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmseg'):
            data = self.from_file(dict(img_path=frame)) if isinstance(
                frame, str) else self.from_array(dict(img=frame))
        cut = self._is_cut(data['inputs'])
        if cut:
            self.mdeq.set_warm_start(self.warm_start)  # drop the state
        data = dict(inputs=[data['inputs']],
                    data_samples=[data['data_samples']])
        start = time.perf_counter()
        with DefaultScope.overwrite_default_scope('mmseg'), torch.no_grad():
            result = self.model.test_step(data)[0]
        pred = result.pred_sem_seg.data[0].cpu().numpy()  # (a host sync)
        seconds = time.perf_counter() - start
        record = self.mdeq.last_output
        stats = record.stats.forward
        return dict(pred=pred, nfev=int(stats.nfev[0]),
                    residual=float(stats.rel_lowest[0]),
                    warm=record.start == 'warm', cut=cut, seconds=seconds)

    def close(self) -> None:
        """Restore the model's own warm-start setting."""
        self.mdeq.set_warm_start(self._saved)

    def __enter__(self) -> 'VideoSegmenter':
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def segment_sequence(model: nn.Module,
                     frames: Iterable[Union[str, Any]],
                     warm_start: bool = True) -> List[Dict]:
    """Segment consecutive frames of one video (one shot: no scene-cut
    detection) with a segmentor whose backbone is an MDEQ, through a
    :class:`VideoSegmenter`.

    With ``warm_start`` each frame's forward solve starts from the previous
    frame's fixed point instead of z = 0 (the same model and solver
    options: with a tolerance, a close start stops the solve earlier; with
    a fixed budget it reaches a lower residual). Frames of different sizes
    start cold. The model's own state is restored afterwards.

    Args:
        model: a segmentor built by :func:`init_model`.
        frames: image files or BGR uint8 arrays, in time order.
        warm_start (bool): False solves every frame from z = 0.

    Returns:
        list[dict]: per frame what :class:`VideoSegmenter` returns.
    """
    with VideoSegmenter(model, warm_start, cut_threshold=None) as segment:
        return [segment(frame) for frame in frames]

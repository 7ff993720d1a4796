# Copyright (c) mdeq_mm authors. All rights reserved.
"""Train and test runs as ``tools/train.py`` and ``tools/test.py`` make
them, for any script that wants the same safety net.

* :func:`load_run_config` reads a config for a run (launcher set, CPU
  multi-process runs prepared);
* :func:`prepare_train` / :func:`prepare_test` apply a run's options:
  resume (``'auto'`` or a path), AMP, no validation, the fault tolerance,
  checkpoints that must fit the model, outputs, visualisation, TTA;
* :func:`build_runner` builds the Runner, a config error as one line;
* :func:`run_train` / :func:`run_test` run it: a signal ends the process with
  128 + its number after the checkpoint is saved, divergence and a user's
  error (a dataset, a checkpoint that does not fit) end it with one line,
  any other failure saves where the run stopped before it is re-raised.

Every user error leaves as ``SystemExit('error: ...')`` (or ``'Dataset
error: ...'``): one line, no traceback.
"""
import sys
from typing import Callable, Optional


def user_error_exit(exc: BaseException, data_only: bool = False):
    """The SystemExit (one line, no traceback) for a user's error, or None
    (re-raise it): a checkpoint that does not fit the model as ``error:
    ...``; a dataset error (also one a DataLoader worker raised) as
    ``Dataset error: ...``; with ``data_only=False`` any other
    ``FileNotFoundError`` / ``ValueError`` as ``error: ...`` (the
    config-preparation phase, where those are user errors)."""
    from mdeq_mm.datasets import data_error_message
    from .checkpoint import CheckpointMismatch, CheckpointSaveError
    if isinstance(exc, CheckpointMismatch):
        return SystemExit(f'error: {exc}')
    if isinstance(exc, CheckpointSaveError):
        return SystemExit(f'error: {exc.strerror}')
    msg = data_error_message(exc)
    if msg is not None:
        return SystemExit(f'Dataset error: {msg}')
    if data_only or not isinstance(exc, (FileNotFoundError, ValueError)):
        return None
    return SystemExit(f'error: {exc}')


def load_run_config(config: str,
                    cfg_options: Optional[dict] = None,
                    work_dir: Optional[str] = None,
                    launcher: str = 'none'):
    """:func:`mdeq_mm.apis.load_config` with the launcher set, and CPU
    multi-process runs prepared (:mod:`mdeq_mm.engine.cpu_dist`)."""
    from mdeq_mm.apis import load_config
    from .cpu_dist import setup_cpu_distributed
    cfg = load_config(config, cfg_options, work_dir)
    cfg.launcher = launcher
    setup_cpu_distributed(cfg)
    return cfg


def _warn(msg: str) -> None:
    print(f'warning: {msg}', file=sys.stderr)


def check_loadable(path: str) -> None:
    """End with one line when ``path`` is not a readable checkpoint
    (missing, empty, truncated: :func:`checkpoint_problem`)."""
    from .checkpoint import checkpoint_problem
    problem = checkpoint_problem(path)
    if problem:
        raise SystemExit(f'error: cannot load {path}: {problem}')


def prepare_train(cfg, resume: Optional[str] = None, amp: bool = False,
                  validate: bool = True, max_bad_steps: int = 5,
                  partial_load: bool = False):
    """Apply a training run's options to ``cfg`` (in place; returned).

    ``resume``: ``'auto'`` (the latest checkpoint of the work dir; none
    starts from iteration 0) or a checkpoint path. A resume with another
    model, batch, schedule or optimiser than the checkpoint's run warns
    with each difference and the command that continues that run. ``amp``
    needs CUDA. ``max_bad_steps`` non-finite steps in a row stop the run
    (:func:`enable_fault_tolerance`); a checkpoint that does not fit the
    model stops it unless ``partial_load``."""
    import os.path as osp

    from mdeq_mm.datasets import check_datasets
    from .checkpoint import (config_drift, require_fitting_checkpoints,
                             resume_checkpoint)
    from .resilience import enable_fault_tolerance
    if amp:
        import torch
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device (mmengine\'s '
                             'AmpOptimWrapper); drop --amp on CPU')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if resume == 'auto':
        cfg.resume = True
        cfg.load_from = resume_checkpoint(cfg.work_dir, warn=_warn)
        if cfg.load_from is None:
            print(f'no checkpoint to resume in {cfg.work_dir}: training '
                  'starts from iteration 0', file=sys.stderr)
            cfg.resume = False
    elif resume is not None:
        cfg.resume, cfg.load_from = True, resume
    if resume != 'auto' and cfg.get('load_from'):
        # (resume_checkpoint has checked the checkpoint it chose)
        check_loadable(cfg.load_from)
    enable_fault_tolerance(cfg, max_bad_steps)
    require_fitting_checkpoints(cfg, partial=partial_load)
    if cfg.get('resume') and cfg.get('load_from'):
        drift = config_drift(cfg, cfg.load_from)
        if drift:
            dumped = osp.join(cfg.work_dir, osp.basename(cfg.filename or ''))
            _warn(f'resuming {cfg.load_from} with another config than the '
                  'one it was trained with:\n  ' + '\n  '.join(drift) +
                  '\n  To continue that run unchanged: python tools/train.py '
                  f'{dumped} --work-dir {cfg.work_dir} --resume auto')
    if not validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    check_datasets(cfg, ['train_dataloader'] +
                   (['val_dataloader'] if validate else []))
    return cfg


def prepare_test(cfg, checkpoint: str, out: Optional[str] = None,
                 show: bool = False, show_dir: Optional[str] = None,
                 wait_time: float = 2, tta: bool = False,
                 partial_load: bool = False):
    """Apply a test run's options to ``cfg`` (in place; returned): the
    checkpoint (it must fit the model unless ``partial_load``), ``out``
    (segmentation: a folder of prediction PNGs; classification: a pickle
    of the predictions), the visualisation and test-time augmentation."""
    from mdeq_mm.datasets import check_datasets
    from .checkpoint import require_fitting_checkpoints
    require_fitting_checkpoints(cfg, partial=partial_load)
    check_loadable(checkpoint)
    cfg.load_from = checkpoint
    seg = cfg.get('default_scope', 'mmseg') == 'mmseg'
    if show or show_dir:
        vis = cfg.default_hooks.visualization
        vis.show, vis.wait_time = show, wait_time
        if seg:
            vis.draw = True
            if show_dir:
                cfg.visualizer.save_dir = show_dir
        else:
            vis.enable, vis.out_dir = True, show_dir
    if out and seg:
        cfg.test_evaluator['output_dir'] = out
        cfg.test_evaluator['keep_results'] = True
    elif out:
        evaluators = cfg.test_evaluator
        cfg.test_evaluator = list([evaluators] if isinstance(
            evaluators, dict) else evaluators) + [
                dict(type='DumpResults', out_file_path=out)]
    if tta:
        apply_tta(cfg)
    check_datasets(cfg, ['test_dataloader'])
    return cfg


def apply_tta(cfg) -> None:
    """Test-time augmentation, both tasks: segmentation uses the config's
    ``tta_pipeline`` / ``tta_model`` (mmseg's bases define multi-scale +
    flip); classification, mmpretrain's AverageClsScoreTTA over a
    horizontal flip of the last test transform (as mmpretrain's test.py),
    unless the config defines its own."""
    if cfg.get('default_scope', 'mmseg') == 'mmseg':
        if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
            raise SystemExit(
                '--tta: the config defines no tta_pipeline / tta_model; '
                "inherit mmseg's dataset and runtime bases (as "
                'configs/mdeq/*cityscapes*.py do) or define them')
    else:
        cfg.setdefault('tta_model', dict(type='mmpretrain.AverageClsScoreTTA'))
        if 'tta_pipeline' not in cfg:
            pipeline = cfg.test_dataloader.dataset.pipeline
            flips = [dict(type='RandomFlip', prob=1.),
                     dict(type='RandomFlip', prob=0.)]
            cfg.tta_pipeline = list(pipeline[:-1]) + [dict(
                type='TestTimeAug', transforms=[flips, [pipeline[-1]]])]
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def build_runner(cfg):
    """The Runner of ``cfg``. A config error met while building it (a bad
    option value, an unknown type, a misspelt argument: mmengine re-raises
    them naming the class) ends the process with one line."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    try:
        return (Runner.from_cfg(cfg) if 'runner_type' not in cfg else
                RUNNERS.build(cfg))
    except (ValueError, KeyError) as e:
        raise SystemExit(f'error: in the config: {e}') from None
    except TypeError as e:
        if 'argument' not in str(e):
            raise
        raise SystemExit(f'error: in the config: {e}') from None


def runner_for(prepare: Callable[[], object]):
    """``prepare()`` (the config; a user's error in it as one line), then
    its Runner (:func:`build_runner`)."""
    try:
        cfg = prepare()
    except (FileNotFoundError, ValueError) as e:
        raise user_error_exit(e) from None
    return build_runner(cfg)


def close_distributed(runner) -> None:
    """Tear down the process group a launcher opened, once the run has
    finished on every rank. Left to interpreter exit, gloo's threads can be
    destroyed un-joined and abort a finished run with SIGABRT ('terminate
    called without an active exception'). The runner's model is released
    first: a DDP wrapper's reducer keeps the group alive past
    ``destroy_process_group``."""
    import gc

    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        runner.model = None
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def _collective_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a distributed collective that timed out."""
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        'timed out' in text or 'timeout' in text) and (
            'gloo' in text or 'nccl' in text or 'recv' in text
            or 'collective' in text or 'watchdog' in text)


def run_train(runner) -> None:
    """``runner.train()`` with the tools' endings: a signal (checkpoint
    saved) exits with 128 + its number; divergence (the last finite
    weights saved) with one line; a run that dies otherwise (out of
    memory, a bad file, an error in a hook) first saves where it stopped,
    then leaves as one line when it is a user's error or a collective
    timeout, re-raised otherwise."""
    from .checkpoint import CheckpointSaveError
    from .resilience import (TrainingDiverged, TrainingInterrupted,
                             made_progress, resume_command, save_interrupted)
    try:
        runner.train()
    except TrainingInterrupted as e:
        close_distributed(runner)
        print(f'\n{e}', file=sys.stderr)
        sys.exit(128 + e.signum)
    except TrainingDiverged as e:
        close_distributed(runner)
        raise SystemExit(f'error: {e}')
    except BaseException as e:
        # (a save that failed for want of space would fail again)
        if made_progress(runner) and runner.rank == 0 and not isinstance(
                e, CheckpointSaveError):
            path = save_interrupted(runner)
            runner.logger.error(
                f'training failed in iteration {runner.iter + 1}; saved '
                f'{path}: the weights after iteration {runner.iter}, '
                'counted as after the failed one (a resume skips its '
                f'batch). Resume with: {resume_command(runner, path)}')
        exit_ = user_error_exit(e, data_only=True)
        if exit_ is not None:
            raise exit_ from None
        if _collective_timeout(e):
            raise SystemExit(
                f'error: rank {runner.rank}: a collective operation timed '
                'out waiting for another rank, which stopped answering '
                f'(hung, stopped or killed): {str(e).splitlines()[0][:200]}'
                '. Its own log names why; the checkpoints are intact: '
                'restart with --resume auto') from None
        raise
    close_distributed(runner)


def run_test(runner) -> dict:
    """``runner.test()``'s metrics; a dataset error (also one a DataLoader
    worker raised) as one line."""
    try:
        metrics = runner.test()
    except (FileNotFoundError, ValueError) as e:
        exit_ = user_error_exit(e, data_only=True)
        if exit_ is None:
            raise
        raise exit_ from None
    close_distributed(runner)
    return metrics

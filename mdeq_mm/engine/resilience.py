# Copyright (c) mdeq_mm authors. All rights reserved.
"""A training run never loses progress: signals, divergence, saves.

* :class:`GracefulStopHook`: SIGTERM (slurm preemption and time limits,
  ``timeout``, ``docker stop``, Kubernetes), SIGUSR1 (slurm's
  ``--signal``) and SIGINT (Ctrl-C; a second one stops at once) end
  training after the current iteration: every rank agrees on the stop
  (one all-reduce per iteration), rank 0 saves ``iter_<n>_interrupted.pth``
  atomically, points ``last_checkpoint`` at it (``--resume auto`` continues
  from exactly that iteration) and :class:`TrainingInterrupted` is raised.
* :class:`FiniteOptimWrapper`: a non-finite loss or gradient norm skips the
  optimiser step (nothing is written into the weights; all ranks skip
  together) and is counted.
* :class:`DivergenceGuardHook`: after ``max_consecutive`` skipped steps in a
  row, saves the (finite) weights as an interrupted checkpoint and raises
  :class:`TrainingDiverged` naming the iteration, the last good checkpoint,
  the solver's state and the usual fixes.

:func:`enable_fault_tolerance` turns all of it on in a config (what
``tools/train.py`` does).
"""
import collections
import math
import os
import os.path as osp
import signal
import threading
from typing import Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper
from mmengine.runner import EpochBasedTrainLoop

from mdeq_mm.ops.validation import is_int, is_number
from mdeq_mm.registry import register
from .checkpoint import ATOMIC_BACKEND, write_last_checkpoint

DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1', 'SIGINT')


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, message: str, signum: int = 0,
                 checkpoint: Optional[str] = None):
        super().__init__(message)
        self.signum, self.checkpoint = signum, checkpoint


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite steps; the weights were saved."""

    def __init__(self, message: str, checkpoint: Optional[str] = None):
        super().__init__(message)
        self.checkpoint = checkpoint


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _any_rank(flag: float, device) -> float:
    """The maximum of ``flag`` over all ranks (``flag`` itself when not
    distributed)."""
    if not _distributed():
        return flag
    t = torch.tensor([flag], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def _device(runner):
    if _distributed() and dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def resume_command(runner, path: str) -> str:
    """The command that continues this run exactly: tools/train.py on the
    config the Runner dumped into the work dir (the command line's
    ``--cfg-options``, ``--amp``, ... are in it), resuming from the newest
    checkpoint."""
    dumped = osp.join(runner.work_dir, osp.basename(runner.cfg.filename)) \
        if runner.cfg.filename else None
    if dumped is None or not osp.isfile(dumped):
        return f'tools/train.py CONFIG --resume {path}'
    return (f'python tools/train.py {dumped} --work-dir {runner.work_dir} '
            '--resume auto')


def made_progress(runner) -> bool:
    """Whether this process trained at least one iteration (after loading
    or resuming): only then is a failed run's state worth saving (a run
    that fails while loading, e.g. a resume whose optimiser state does not
    fit, must not write checkpoints)."""
    hook = next((h for h in runner.hooks if isinstance(h, GracefulStopHook)),
                None)
    return hook is not None and hook.start_iter is not None and \
        runner.iter > hook.start_iter


def save_interrupted(runner) -> str:
    """Save the state after the current (finished) iteration as
    ``iter_<n>_interrupted.pth`` (model, optimiser, schedulers, message
    hub), atomically, and point ``last_checkpoint`` at it (rank 0); returns
    its path. Needs no collective, so it can be called on rank 0 alone;
    ``runs.close_distributed`` makes the other ranks wait for it."""
    n = runner.iter + 1
    name = f'iter_{n}_interrupted.pth'
    path = osp.join(runner.work_dir, name)
    # by_epoch=False records iter = runner.iter + 1: the finished iteration
    runner.save_checkpoint(runner.work_dir, name, save_optimizer=True,
                           save_param_scheduler=True, by_epoch=False,
                           backend_args=dict(ATOMIC_BACKEND))
    if runner.rank == 0:
        write_last_checkpoint(runner.work_dir, path)
    if isinstance(runner.train_loop, EpochBasedTrainLoop):
        runner.logger.warning(
            'an epoch-based run resumes from the start of the interrupted '
            'epoch (mmengine restarts epochs whole)')
    return path


@register('HOOKS', root=True)
class GracefulStopHook(Hook):
    """Stop training cleanly on a signal, after the current iteration.

    Also keeps torch's global random state (CPU and CUDA: dropout masks,
    the Jacobian loss's sampling) in every checkpoint and restores it on
    resume, so that a resumed run continues exactly like an uninterrupted
    one. (numpy's and Python's states are not restored: mmengine replays
    the data pipeline up to the resumed iteration, which draws them again.)

    Args:
        signals (Sequence[str]): signal names to handle. SIGINT is left
            alone when the process started with it ignored (background
            jobs of non-interactive shells); a second SIGINT raises
            KeyboardInterrupt at once.
    """
    priority = 'LOWEST'  # after CheckpointHook and LoggerHook

    def __init__(self, signals: Sequence[str] = DEFAULT_SIGNALS):
        bad = [s for s in signals if not isinstance(getattr(
            signal, str(s), None), signal.Signals)]
        if bad:
            raise ValueError(f'GracefulStopHook signals: unknown {bad}; use '
                             "names like 'SIGTERM', 'SIGUSR1', 'SIGINT'")
        self.signals = [getattr(signal, s) for s in signals]
        self.requested = 0
        self._previous = {}
        self._pid = os.getpid()
        self.start_iter: Optional[int] = None  # where this process began

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            # a process forked during training (a data loader or pool
            # worker) inherited this handler: the signal does there what
            # it did before the run (by default, end the process)
            previous = self._previous.get(signum)
            if previous is None:  # (a handler not set from Python)
                previous = signal.SIG_DFL
            signal.signal(signum, previous)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
            return
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signum

    def before_train(self, runner) -> None:
        self.start_iter = runner.iter
        self._pid = os.getpid()
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('GracefulStopHook: not in the main thread; '
                                  'signals are not handled')
            return
        for signum in self.signals:
            current = signal.getsignal(signum)
            if signum == signal.SIGINT and current == signal.SIG_IGN:
                continue
            self._previous[signum] = current
            signal.signal(signum, self._handle)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        signum = int(_any_rank(float(self.requested), _device(runner)))
        if not signum:
            return
        path = save_interrupted(runner)
        name = signal.Signals(signum).name
        cmd = resume_command(runner, path)
        msg = (f'{name}: training stopped after iteration {runner.iter + 1}'
               f'; saved {path}. Resume with: {cmd}')
        runner.logger.warning(msg)
        self._restore()  # (mmengine calls no hook after an exception)
        raise TrainingInterrupted(msg, signum, path)

    def after_train(self, runner) -> None:
        self._restore()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        rng = dict(torch=torch.get_rng_state())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint['rng_state'] = rng

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        rng = checkpoint.get('rng_state')
        if not rng or not runner._resume:
            return  # load_from / Pretrained weights: start a fresh stream
        torch.set_rng_state(rng['torch'])
        if 'cuda' in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng['cuda'])

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


@register('OPTIM_WRAPPERS', hosts=(), root=True)
class FiniteOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that skips the optimiser step when the loss or the
    gradient norm is not finite, on every rank together, and counts it.

    Attributes:
        skipped (int): skipped steps so far.
        consecutive (int): skipped steps since the last finite one.
        last_reason (str): why the last step was skipped.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.skipped = self.consecutive = 0
        self.last_reason = ''

    def _skip(self, reason: str, zero_kwargs) -> None:
        self.skipped += 1
        self.consecutive += 1
        self.last_reason = reason
        self.zero_grad(**(zero_kwargs or {}))

    def _grad_norm(self) -> torch.Tensor:
        grads = [p.grad.detach() for group in self.optimizer.param_groups
                 for p in group['params'] if p.grad is not None]
        if not grads:
            return torch.zeros(())
        return torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))

    def update_params(self, loss: torch.Tensor, step_kwargs=None,
                      zero_kwargs=None) -> None:
        device = loss.device
        finite = bool(torch.isfinite(loss.detach()).all())
        if _any_rank(0.0 if finite else 1.0, device):
            # no backward either: under DDP one rank's backward alone would
            # wait for the others forever
            return self._skip(f'non-finite loss ({loss.item():.4g})',
                              zero_kwargs)
        self.backward(self.scale_loss(loss))
        if not self.should_update():
            return
        norm = self._grad_norm()  # DDP has averaged the gradients already
        if not bool(torch.isfinite(norm)):
            return self._skip('non-finite gradient norm', zero_kwargs)
        self.step(**(step_kwargs or {}))
        self.zero_grad(**(zero_kwargs or {}))
        self.consecutive = 0


@register('HOOKS', root=True)
class DivergenceGuardHook(Hook):
    """Log skipped (non-finite) steps; after ``max_consecutive`` in a row,
    save the last healthy weights and stop with :class:`TrainingDiverged`.

    The model's buffers (BatchNorm running statistics, which a forward
    pass through non-finite activations poisons) are restored to their
    values before a skipped step, so a skipped step changes nothing.

    What a divergence saves: when the last finite step was healthy (its
    loss at most ``healthy_factor`` times the median of the recent healthy
    losses), the current weights, which the skipped steps left unchanged,
    with the optimiser (resumable). A run that explodes over a few finite
    steps first leaves finite but useless weights; so every
    ``snapshot_interval`` iterations the weights are copied (to the CPU)
    before the step and kept when that step is healthy, and such a run
    saves those (without the optimiser state, whose moments exploded with
    the weights).

    Needs ``optim_wrapper=dict(type='FiniteOptimWrapper', ...)``.

    Args:
        max_consecutive (int): skipped steps in a row that stop training.
        snapshot_interval (int): iterations between weight snapshots.
        healthy_factor (float): a loss above this multiple of the median
            of the last 20 healthy losses is not healthy (its square
            while fewer than 5 are known).
    """
    priority = 'LOW'  # after the telemetry, before GracefulStopHook

    def __init__(self, max_consecutive: int = 5, snapshot_interval: int = 10,
                 healthy_factor: float = 10.):
        if not is_int(max_consecutive, 1) or not is_int(
                snapshot_interval, 1) or not is_number(healthy_factor) or \
                not healthy_factor > 1:
            raise ValueError(
                'DivergenceGuardHook needs max_consecutive >= 1, '
                'snapshot_interval >= 1 and healthy_factor > 1, got '
                f'{max_consecutive}, {snapshot_interval}, {healthy_factor}')
        self.max_consecutive = max_consecutive
        self.snapshot_interval = snapshot_interval
        self.healthy_factor = healthy_factor
        self._seen = 0
        self._buffers = []
        self._pending = None  # (iteration, weights) before this step
        self.healthy = None  # (iteration, weights) of the last healthy one
        self._losses = collections.deque(maxlen=20)  # recent healthy
        self._last_finite_healthy = True

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def _is_healthy(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return False
        recent = sorted(self._losses)
        # the median of fewer than 5 losses is a rough estimate (a batch's
        # loss can vary several-fold): the factor is squared until then
        factor = self.healthy_factor ** (1 if len(recent) >= 5 else 2)
        ok = not recent or loss <= factor * max(
            recent[len(recent) // 2], 1e-12)
        if ok:
            self._losses.append(loss)
        return ok

    def before_train(self, runner) -> None:
        if not isinstance(runner.optim_wrapper, FiniteOptimWrapper):
            raise TypeError(
                'DivergenceGuardHook needs optim_wrapper=dict(type='
                f"'FiniteOptimWrapper', ...), got "
                f'{type(runner.optim_wrapper).__name__}')

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        model = self._model(runner)
        self._buffers = [(b, b.detach().clone()) for b in model.buffers()]
        self._pending = None
        if runner.iter % self.snapshot_interval == 0:
            self._pending = (runner.iter, {
                k: v.detach().to('cpu', copy=True)
                for k, v in model.state_dict().items()})

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        ow = runner.optim_wrapper
        runner.message_hub.update_scalar('train/skipped_steps',
                                         float(ow.skipped))
        loss = (outputs or {}).get('loss')
        loss = float(loss) if loss is not None else float('nan')
        if ow.skipped == self._seen:
            self._last_finite_healthy = self._is_healthy(loss)
            if self._last_finite_healthy and self._pending is not None:
                self.healthy = self._pending
            self._pending = None
            return
        self._seen = ow.skipped
        with torch.no_grad():
            for buf, saved in self._buffers:
                buf.copy_(saved)
        it = runner.iter + 1
        runner.logger.warning(
            f'iteration {it}: optimiser step skipped, {ow.last_reason} '
            f'({ow.consecutive} in a row, {ow.skipped} in all); the weights '
            'are unchanged')
        if ow.consecutive < self.max_consecutive:
            return
        last_good = runner.message_hub.get_info('last_ckpt', None)
        path, what = self._save_healthy(runner)
        msg = (f'training diverged: {ow.consecutive} consecutive '
               f'non-finite steps up to iteration {it} ({ow.last_reason}). '
               f'{_solver_state(runner)}{what} are in {path}; the last '
               f'regular checkpoint is {last_good or "none"}. Usual fixes: '
               'a longer unrolled warm-up (DEQWarmupHook), a larger solver '
               'budget, a Jacobian loss (backbone jac_loss=dict(weight=...))'
               ', a lower learning rate or gradient clipping '
               '(optim_wrapper.clip_grad).')
        runner.logger.error(msg)
        raise TrainingDiverged(msg, path)

    def _save_healthy(self, runner):
        """Save the last healthy weights (else the current ones, with the
        optimiser); return the path and what it holds."""
        if self._last_finite_healthy or self.healthy is None:
            return save_interrupted(runner), 'The last finite weights'
        step, weights = self.healthy
        self._model(runner).load_state_dict(weights)
        name = f'iter_{step}_healthy.pth'
        runner.save_checkpoint(runner.work_dir, name, save_optimizer=False,
                               save_param_scheduler=False, by_epoch=False,
                               backend_args=dict(ATOMIC_BACKEND))
        return (osp.join(runner.work_dir, name),
                'The last healthy weights (before iteration '
                f'{step + 1}, whose loss was finite and not exploding; no '
                'optimiser state: start a new run from them with load_from)')


def _solver_state(runner) -> str:
    """The MDEQ forward solve's last state, for the divergence message."""
    from mdeq_mm.apis import find_mdeq
    try:
        stats = find_mdeq(runner.model).last_stats
    except TypeError:
        return ''
    if stats is None or stats.forward is None:
        return ''
    reasons = stats.forward.reasons
    bad = {r: reasons.count(r) for r in ('diverged', 'non-finite')
           if reasons.count(r)}
    rel = float(stats.forward.rel_lowest.mean())
    text = ', '.join(f'{n} {r}' for r, n in bad.items()) or 'none diverged'
    return (f'The last forward solve: relative residual {rel:.3g}, '
            f'{text} of {len(reasons)} samples. ')


def enable_fault_tolerance(cfg, max_consecutive: int = 5) -> None:
    """Switch a training config to atomic checkpoints, the divergence guard
    and graceful stops on signals (in place; what tools/train.py does).

    ``CheckpointHook`` becomes :class:`AtomicCheckpointHook`, a plain
    ``OptimWrapper`` becomes :class:`FiniteOptimWrapper` (AMP's wrapper
    already skips non-finite steps through its loss scaler), and
    :class:`GracefulStopHook` / :class:`DivergenceGuardHook` are added to
    ``custom_hooks`` unless present.
    """
    ckpt = (cfg.get('default_hooks') or {}).get('checkpoint')
    if ckpt is not None and ckpt.get('type') in ('CheckpointHook', None):
        ckpt['type'] = 'AtomicCheckpointHook'
    hooks = list(cfg.get('custom_hooks') or [])
    have = {h.get('type') for h in hooks}
    ow = cfg.get('optim_wrapper')
    if ow is not None and ow.get('type', 'OptimWrapper') in (
            'OptimWrapper', 'FiniteOptimWrapper'):
        ow['type'] = 'FiniteOptimWrapper'
        if 'DivergenceGuardHook' not in have:
            hooks.append(dict(type='DivergenceGuardHook',
                              max_consecutive=max_consecutive))
    if 'GracefulStopHook' not in have:
        hooks.append(dict(type='GracefulStopHook'))
    cfg.custom_hooks = hooks

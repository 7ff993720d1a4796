# Copyright (c) mdeq_mm authors. All rights reserved.
"""Checkpoints: loading them on torch >= 2.6, writing them so that they
survive kills, and finding the newest readable one of a work dir.

**Loading.** torch 2.6 made ``torch.load`` default to
``weights_only=True``. mmengine 0.10.7 calls ``torch.load`` without that
argument, so resuming a run, ``load_from`` and
``init_cfg=dict(type='Pretrained', ...)`` fail on a full Runner checkpoint:
its ``message_hub`` pickles mmengine's ``HistoryBuffer`` and numpy arrays
and scalars.

The choice made here: importing :mod:`mdeq_mm` (which every config does
through ``custom_imports``, and the project's tools do) adds exactly those
classes to torch's safe globals, plus a ``getattr`` stand-in that only
resolves HistoryBuffer's statistics methods (the one ``getattr`` mmengine
pickles). ``weights_only`` stays on — nothing arbitrary gets unpickled —
and every mmengine code path that loads a checkpoint works without
patching mmengine. Published checkpoints (:func:`publish_checkpoint`) hold
only ``state_dict`` and ``meta`` and load without any of this.

**Writing.** mmengine 0.10.7 writes a checkpoint in place
(``open(path, 'wb')``), and its ``CheckpointHook`` deletes the oldest kept
checkpoint *before* writing the new one: a process killed during a save
can leave a truncated newest file and no older one. Here a checkpoint is
written to a temporary file in the same folder, flushed to disk, and
renamed over the target (atomic on POSIX); ``last_checkpoint`` is replaced
the same way, after the rename; old checkpoints are pruned only after the
new one exists.
"""
import errno
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import List, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook

from mdeq_mm.registry import register


def _history_buffer_getattr(obj, name):
    """``getattr`` restricted to HistoryBuffer's statistics methods.

    A pickled HistoryBuffer stores its ``statistics_methods`` as
    ``getattr(HistoryBuffer, 'mean')`` and so on; plain ``getattr`` must not
    be allow-listed (it reaches anything), this stand-in allows only that.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    if (obj is HistoryBuffer and not name.startswith('_')
            and callable(vars(HistoryBuffer).get(name))):
        return getattr(obj, name)
    import pickle
    raise pickle.UnpicklingError(
        f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint '
        'with weights_only=True')


def _safe_globals() -> list:
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = {type(np.dtype(c)) for c in np.typecodes['All']}
    return [
        HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype,
        (_history_buffer_getattr, 'builtins.getattr'),
        *sorted(dtypes, key=str)
    ]


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint contents for ``weights_only`` loads.

    A no-op on torch < 2.5 (no ``add_safe_globals`` with aliases) and
    idempotent.
    """
    add = getattr(torch.serialization, 'add_safe_globals', None)
    if add is not None:
        try:
            add(_safe_globals())
        except TypeError:  # torch 2.4: no (object, name) aliases
            pass


def publish_checkpoint(src: str, dst: Optional[str] = None) -> str:
    """Keep only ``state_dict`` and ``meta`` of a Runner checkpoint.

    Args:
        src (str): checkpoint written by mmengine's CheckpointHook.
        dst (str | None): output path; default ``<src stem>_published.pth``.

    Returns:
        str: the output path. The file loads with ``weights_only=True`` and
        no allow-listing.
    """
    allow_mmengine_checkpoints()
    ckpt = torch.load(src, map_location='cpu', weights_only=True)
    if 'state_dict' not in ckpt:
        raise KeyError(f'{src} has no state_dict (keys: {sorted(ckpt)}); '
                       'is it an mmengine checkpoint?')
    meta = {
        k: v
        for k, v in ckpt.get('meta', {}).items()
        if isinstance(v, (str, int, float, bool, type(None)))
    }
    dst = dst or osp.splitext(src)[0] + '_published.pth'
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save(dict(state_dict=ckpt['state_dict'], meta=meta), dst)
    return dst


ATOMIC_BACKEND = dict(backend='atomic_local')


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (e.g. a full disk); the files
    written before are intact."""


def atomic_write(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never partial.

    Raises:
        CheckpointSaveError: no space left for it (the message names the
            size, the folder and the fix; ``path``'s old content stays).
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        _atomic_write(data, path, folder)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CheckpointSaveError(
            e.errno, f'no space left in {folder} to write '
            f'{osp.basename(path)} ({len(data) / 2**20:.0f} MB; an atomic '
            'save needs room for it beside the files it replaces); the '
            'checkpoints written before are intact. Free space, lower '
            'default_hooks.checkpoint.max_keep_ckpts or use another '
            '--work-dir, then continue with --resume auto') from None


def _atomic_write(data: bytes, path: str, folder: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.',
                               suffix='.tmp', dir=folder)
    try:
        # the mode a plain open() would give (mkstemp's is 0600)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # persist the rename itself
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put``; select it with
    ``backend_args=dict(backend='atomic_local')``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath))

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj.encode(encoding), str(filepath))


def remove_stale_temporaries(folder: str) -> List[str]:
    """Remove the temporary files of :func:`atomic_write` that a killed
    save left in ``folder`` (``.<name>.<random>.tmp``); returns them. Call
    it before this process saves anything there."""
    stale = glob.glob(osp.join(folder, '.*.tmp'))
    for path in stale:
        os.remove(path)
    return stale


def write_last_checkpoint(work_dir: str, path: str) -> None:
    """Point ``work_dir/last_checkpoint`` (what ``--resume auto`` reads)
    at ``path``, atomically."""
    atomic_write(path.encode(), osp.join(work_dir, 'last_checkpoint'))


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a readable torch checkpoint, or None.

    Checks what a truncated or foreign file fails without loading it: the
    zip container of ``torch.save`` (its central directory sits at the end
    of the file, and every member's CRC is verified). Legacy non-zip
    pickles pass when they start like a pickle.
    """
    if not osp.isfile(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return 'the file is empty'
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            head = f.read(2)
        if head[:1] == b'\x80':  # a legacy torch / pickle file
            return None
        return ('not a torch checkpoint (no zip container: truncated by a '
                'kill during the save, or another kind of file)')
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        return f'a damaged checkpoint ({e})'
    if bad is not None:
        return f'a damaged checkpoint (member {bad} fails its CRC check)'
    return None


def _step(path: str) -> int:
    m = re.search(r'(?:iter|epoch)_(\d+)', osp.basename(path))
    return int(m.group(1)) if m else -1


def work_dir_checkpoints(work_dir: str) -> List[str]:
    """Checkpoints in ``work_dir``, newest (highest iteration or epoch,
    then modification time) first."""
    files = [p for p in glob.glob(osp.join(work_dir, '*.pth'))
             if not osp.basename(p).startswith('.')]
    return sorted(files, key=lambda p: (_step(p), osp.getmtime(p)),
                  reverse=True)


def resume_checkpoint(work_dir: str, warn=None) -> Optional[str]:
    """The checkpoint ``--resume auto`` should continue from: the one
    ``last_checkpoint`` names if it is readable, else the newest readable
    checkpoint in ``work_dir`` (``warn`` is called with the reason);
    None when there is none."""
    named = None
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip() or None
    candidates = ([named] if named else []) + [
        p for p in work_dir_checkpoints(work_dir)
        if not named or osp.abspath(p) != osp.abspath(named)
    ]
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        if warn is not None:
            warn(f'cannot resume from {path}: {problem}; trying an older '
                 'checkpoint')
    return None


@register('HOOKS', root=True)
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that writes atomically, then prunes old
    checkpoints (mmengine prunes first), and replaces ``last_checkpoint``
    atomically after the new checkpoint exists. Takes CheckpointHook's
    arguments; a local ``out_dir`` uses the atomic backend."""

    def __init__(self, *args, **kwargs):
        if kwargs.get('backend_args') is None and not str(
                kwargs.get('out_dir') or '').startswith(('s3:', 'http')):
            kwargs['backend_args'] = dict(ATOMIC_BACKEND)
        super().__init__(*args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and osp.isdir(runner.work_dir):
            for path in remove_stale_temporaries(runner.work_dir):
                runner.logger.info(f'removed {path}, left by a killed save')

    def _save_checkpoint_with_step(self, runner, step, meta):
        keep, prune = self.max_keep_ckpts, None
        if keep > 0 and (not self.keep_ckpt_ids
                         or self.keep_ckpt_ids[-1] != step):
            if len(self.keep_ckpt_ids) == keep:  # (a deque of maxlen keep)
                prune = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        self.max_keep_ckpts = -1  # the parent would prune before saving
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        finally:
            self.max_keep_ckpts = keep
        if not is_main_process():
            return
        write_last_checkpoint(runner.work_dir, self.last_ckpt)
        if prune is not None:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(prune))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
        if keep > 0 and osp.isdir(self.out_dir):
            # interrupted checkpoints count in the same window: those
            # older than the newest ``keep`` checkpoints go
            for path in work_dir_checkpoints(self.out_dir)[keep:]:
                if osp.basename(path).endswith('_interrupted.pth'):
                    os.remove(path)


class CheckpointMismatch(ValueError):
    """A checkpoint whose weights do not fit the model (the message names
    the first missing, unexpected and mis-shaped keys and the fix)."""


def _loaded_module(model):
    """The module mmengine's ``load_state_dict`` loads into: the model
    without its DDP / TTA wrappers."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def _held_state(checkpoint):
    """What a loaded checkpoint file holds as its state dict: its
    ``state_dict`` entry, or the file itself."""
    return checkpoint.get('state_dict', checkpoint) \
        if isinstance(checkpoint, dict) else checkpoint


def model_state(checkpoint: dict) -> Optional[dict]:
    """The state dict of a loaded checkpoint file (a dict with
    ``state_dict``, or a state dict) as mmengine loads it into a model: a
    DDP checkpoint's ``module.`` prefix stripped; None when the file holds
    no dict."""
    state = _held_state(checkpoint)
    if not isinstance(state, dict):
        return None
    return {re.sub(r'^module\.', '', k): v for k, v in state.items()}


def checkpoint_mismatch(model, checkpoint: dict) -> Optional[dict]:
    """How ``checkpoint`` (a loaded file: a dict with ``state_dict``, or a
    state dict) does not fit ``model`` as mmengine would load it (the
    ``module.`` prefix of a DDP checkpoint stripped, BatchNorm's
    ``num_batches_tracked`` ignored): ``dict(missing, unexpected,
    mis_shaped)`` lists of keys (mis-shaped as ``key: checkpoint shape vs
    model shape``), or None when it fits."""
    state = model_state(checkpoint)
    if state is None:
        held = type(_held_state(checkpoint)).__name__
        return dict(missing=['<everything>'], unexpected=[],
                    mis_shaped=[f'the file holds a {held}, not a state '
                                'dict'])
    own = {k: v for k, v in _loaded_module(model).state_dict().items()
           if not k.endswith('num_batches_tracked')}
    given = {k for k in state if not k.endswith('num_batches_tracked')}
    out = dict(
        missing=sorted(set(own) - given),
        unexpected=sorted(given - set(own)),
        mis_shaped=[
            f'{k}: {tuple(getattr(state[k], "shape", ()))} vs '
            f'{tuple(own[k].shape)}' for k in sorted(given & set(own))
            if tuple(getattr(state[k], 'shape', ())) != tuple(own[k].shape)
        ])
    return out if any(out.values()) else None


def describe_mismatch(problems: dict, path: str = 'the checkpoint',
                      show: int = 3) -> str:
    """One line: the counts and first keys of each kind of mismatch."""
    parts = []
    for kind in ('missing', 'unexpected', 'mis_shaped'):
        keys = problems[kind]
        if keys:
            more = f' (+{len(keys) - show} more)' if len(keys) > show else ''
            parts.append(f"{len(keys)} {kind.replace('_', '-')} "
                         f"({', '.join(keys[:show])}{more})")
    return f"{path} does not fit the model: {'; '.join(parts)}"


@register('HOOKS', root=True)
class CheckpointFitHook(Hook):
    """Stop when the checkpoint the Runner loads (``load_from``, a resume,
    tools/test.py's CHECKPOINT) does not fit the model, before any weight
    is loaded or any checkpoint written; with ``strict=False`` load it
    partially and log a summary instead (mmengine alone logs a line per key
    and goes on with random weights where they did not fit).

    ``init_cfg=dict(type='Pretrained', ...)`` (e.g. a backbone-only
    transfer) does not go through the Runner's loading and is not checked.

    Args:
        strict (bool): raise :class:`CheckpointMismatch` on a mismatch.
    """
    priority = 'VERY_HIGH'

    def __init__(self, strict: bool = True):
        self.strict = strict

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        problems = checkpoint_mismatch(runner.model, checkpoint)
        if problems is None:
            return
        path = runner._load_from or 'the checkpoint'
        msg = describe_mismatch(problems, path)
        if self.strict:
            raise CheckpointMismatch(
                f'{msg}. Fix: use the checkpoint of this config (or of a '
                'config with the same model), or load it partially on '
                'purpose with --partial-load (keys that do not fit keep '
                'their initialisation).')
        runner.logger.warning(f'partial load: {msg}; those weights keep '
                              'their initialisation')


# what a resumed run must share with the run that saved the checkpoint
RESUME_KEYS = ('model', 'train_dataloader.batch_size', 'train_cfg',
               'optim_wrapper.optimizer', 'param_scheduler')


def config_drift(cfg, path: str) -> List[str]:
    """How ``cfg`` differs from the config saved in checkpoint ``path``
    (mmengine keeps it in ``meta['cfg']``) in what a resume must keep
    (``RESUME_KEYS``): one ``key: checkpoint ..., now ...`` line each;
    empty when they agree or the checkpoint holds no config."""
    from mmengine.config import Config
    try:
        meta = torch.load(path, map_location='cpu', mmap=True,
                          weights_only=True).get('meta') or {}
        old = Config.fromstring(meta['cfg'], '.py')
    except Exception:  # no config saved (or not readable): nothing to say
        return []

    def get(c, key):
        for part in key.split('.'):
            c = c.get(part) if hasattr(c, 'get') else None
        return c.to_dict() if hasattr(c, 'to_dict') else c

    out = []
    for key in RESUME_KEYS:
        a, b = get(old, key), get(cfg, key)
        if a != b:
            text = [str(v) for v in (a, b)]
            text = [t if len(t) < 120 else t[:117] + '...' for t in text]
            out.append(f'{key}: checkpoint {text[0]}, now {text[1]}')
    return out


def require_fitting_checkpoints(cfg, partial: bool = False) -> None:
    """Add :class:`CheckpointFitHook` to a config's ``custom_hooks`` (in
    place; what tools/train.py and tools/test.py do)."""
    hooks = [h for h in cfg.get('custom_hooks') or []
             if h.get('type') != 'CheckpointFitHook']
    cfg.custom_hooks = hooks + [dict(type='CheckpointFitHook',
                                     strict=not partial)]

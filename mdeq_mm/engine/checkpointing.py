# Copyright (c) mdeq_mm authors. All rights reserved.
"""Checkpoints that survive kills: atomic writes, the save-then-prune
order, and finding the newest readable checkpoint of a work dir.

mmengine 0.10.7 writes a checkpoint in place (``open(path, 'wb')``), and
its ``CheckpointHook`` deletes the oldest kept checkpoint *before* writing
the new one: a process killed during a save can leave a truncated newest
file and no older one. Here a checkpoint is written to a temporary file in
the same folder, flushed to disk, and renamed over the target (atomic on
POSIX); ``last_checkpoint`` is replaced the same way, after the rename;
old checkpoints are pruned only after the new one exists.
"""
import glob
import os
import os.path as osp
import re
import tempfile
import zipfile
from typing import List, Optional

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook

from mdeq_mm.registry import register

ATOMIC_BACKEND = dict(backend='atomic_local')


def atomic_write(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` so that ``path`` is never partial."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.',
                               suffix='.tmp', dir=folder)
    try:
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


register(AtomicCheckpointHook, 'HOOKS', root=True)

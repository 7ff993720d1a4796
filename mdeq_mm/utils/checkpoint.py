# Copyright (c) mdeq_mm authors. All rights reserved.
"""Loading mmengine checkpoints under torch >= 2.6 (``weights_only=True``).

torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine
0.10.7 calls ``torch.load`` without that argument, so resuming a run,
``load_from`` and ``init_cfg=dict(type='Pretrained', ...)`` fail on a full
Runner checkpoint: its ``message_hub`` pickles mmengine's ``HistoryBuffer``
and numpy arrays and scalars.

The choice made here: importing :mod:`mdeq_mm` (which every config does
through ``custom_imports``, and the project's tools do) adds exactly those
classes to torch's safe globals, plus a ``getattr`` stand-in that only
resolves HistoryBuffer's statistics methods (the one ``getattr`` mmengine
pickles). ``weights_only`` stays on — nothing
arbitrary gets unpickled — and every mmengine code path that loads a
checkpoint works without patching mmengine. Published checkpoints
(:func:`publish_checkpoint`) hold only ``state_dict`` and ``meta`` and load
without any of this.
"""
import os
import os.path as osp
from typing import Optional

import torch


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

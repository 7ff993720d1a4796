# Copyright (c) mdeq_mm authors. All rights reserved.
"""Reading a config the way this stack needs it."""
import os.path as osp
from typing import Optional


def load_config(path: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None):
    """``Config.fromfile`` plus what a run needs on this stack.

    Merges ``cfg_options`` and imports ``custom_imports`` again after the
    merge (mmengine imports them inside ``Config.fromfile``, before any
    override, so ``custom_imports`` given as an option were never
    imported); sets ``work_dir`` (default ``./work_dirs/<config stem>``
    when the config has none); turns ``persistent_workers`` off for loaders
    without workers (mmengine refuses the combination).
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
    return cfg

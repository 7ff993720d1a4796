# Copyright (c) mdeq_mm authors. All rights reserved.
"""Where the package's configs are: the installed package's
``mdeq_mm/.mim/configs/`` (a wheel copies them there, an editable install
links them, as mmseg and mmpretrain ship theirs) or a checkout's
``configs/``."""
import os.path as osp

PACKAGE = osp.dirname(osp.dirname(osp.abspath(__file__)))
_CHECKOUT = osp.dirname(PACKAGE)
# a checkout's own configs first (an editable install's .mim may hold stale
# copies after a wheel was built in the tree), then the installed ones
CONFIG_DIRS = tuple(
    d for d in (osp.join(_CHECKOUT, 'configs') if osp.isfile(
        osp.join(_CHECKOUT, 'setup.py')) else None,
                osp.join(PACKAGE, '.mim', 'configs')) if d)


def config_path(name: str) -> str:
    """The file of a config named like ``configs/mdeq/<name>.py`` (or
    relative to ``configs/``), from the installed package or the checkout.

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

# Copyright (c) mdeq_mm authors. All rights reserved.
"""Convert an original MDEQ checkpoint to an mdeq_mm mmseg checkpoint.

Usage:
    python tools/model_converters/mdeq2mmseg.py SRC DST [--no-verify]
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mdeq_mm.converters.__main__ import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main('seg'))

# Copyright (c) mdeq_mm authors. All rights reserved.
"""Convert an original MDEQ checkpoint to an mdeq_mm mmpretrain checkpoint.

Usage:
    python tools/model_converters/mdeq2mmpretrain.py SRC DST [--no-verify]
"""
import sys

from mdeq_mm.converters.__main__ import main

if __name__ == '__main__':
    sys.exit(main('cls'))

# Copyright (c) mdeq_mm authors. All rights reserved.
"""``python -m mdeq_mm.converters {cls,seg} SRC DST [--no-verify]``: the
original MDEQ checkpoints → mdeq_mm, from an installed package."""
import sys

from .cli import main

if __name__ == '__main__':
    if len(sys.argv) < 2 or sys.argv[1] not in ('cls', 'seg'):
        sys.exit('usage: python -m mdeq_mm.converters {cls,seg} SRC DST '
                 '[--no-verify]')
    sys.exit(main(sys.argv[1], sys.argv[2:]))

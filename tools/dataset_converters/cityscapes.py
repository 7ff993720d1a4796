# Copyright (c) mdeq_mm authors. All rights reserved.
"""Write ``*_gtFine_labelTrainIds.png`` next to every
``*_gtFine_labelIds.png`` of an official Cityscapes download (34 label ids →
19 train ids, everything else 255), and split lists ``{train,val}.txt``.

Usage:
    python tools/dataset_converters/cityscapes.py data/cityscapes [--nproc 4]
"""
import argparse
import sys

from mdeq_mm.datasets.cityscapes_labels import convert_cityscapes


def progress(done, total):
    if done % 500 == 0 or done == total:
        print(f'{done}/{total} label maps converted', flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='folder holding leftImg8bit/, gtFine/')
    parser.add_argument('--nproc', type=int, default=1)
    args = parser.parse_args(argv)
    try:
        convert_cityscapes(args.root, args.nproc, progress)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()

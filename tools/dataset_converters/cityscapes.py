# Copyright (c) mdeq_mm authors. All rights reserved.
"""Write ``*_gtFine_labelTrainIds.png`` next to every
``*_gtFine_labelIds.png`` of an official Cityscapes download (34 label ids →
19 train ids, everything else 255), and split lists ``{train,val}.txt``.

Usage:
    python tools/dataset_converters/cityscapes.py data/cityscapes [--nproc 4]
"""
import argparse
import glob
import os.path as osp
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))
from mdeq_mm.datasets.cityscapes_labels import \
    label_ids_to_train_ids  # noqa: E402


def convert(path: str) -> str:
    out = path.replace('_gtFine_labelIds.png', '_gtFine_labelTrainIds.png')
    ids = np.asarray(Image.open(path))
    Image.fromarray(label_ids_to_train_ids(ids)).save(out)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='folder holding leftImg8bit/, gtFine/')
    parser.add_argument('--nproc', type=int, default=1)
    args = parser.parse_args()
    gt = osp.join(args.root, 'gtFine')
    files = sorted(glob.glob(osp.join(gt, '**', '*_gtFine_labelIds.png'),
                             recursive=True))
    if not files:
        sys.exit(f'no *_gtFine_labelIds.png under {gt}: unpack '
                 'gtFine_trainvaltest.zip into ' + args.root)
    with Pool(args.nproc) as pool:
        for i, _ in enumerate(pool.imap_unordered(convert, files), 1):
            if i % 500 == 0 or i == len(files):
                print(f'{i}/{len(files)} label maps converted', flush=True)
    for split in ('train', 'val', 'test'):
        names = sorted(
            osp.relpath(p, osp.join(args.root, 'leftImg8bit', split))
            [:-len('_leftImg8bit.png')] for p in glob.glob(
                osp.join(args.root, 'leftImg8bit', split, '*',
                         '*_leftImg8bit.png')))
        if names:
            with open(osp.join(args.root, f'{split}.txt'), 'w') as f:
                f.write('\n'.join(names) + '\n')


if __name__ == '__main__':
    main()

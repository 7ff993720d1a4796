# Copyright (c) mdeq_mm authors. All rights reserved.
"""``python -m mdeq_mm.converters {cls,seg} SRC DST [--no-verify]``: the
original MDEQ checkpoints → mdeq_mm, from a checkout or an installed
package. The package's only command line; the conversion itself is
:mod:`mdeq_mm.converters.locuslab`. ``tools/model_converters/*.py`` call
:func:`main`."""
import argparse
import os
import os.path as osp
import sys
from typing import List, Optional

import torch

from .locuslab import (ConversionError, build_target, check_against_model,
                       convert)
NAMES = dict(cls='mmpretrain ImageClassifier', seg='mmseg EncoderDecoder')


def main(task: str, argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=f'Convert an original MDEQ {task} checkpoint '
        f'(locuslab/mdeq or locuslab/deq) to an mdeq_mm {NAMES[task]} '
        'checkpoint holding only state_dict and meta.')
    parser.add_argument('src', help='original checkpoint (.pkl / .pth)')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument(
        '--no-verify', action='store_true',
        help='do not build the matching mdeq_mm model to check every key')
    args = parser.parse_args(argv)
    try:
        result = convert(args.src, task)
    except (ConversionError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    info = result['info']
    print(f"detected: {info['format']} format, {info['task']} model, "
          f"branch channels {list(info['channels'])}, expansion "
          f"{info['expansion']}, post-fusion GroupNorm "
          f"{'affine' if info['post_gn_affine'] else 'non-affine'}"
          + (f", head {list(info['head_channels'])} -> "
             f"{info['out_channels']}" if task == 'cls' else '') +
          f", {info['num_classes']} classes")
    print(f"mapped {len(result['state_dict'])} keys; dropped "
          f"{len(result['dropped'])}:")
    reasons = {}
    for key, reason in result['dropped']:
        reasons.setdefault(reason, []).append(key)
    for reason, keys in reasons.items():
        print(f'  {len(keys)} x {reason} (e.g. {keys[0]})')
    problems = [f'unmapped original key: {k}' for k in result['unmapped']]
    options = result['cfg_options']
    if not args.no_verify and not problems:
        import mdeq_mm  # noqa: F401
        model = build_target(result['config'], options)
        problems += check_against_model(result['state_dict'], model)
    if problems:
        print(f'error: {len(problems)} problem(s); nothing written:',
              file=sys.stderr)
        for p in problems:
            print(f'  {p}', file=sys.stderr)
        return 1
    meta = dict(converted_from=osp.basename(args.src),
                source_format=info['format'], config=result['config'],
                cfg_options=' '.join(options), mdeq_mm_task=task)
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save(dict(state_dict=result['state_dict'], meta=meta), args.dst)
    opts = f" --cfg-options {' '.join(options)}" if options else ''
    print(f'wrote {args.dst} (state_dict + meta)')
    print(f"matching config: {result['config']}{opts}")
    print(f"evaluate: python tools/test.py {result['config']} {args.dst}"
          f'{opts}')
    return 0


USAGE = ('usage: python -m mdeq_mm.converters {cls,seg} SRC DST '
         '[--no-verify]\n\nConvert an original MDEQ checkpoint: cls for '
         'an mmpretrain classifier, seg for an mmseg segmentor; '
         '"python -m mdeq_mm.converters cls --help" for the options.')

if __name__ == '__main__':
    if len(sys.argv) == 2 and sys.argv[1] in ('-h', '--help'):
        print(USAGE)
        sys.exit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in NAMES:
        sys.exit(USAGE)
    sys.exit(main(sys.argv[1], sys.argv[2:]))

# Copyright (c) mdeq_mm authors. All rights reserved.
"""The end-to-end demo, on CPU: make small datasets in the real Cityscapes
and ImageNet layouts, pretrain an MDEQ classifier with mmpretrain, fine-tune
it for segmentation with mmsegmentation (standard Pretrained init), test it
(prediction PNGs), and compare transfer learning: from scratch, fine-tuned,
and with the pretrained backbone frozen.

Usage:
    python tools/demo.py [--work-dir work_dirs/demo] [--data-root data/demo]
        [--skip-transfer]
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from tool_utils import ROOT, data_root_options, final_checkpoint


def run(step, cmd):
    print(f'\n===== {step}: {" ".join(cmd)}', flush=True)
    t = time.time()
    subprocess.run([sys.executable] + cmd, check=True, cwd=ROOT)
    print(f'===== {step}: done in {time.time() - t:.0f}s', flush=True)


def prepare_data(data_root):
    """Demo data as the downloads hold it; Cityscapes converted by the
    project's converter. Returns the two data roots."""
    from mdeq_mm.datasets.demo_data import write_cityscapes, write_imagenet
    city = osp.join(data_root, 'cityscapes')
    imnet = osp.join(data_root, 'imagenet')
    if not osp.isdir(osp.join(ROOT, city, 'gtFine')):
        # as the official download holds it: label ids, void classes
        write_cityscapes(osp.join(ROOT, city))
    if not glob.glob(osp.join(ROOT, city, 'gtFine', '*', '*',
                              '*_labelTrainIds.png')):
        run('0/4 label ids -> train ids (as for the real Cityscapes)',
            ['tools/dataset_converters/cityscapes.py', city])
    if not osp.isdir(osp.join(ROOT, imnet, 'train')):
        write_imagenet(osp.join(ROOT, imnet))
    print(f'demo data: {city} (Cityscapes download layout, converted), '
          f'{imnet} (ImageNet layout, flat val with meta/val.txt)')
    return city, imnet


def pretrain_finetune_test(wd, city, imnet):
    """Steps 1-3; returns the fine-tuning options that load the
    classifier and the prediction folder."""
    run('1/4 pretrain (mmpretrain, ImageNet layout)', [
        'tools/train.py', 'configs/demo/mdeq-demo_cls.py', '--work-dir',
        osp.join(wd, 'cls'), '--cfg-options'
    ] + data_root_options(imnet))
    cls_ckpt = final_checkpoint(
        osp.join(ROOT, 'configs/demo/mdeq-demo_cls.py'), osp.join(wd, 'cls'))
    pre = [f'model.backbone.init_cfg.checkpoint={cls_ckpt}']
    run('2/4 fine-tune (mmseg, Cityscapes layout)', [
        'tools/train.py', 'configs/demo/mdeq-demo_seg_finetune.py',
        '--work-dir', osp.join(wd, 'seg_finetune'), '--cfg-options'
    ] + data_root_options(city) + pre)
    seg_ckpt = final_checkpoint(
        osp.join(ROOT, 'configs/demo/mdeq-demo_seg_finetune.py'),
        osp.join(wd, 'seg_finetune'))
    pred_dir = osp.join(wd, 'seg_finetune', 'pred')
    run('3/4 test with prediction PNGs', [
        'tools/test.py', 'configs/demo/mdeq-demo_seg_finetune.py', seg_ckpt,
        '--work-dir', osp.join(wd, 'seg_finetune'), '--out', pred_dir,
        '--cfg-options'
    ] + data_root_options(city) + pre)
    return pre, pred_dir


def transfer_baselines(wd, city, pre):
    """Step 4: from scratch and with the pretrained backbone frozen."""
    run('4/4 transfer baselines: from scratch', [
        'tools/train.py', 'configs/demo/mdeq-demo_seg.py', '--work-dir',
        osp.join(wd, 'seg_scratch'), '--cfg-options'
    ] + data_root_options(city))
    run('4/4 transfer baselines: frozen pretrained backbone', [
        'tools/train.py', 'configs/demo/mdeq-demo_seg_frozen.py',
        '--work-dir', osp.join(wd, 'seg_frozen'), '--cfg-options'
    ] + data_root_options(city) + pre)


def summarize(wd, names, pred_dir, start):
    """The transfer table, summary.json and the closing line."""
    from mdeq_mm.engine import run_summary, runs_table
    folders = {'from scratch': 'seg_scratch', 'fine-tuned': 'seg_finetune',
               'frozen backbone': 'seg_frozen'}
    print('\nTransfer comparison (demo data, validation split):')
    rows = [run_summary(osp.join(wd, folders[n]), n) for n in names]
    text = runs_table(rows)
    print(text)
    with open(osp.join(ROOT, wd, 'transfer.md'), 'w') as f:
        f.write(text + '\n')
    finetune = next(r for r in rows if r['name'] == 'fine-tuned')
    pngs = len([p for p in os.listdir(osp.join(ROOT, pred_dir))
                if p.endswith('.png')]) if osp.isdir(
                    osp.join(ROOT, pred_dir)) else 0
    summary = dict(mIoU=finetune['mIoU'], minutes=(time.time() - start) / 60,
                   prediction_pngs=pngs)
    with open(osp.join(ROOT, wd, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=1)
    print(f"\nDemo finished in {summary['minutes']:.1f} min: fine-tuned MDEQ "
          f"mIoU {finetune['mIoU']:.2f} on the demo validation scenes "
          f'({pngs} prediction PNGs in {pred_dir}).')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/demo')
    parser.add_argument('--skip-transfer', action='store_true',
                        help='only pretrain, fine-tune and test')
    args = parser.parse_args()
    start = time.time()
    city, imnet = prepare_data(args.data_root)
    pre, pred_dir = pretrain_finetune_test(args.work_dir, city, imnet)
    names = ['fine-tuned']
    if not args.skip_transfer:
        transfer_baselines(args.work_dir, city, pre)
        names = ['from scratch', 'fine-tuned', 'frozen backbone']
    summarize(args.work_dir, names, pred_dir, start)


if __name__ == '__main__':
    main()

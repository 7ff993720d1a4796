# Demo transfer: the segmentation demo initialised from the classification
# demo's backbone (standard Pretrained init with prefix 'backbone.').
_base_ = ['./mdeq-demo_seg.py']
pretrained = 'work_dirs/demo/cls/iter_400.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

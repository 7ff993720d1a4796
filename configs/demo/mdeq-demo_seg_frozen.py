# Demo transfer evaluation: the pretrained backbone frozen (eval-mode norms,
# no gradients, no backward solve); only the head trains.
_base_ = ['./mdeq-demo_seg_finetune.py']
model = dict(backbone=dict(frozen=True))

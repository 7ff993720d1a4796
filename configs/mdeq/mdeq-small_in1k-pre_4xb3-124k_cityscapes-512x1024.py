# Transfer: fine-tune MDEQ-Small on Cityscapes from an ImageNet MDEQ-Small
# trained with configs/mdeq/mdeq-small_4xb32_in1k.py (mmpretrain). The
# backbone keys of the classifier checkpoint ("backbone.*") load with the
# standard Pretrained initialiser. The same from the command line, on any
# MDEQ segmentation config:
#   python tools/train.py configs/mdeq_cityscapes.py --cfg-options \
#     model.backbone.init_cfg.type=Pretrained \
#     model.backbone.init_cfg.checkpoint=$IN1K_CHECKPOINT \
#     model.backbone.init_cfg.prefix=backbone.
_base_ = ['./mdeq-small_4xb3-124k_cityscapes-512x1024.py']
pretrained = 'work_dirs/mdeq-small_4xb32_in1k/epoch_100.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

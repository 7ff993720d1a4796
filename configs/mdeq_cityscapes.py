# The flagship: MDEQ-Small on Cityscapes with 512x1024 crops.
#   python tools/train.py configs/mdeq_cityscapes.py
# Expects data/cityscapes/{leftImg8bit,gtFine}/{train,val}/<city>/...
# (gtFine/*_gtFine_labelTrainIds.png, made by mmseg's
# tools/dataset_converters/cityscapes.py from the official download).
_base_ = ['./mdeq/mdeq-small_4xb3-124k_cityscapes-512x1024.py']

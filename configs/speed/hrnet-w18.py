# mmseg's HRNet-W18 + FCN head (fcn_hr18) on the speed task: the same data,
# schedule, loss and optimiser as the MDEQ recipes (see _base_demo.py), BN
# instead of SyncBN.
_base_ = ['./_base_demo.py']
norm_cfg = dict(type='BN', requires_grad=True, momentum=0.01)
model = dict(
    type='EncoderDecoder',
    backbone=dict(_delete_=True, type='HRNet', norm_cfg=norm_cfg,
                  norm_eval=False, extra=dict(
                      stage1=dict(num_modules=1, num_branches=1,
                                  block='BOTTLENECK', num_blocks=(4, ),
                                  num_channels=(64, )),
                      stage2=dict(num_modules=1, num_branches=2,
                                  block='BASIC', num_blocks=(4, 4),
                                  num_channels=(18, 36)),
                      stage3=dict(num_modules=4, num_branches=3,
                                  block='BASIC', num_blocks=(4, 4, 4),
                                  num_channels=(18, 36, 72)),
                      stage4=dict(num_modules=3, num_branches=4,
                                  block='BASIC', num_blocks=(4, 4, 4, 4),
                                  num_channels=(18, 36, 72, 144)))),
    decode_head=dict(
        _delete_=True, type='FCNHead', in_channels=[18, 36, 72, 144],
        in_index=(0, 1, 2, 3), channels=270,
        input_transform='resize_concat', kernel_size=1, num_convs=1,
        concat_input=False, dropout_ratio=-1, num_classes=19,
        norm_cfg=norm_cfg, align_corners=False,
        loss_decode=dict(type='WeightedCrossEntropyLoss', loss_weight=1.0)))
custom_hooks = [dict(type='RunStatsHook', interval=20)]

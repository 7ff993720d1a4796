# Copyright (c) mdeq_mm authors. All rights reserved.
"""Flip test-time augmentation for mmpretrain configs (as its test.py)."""


def cls_flip_tta(cfg) -> None:
    """Wrap the model in mmpretrain's AverageClsScoreTTA over a horizontal
    flip of the last test transform."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        pipeline = cfg.test_dataloader.dataset.pipeline
        cfg.tta_pipeline = list(pipeline[:-1]) + [
            dict(
                type='TestTimeAug',
                transforms=[[
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ], [pipeline[-1]]])
        ]
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model

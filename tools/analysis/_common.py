# Copyright (c) mdeq_mm authors. All rights reserved.
"""Shared by the analysis tools: a config's model with a checkpoint, and a
few inputs from its validation data."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def load_cfg(config, cfg_options=None):
    import mdeq_mm  # noqa: F401
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def build_model(cfg, checkpoint=None, device='cpu'):
    """The config's model (scope from default_scope), weights loaded."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import load_checkpoint
    scope = cfg.get('default_scope', 'mmseg')
    if scope == 'mmseg':
        from mmseg.registry import MODELS
    else:
        from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(cfg.model)
        if checkpoint:
            load_checkpoint(model, checkpoint, map_location='cpu')
        else:
            model.init_weights()
    return model.to(device).eval(), scope


def val_batch(cfg, model, scope, n=2):
    """``n`` preprocessed validation samples: (inputs, data_samples)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmengine.dataset import pseudo_collate
    with DefaultScope.overwrite_default_scope(scope):
        loader = dict(cfg.val_dataloader)
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        dataset = Runner.build_dataloader(loader).dataset
        items = [dataset[i] for i in range(min(n, len(dataset)))]
        data = model.data_preprocessor(pseudo_collate(items), False)
    return data['inputs'], data['data_samples']

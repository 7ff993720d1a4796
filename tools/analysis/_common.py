# Copyright (c) mdeq_mm authors. All rights reserved.
"""Shared by the analysis tools and the benchmark: a config's model with a
checkpoint, and a few preprocessed inputs from its data."""


def build_model(cfg, checkpoint=None, device='cpu'):
    """The config's model in eval mode (weights from ``checkpoint`` or the
    initialisation, no pretrained fetch), and its scope."""
    from mdeq_mm.apis import init_model
    from mdeq_mm.registry import scope_of
    return init_model(cfg, checkpoint, device), scope_of(cfg)


def data_batch(cfg, model, scope, n=2, split='val', training=False):
    """``n`` preprocessed samples of the config's ``<split>_dataloader``
    dataset (its first ones; ``training`` selects the preprocessor's
    training mode): (inputs, data_samples)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmengine.dataset import pseudo_collate
    with DefaultScope.overwrite_default_scope(scope):
        loader = dict(cfg[f'{split}_dataloader'])
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        dataset = Runner.build_dataloader(loader).dataset
        items = [dataset[i] for i in range(min(n, len(dataset)))]
        data = model.data_preprocessor(pseudo_collate(items), training)
    return data['inputs'], data['data_samples']

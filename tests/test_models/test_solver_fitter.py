# Copyright (c) mdeq_mm authors. All rights reserved.
"""LearnedSolverFitter loads the trained weights as the Runner would: a DDP
checkpoint's ``module.`` prefix stripped, the learned solver optional in
the file, a checkpoint of another model stopped with its keys and the
fix."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG = osp.join(ROOT, 'configs/demo/mdeq-demo_seg.py')


def fitter(ckpt):
    from mdeq_mm.models import LearnedSolverFitter
    with DefaultScope.overwrite_default_scope('mmseg'):
        return LearnedSolverFitter(Config.fromfile(SEG).model, str(ckpt))


@pytest.fixture(scope='module')
def trained():
    """The demo segmentor's seeded weights, without a learned solver."""
    from mdeq_mm.apis import init_model
    return init_model(SEG).state_dict()


def test_a_ddp_checkpoint_loads_every_weight(trained, tmp_path):
    ckpt = tmp_path / 'ddp.pth'
    torch.save(dict(state_dict={'module.' + k: v
                                for k, v in trained.items()}), ckpt)
    own = fitter(ckpt).model.state_dict()
    assert not any('.learned_solver.' in k for k in trained)
    for key, value in trained.items():
        assert torch.equal(own[key], value), key


def test_a_checkpoint_of_another_model_stops_with_the_keys(
        trained, tmp_path):
    from mdeq_mm.engine import CheckpointMismatch
    state = dict(trained)
    key = next(k for k in state if k.endswith('.weight')
               and state[k].dim() == 4)
    state[key] = torch.zeros(1, 1, 1, 1)
    dropped = next(k for k in sorted(state) if k.startswith('decode_head'))
    del state[dropped]
    ckpt = tmp_path / 'other.pth'
    torch.save(dict(state_dict=state), ckpt)
    with pytest.raises(CheckpointMismatch) as err:
        fitter(ckpt)
    msg = str(err.value)
    assert f'{ckpt} does not fit the model' in msg
    assert '1 missing' in msg and dropped in msg
    assert '1 mis-shaped' in msg and key in msg
    assert 'give the config the checkpoint was trained with' in msg

# Copyright (c) mdeq_mm authors. All rights reserved.
"""Fit the learned solver of a trained model, the model frozen.

:class:`LearnedSolverFitter` is an mmengine model, so an ordinary Runner
trains it on the config's own data (``tools/train_solver.py``): each
training step solves the batch's fixed-point problem to a high budget with
a classical solver (z*, no gradient), then runs the learned solver's
initializer and ``steps`` of its update from there, and minimises their
relative distances to z* (:func:`~mdeq_mm.ops.solvers.unrolled_losses`).
Only the learned solver's parameters have gradients; the model stays in
evaluation mode (its norms' statistics and its dropout are those it is
tested with)."""
import copy
from typing import Optional

import torch
from mmengine.model import BaseModel

from mdeq_mm.registry import register


@register('MODELS', root=True)
class LearnedSolverFitter(BaseModel):
    """Args:
        model (dict): the trained model's config (an MDEQ backbone).
        checkpoint (str): its weights; they must fit the model (a learned
            solver in the file, from an earlier fit, is fitted further).
        learned_solver (dict): the learned solver's options
            (:class:`~mdeq_mm.ops.solvers.LearnedSolver`).
        steps (int): learned iterations per fitting step.
        reference (dict): the classical solve of z*: ``solver``, ``budget``
            (f evaluations) and ``tol`` (relative residual).
        init_weight (float): weight of the initializer's term.
    """

    def __init__(self, model: dict, checkpoint: str,
                 learned_solver: Optional[dict] = None, steps: int = 6,
                 reference: Optional[dict] = None, init_weight: float = 1.0,
                 init_cfg: Optional[dict] = None):
        from mmengine.registry import MODELS
        super().__init__(init_cfg=init_cfg)
        model = copy.deepcopy(dict(model))
        model['backbone'] = dict(model['backbone'],
                                 learned_solver=dict(learned_solver or {}))
        self.model = MODELS.build(model)
        self.data_preprocessor = self.model.data_preprocessor
        self._load(checkpoint)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.learned.parameters():
            p.requires_grad_(True)
        self.steps = steps
        self.reference = dict(dict(solver='broyden', budget=40, tol=1e-4),
                              **(reference or {}))
        self.init_weight = init_weight

    @property
    def backbone(self):
        from mdeq_mm.apis import find_mdeq
        return find_mdeq(self.model)

    @property
    def learned(self):
        return self.backbone.learned_solver

    def _load(self, path: str) -> None:
        """Load the trained weights as the Runner would (a DDP checkpoint's
        ``module.`` prefix stripped); the learned solver may be absent from
        the file (an unfitted one starts), nothing else may."""
        from mmengine.runner.checkpoint import _load_checkpoint

        from mdeq_mm.engine import (CheckpointMismatch, checkpoint_mismatch,
                                    describe_mismatch, model_state)
        ckpt = _load_checkpoint(path, map_location='cpu')
        problem = checkpoint_mismatch(self.model, ckpt)
        if problem:
            problem['missing'] = [k for k in problem['missing']
                                  if '.learned_solver.' not in k]
        if problem and any(problem.values()):
            raise CheckpointMismatch(
                describe_mismatch(problem, path) + ". Fix: give the config "
                'the checkpoint was trained with.')
        self.model.load_state_dict(model_state(ckpt), strict=False)

    def init_weights(self) -> None:
        """Nothing to initialise: the model's weights are the checkpoint's
        (loaded when built) and the learned solver starts unfitted. (The
        Runner calls this before training; the model's own init would
        overwrite the checkpoint.)"""

    def train(self, mode: bool = True) -> 'LearnedSolverFitter':
        super().train(mode)
        self.model.eval()  # frozen: evaluation-mode norms and no dropout
        return self

    def forward(self, inputs, data_samples=None, mode: str = 'loss'):
        from mdeq_mm.ops import solve
        from mdeq_mm.ops.solvers import max_iter_for, unrolled_losses
        ref = self.reference
        with self.backbone.fixed_point(inputs) as problem:
            f = problem.flat()
            packer = problem.packer
            with torch.no_grad():
                z_star, stats = solve(
                    ref['solver'], f, packer.pack(problem.z0),
                    max_iter=max_iter_for(ref['budget']), tol=ref['tol'],
                    stop_mode='rel')
            z_init = packer.pack(self.learned.initial_state(
                problem.injection[0], problem.z0))
            losses = unrolled_losses(self.learned, f, z_init, z_star,
                                     self.steps)
        return dict(loss_init=self.init_weight * losses['init'],
                    loss_iterates=losses['iterates'],
                    reference_residual=stats.rel_lowest.mean())

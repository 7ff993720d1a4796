# Jacobian-regularised reduced budgets (as locuslab/deq v2's configs cut 27
# / 28 f evaluations to 15 / 15 with the Jacobian loss): weight 0.1 on 30%
# of the training iterations (one Hutchinson probe) keeps f contractive
# enough that 8 f evaluations forward (also in evaluation) and 9 backward
# do.
_base_ = ['./_base_demo.py']
model = dict(
    backbone=dict(
        jac_loss=dict(weight=0.1, freq=0.3, n_samples=1),
        solver_cfg=dict(max_iter=7),
        grad_cfg=dict(solver_cfg=dict(max_iter=8, tol=1e-3))))

# The combined recipe with lighter training solves: 6 f evaluations forward
# in training (8 in evaluation) and the SHINE backward refined once (2 f
# evaluations, vector-Jacobian products), on top of the Jacobian loss.
_base_ = ['./mdeq-small_fast.py']
model = dict(
    backbone=dict(
        solver_cfg=dict(max_iter=5),
        eval_solver_cfg=dict(max_iter=7, tol=1e-3, stop_mode='rel'),
        grad_cfg=dict(solver_cfg=dict(max_iter=1))))

# The combined recipe: Jacobian-regularised reduced budgets (8 f
# evaluations forward and in evaluation) with the SHINE backward refined by
# 3 f evaluations (vector-Jacobian products).
_base_ = ['./mdeq-small_jr-reduced.py']
model = dict(
    backbone=dict(
        grad_cfg=dict(
            init='shine',
            solver_cfg=dict(max_iter=2, tol=1e-3, stop_mode='initial'))))

# The reference's budgets, but the backward solve starts from the forward
# Broyden's inverse-Jacobian estimate (SHINE) and refines it with 4
# f evaluations instead of solving from zero with up to 31.
_base_ = ['./_base_demo.py']
model = dict(
    backbone=dict(
        grad_cfg=dict(
            init='shine',
            solver_cfg=dict(max_iter=3, tol=1e-3, stop_mode='initial'))))

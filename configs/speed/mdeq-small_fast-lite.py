# The combined recipe with lighter training: the Jacobian loss on 10% of
# the training iterations (weight 0.1, one probe), 7 f evaluations forward
# in training (8 in evaluation) and the pure SHINE backward (the forward
# Broyden's inverse-Jacobian estimate, no refining vector-Jacobian product).
_base_ = ['./mdeq-small_fast.py']
model = dict(
    backbone=dict(
        jac_loss=dict(freq=0.1),
        solver_cfg=dict(max_iter=6),
        eval_solver_cfg=dict(max_iter=7, tol=1e-3, stop_mode='rel'),
        grad_cfg=dict(solver_cfg=dict(max_iter=0))))

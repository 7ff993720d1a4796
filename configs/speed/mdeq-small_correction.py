# The reduced-budget recipe plus the fixed-point correction (DEQ flow): the
# head's loss also on a one-step phantom update from the forward iterate
# halfway through the solve (weight 0.8).
_base_ = ['./mdeq-small_jr-reduced.py']
model = dict(backbone=dict(fp_correction=dict(n_states=2, gamma=0.8)))

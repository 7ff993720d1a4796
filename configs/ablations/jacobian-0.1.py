# Jacobian regularisation ablation: as jacobian-1.py with weight 0.1.
_base_ = ['./jacobian-1.py']
model = dict(backbone=dict(jac_loss=dict(weight=0.1)))

# The reference's ImageNet schedule: SGD (nesterov) lr 0.05, momentum 0.9,
# cosine annealing stepped every iteration down to 1e-6, 100 epochs.
optim_wrapper = dict(
    optimizer=dict(
        type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-5, nesterov=True))
param_scheduler = dict(
    type='CosineAnnealingLR',
    T_max=100,
    eta_min=1e-6,
    by_epoch=True,
    convert_to_iter_based=True)
train_cfg = dict(by_epoch=True, max_epochs=100, val_interval=1)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)

# Copyright (c) mdeq_mm authors. All rights reserved.
from .checks import DatasetLayoutError, check_dataset_cfg, check_datasets
from .cityscapes_labels import LABEL_ID_TO_TRAIN_ID, label_ids_to_train_ids

__all__ = [
    'DatasetLayoutError', 'check_dataset_cfg', 'check_datasets',
    'LABEL_ID_TO_TRAIN_ID', 'label_ids_to_train_ids'
]

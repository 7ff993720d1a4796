# Copyright (c) mdeq_mm authors. All rights reserved.
"""Dataset checks, Cityscapes label conversion, checked loading transforms
the demo-data generator and video snippets."""
from .checks import (DataFileError, DatasetLayoutError, check_dataset_cfg,
                     check_datasets, data_error_message)
from .cityscapes_labels import (LABEL_ID_TO_TRAIN_ID, convert_cityscapes,
                                label_ids_to_train_ids)
from .sequences import (Snippet, cityscapes_sequences, frames_snippet,
                        read_train_ids)
from .transforms import CheckedLoadImageFromFile  # noqa: F401 (registers)

__all__ = [
    'DataFileError', 'DatasetLayoutError', 'check_dataset_cfg',
    'check_datasets', 'data_error_message', 'LABEL_ID_TO_TRAIN_ID',
    'convert_cityscapes', 'label_ids_to_train_ids', 'Snippet',
    'cityscapes_sequences', 'frames_snippet', 'read_train_ids'
]

# Copyright (c) mdeq_mm authors. All rights reserved.
"""The standard Cityscapes label-id → train-id mapping (34 → 19 + 255)."""
import numpy as np

# labelId: trainId for the 19 evaluated classes; every other id maps to 255.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18
}


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a ``*_gtFine_labelIds.png`` array to train ids (uint8)."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut[label_ids]

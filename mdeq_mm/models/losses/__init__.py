# Copyright (c) mdeq_mm authors. All rights reserved.
from .weighted_ce import WeightedCrossEntropyLoss

__all__ = ['WeightedCrossEntropyLoss']

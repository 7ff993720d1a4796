# Copyright (c) mdeq_mm authors. All rights reserved.
from .locuslab import (ConversionError, build_target, check_against_model,
                       convert)

__all__ = ['ConversionError', 'build_target', 'check_against_model',
           'convert']

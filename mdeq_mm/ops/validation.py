# Copyright (c) mdeq_mm authors. All rights reserved.
"""The one check of option keys: a typo raises, naming the valid keys."""
from typing import Iterable


def check_keys(given: Iterable[str], valid: Iterable[str], what: str,
               hint: str = '') -> None:
    """Raise ValueError if ``given`` holds keys outside ``valid``.

    The message names the unknown keys, ``what`` they were given to and
    every valid key (plus ``hint``), e.g. ``unknown option(s) ['f_thres']
    for solver 'broyden'; valid options: ['max_iter', 'tol', ...]``.
    """
    valid = list(valid)
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f'unknown option(s) {unknown} for {what}; valid '
                         f'options: {valid}{hint}')

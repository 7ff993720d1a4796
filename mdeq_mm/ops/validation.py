# Copyright (c) mdeq_mm authors. All rights reserved.
"""The checks of options: a typo raises naming the valid keys, a value out
of range naming the valid values."""
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


def is_int(value, minimum: int = 0) -> bool:
    """An int (not a bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and \
        value >= minimum


def is_number(value, minimum: float = float('-inf')) -> bool:
    """An int or float (not a bool) >= ``minimum`` (NaN is not)."""
    return isinstance(value, (int, float)) and not isinstance(
        value, bool) and value >= minimum


def check_value(what: str, value, ok: bool, expected: str) -> None:
    """Raise ValueError ``<what> must be <expected>, got <value>`` unless
    ``ok``."""
    if not ok:
        raise ValueError(f'{what} must be {expected}, got {value!r}')

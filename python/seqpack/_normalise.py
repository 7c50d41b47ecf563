"""Type normalisation of keyword arguments before they cross into Rust.

Python only checks that a value has the right *type* (an integer, a string, a flag) and
turns numpy scalars into plain ints; names and ranges are checked once, in the core, with one
message per mistake.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from seqpack.errors import InvalidOptionError


def integer(name: str, value: Any) -> int:
    """``value`` as an ``int`` (numpy integers too), or a typed error naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidOptionError(f"option {name}: must be an integer, got {value!r}")
    return int(value)


def optional_integer(name: str, value: Any) -> int | None:
    return None if value is None else integer(name, value)


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidOptionError(f"option {name}: must be a string, got {value!r}")
    return value


def optional_text(name: str, value: Any) -> str | None:
    return None if value is None else text(name, value)


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidOptionError(f"option {name}: must be True or False, got {value!r}")
    return bool(value)


def seed(value: Any) -> int | None:
    """A row-shuffle seed: ``None`` or an integer in ``[0, 2**64)``."""
    if value is None:
        return None
    number = integer("seed", value)
    if not 0 <= number < 2**64:
        raise InvalidOptionError(f"option seed: must be in [0, 2**64), got {number}")
    return number


def renamed(old: str, new: str, value: Any, current: Any, default: Any) -> Any:
    """The value of a renamed keyword: the new one, or the old one with a
    ``DeprecationWarning`` (both given and different is an error)."""
    if value is None:
        return current
    warnings.warn(
        f"{old}= is deprecated and will be removed in the next release; use {new}= instead",
        DeprecationWarning,
        stacklevel=3,
    )
    if current is not None and current != default and current != value:
        raise InvalidOptionError(
            f"option {new}: given both {new}={current!r} and the old {old}={value!r}"
        )
    return value

"""Configuration errors and value checks shared by every satlink module.

Each layer raises its own member of one error family, so a caller can catch one layer's errors
or all of them (``ConfigError``, a ``ValueError``); every message names the field and what is
allowed. The checks return the value converted (``check_real`` gives a float) and raise the
error class they are given. This module imports nothing of the project, so every layer
(packets, link budget, channel, scenario) can use it without an import cycle.

>>> from satlink.config import ChannelConfigError, check_real
>>> check_real("channel.loss.p", 0.5, lo=0.0, hi=1.0)
0.5
>>> check_real("channel.loss.p", 1.5, lo=0.0, hi=1.0, error=ChannelConfigError)
Traceback (most recent call last):
...
satlink.config.ChannelConfigError: channel.loss.p = 1.5 is out of range; allowed: in [0, 1]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_PACKET_SIZE_BYTES",
    "ChannelConfigError",
    "ConfigError",
    "LinkBudgetError",
    "ScenarioError",
    "check_choice",
    "check_int",
    "check_real",
]

# The packet size every layer defaults to (packets, link budget, scenarios, CLI). It lives here,
# not in satlink.packets, because the link budget and the channel must not import the packet
# layer, yet their defaults have to agree with it.
DEFAULT_PACKET_SIZE_BYTES = 360


class ConfigError(ValueError):
    """Base of satlink's configuration errors; the message names the field and what is allowed."""


class LinkBudgetError(ConfigError):
    """An invalid link-budget parameter, or a missing optional dependency (``itur``)."""


class ChannelConfigError(ConfigError):
    """An invalid channel parameter or input; the message names the field and the allowed range."""


class ScenarioError(ConfigError):
    """An invalid scenario: the message names the file, the key and what is allowed."""


def _num(x: float) -> str:
    # 86400 reads better than 86400.0 or 8.64e+04; 1e+12 better than 1000000000000
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e7 else f"{x:g}"


def _range_text(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return "finite"


def check_real(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    error: type[ConfigError] = ConfigError,
) -> float:
    """Return ``value`` as a float, or raise ``error`` naming ``name`` and the allowed range.

    >>> check_real("budget.rate_bps", 2400, lo=0.0, lo_open=True)
    2400.0
    """
    allowed = _range_text(lo, hi, lo_open, hi_open)
    # bool is an int subclass; "true" as a rate is a typo, not a number
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise error(f"{name} = {value!r}: expected a number {allowed}")
    v = float(value)
    if not math.isfinite(v):
        raise error(f"{name} = {value!r}: expected a finite number {allowed}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (
        hi is not None and (v > hi or (hi_open and v == hi))
    ):
        raise error(f"{name} = {value!r} is out of range; allowed: {allowed}")
    return v


def check_int(
    name: str,
    value: Any,
    *,
    lo: int | None = None,
    hi: int | None = None,
    error: type[ConfigError] = ConfigError,
) -> int:
    """Return ``value`` as an int, or raise ``error`` naming ``name`` and the allowed range.

    >>> check_int("packets.size_bytes", 360, lo=19, hi=65535)
    360
    """
    allowed = _range_text(lo, hi, False, False)
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} = {value!r}: expected an integer {allowed}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise error(f"{name} = {value!r} is out of range; allowed: integer {allowed}")
    return int(value)


def check_choice(
    name: str, value: Any, choices: Sequence[str], *, error: type[ConfigError] = ConfigError
) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``error`` listing them.

    >>> check_choice("packets.order", "stage-major", ("stage-major", "position-major"))
    'stage-major'
    """
    if not isinstance(value, str) or value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise error(f"{name} = {value!r}: allowed values are {allowed}")
    return value

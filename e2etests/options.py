"""Parsers of the values operators type on a command line, shared by the CLI and the plugin.

Each raises ``argparse.ArgumentTypeError`` with one line; the wrapper turns it into exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import secrets
from collections.abc import Callable

from e2etests.timestamps import parse_utc

__all__ = [
    "CLOCK_SKEW",
    "EARLIEST_DRAIN",
    "new_run_id",
    "parse_drained_at",
    "parse_run_id",
    "whole_number",
]

_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


#: How far ahead of this machine's clock a drain time may be: another host's clock, not a typo.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: Earliest drain time taken: anything before is a wrong unit or a zero, not a drain.
EARLIEST_DRAIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def parse_drained_at(value: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """``--drained-at``: an ISO 8601 time (naive means UTC) or Unix epoch seconds.

    A time in the future (beyond :data:`CLOCK_SKEW`) would hold the grace window open past
    every deadline, and one before 2000 would close it at once: both are refused.
    """
    text = value.strip()
    try:
        when = dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        parsed = parse_utc(text)
        if parsed is None:
            raise argparse.ArgumentTypeError(
                f"expected an ISO 8601 time or epoch seconds, got {value!r}"
            ) from None
        when = parsed
    current = now or dt.datetime.now(dt.UTC)
    if when > current + CLOCK_SKEW:
        raise argparse.ArgumentTypeError(
            f"{value!r} is in the future (now {current:%Y-%m-%dT%H:%M:%SZ}; "
            f"at most {CLOCK_SKEW.seconds // 60} min of clock skew allowed)"
        )
    if when < EARLIEST_DRAIN:
        raise argparse.ArgumentTypeError(
            f"{value!r} is before {EARLIEST_DRAIN:%Y-%m-%d}: expected when the drain finished"
        )
    return when


def parse_run_id(value: str) -> str:
    """``--run-id``: letters, digits and dashes (it goes into server names and name regexes)."""
    if not _RUN_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"expected 1-40 letters, digits or dashes, not starting with a dash, got {value!r}"
        )
    return value


def new_run_id() -> str:
    """A fresh run id: sortable by time, unique enough for concurrent runs."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"


def whole_number(low: int = 1, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), else one line saying so."""
    wanted = f">= {low}" if high is None else f"from {low} to {high}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {wanted}, got {value!r}")
        return number

    return parse

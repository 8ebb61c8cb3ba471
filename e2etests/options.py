"""Parsers of the values operators type on a command line, shared by the CLI and the plugin.

Each raises ``argparse.ArgumentTypeError`` with one line; the wrapper turns it into exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import secrets

__all__ = ["new_run_id", "parse_drained_at", "parse_run_id"]

_RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,39}")


def parse_drained_at(value: str) -> dt.datetime:
    """``--drained-at``: an ISO 8601 time (naive means UTC) or Unix epoch seconds."""
    text = value.strip()
    try:
        return dt.datetime.fromtimestamp(float(text), tz=dt.UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time or epoch seconds, got {value!r}"
        ) from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


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

"""The harness's one UTC timestamp format and its one parser.

Every time the harness shows is UTC with a ``Z`` (``2025-01-31T12:00:05Z``): the form
upgrade tooling and people in several time zones read without surprises. OpenStack APIs send
naive UTC strings, so a time without a zone is read as UTC.
"""

from __future__ import annotations

import datetime as dt


def utc_iso(moment: dt.datetime) -> str:
    """``moment`` in UTC to the second, with a ``Z``; a naive time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_utc(value: object) -> dt.datetime | None:
    """An ISO 8601 time (``Z``, an offset or none, meaning UTC) as aware UTC; else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)

"""The drain event the roll sends the watcher, and the one validator of a node name.

``POST /events/drain`` takes ``{"node": "worker-17", "drained_at": "2026-11-27T10:42:00Z"}``
and is checked as ``after-drain --node/--drained-at`` are: a bad one is one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import re

from e2etests.options import parse_drained_at

__all__ = ["MAX_BODY", "BadEvent", "DrainEvent", "parse_drain", "parse_node"]

# Kubernetes node names are DNS-1123 subdomains.
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: Bytes a drain event may have: a few short fields.
MAX_BODY = 4096


class BadEvent(ValueError):
    """An event the watcher refuses; the message is one line."""


def parse_node(value: str) -> str:
    """``--node``: a Kubernetes node name."""
    if len(value) > 253 or not _NODE_NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a Kubernetes node name (lowercase letters, digits, '-', '.')"
        )
    return value


@dataclasses.dataclass(frozen=True)
class DrainEvent:
    node: str
    drained_at: dt.datetime


def parse_drain(body: bytes, *, now: dt.datetime | None = None) -> DrainEvent:
    """A drain event from a request body; :class:`BadEvent` with one line otherwise."""
    if len(body) > MAX_BODY:
        raise BadEvent(f"body over {MAX_BODY} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadEvent('expected JSON like {"node": "worker-1", "drained_at": "…Z"}') from None
    if not isinstance(data, dict):
        raise BadEvent("expected a JSON object with node and drained_at")
    unknown = sorted(set(data) - {"node", "drained_at"})
    if unknown:
        raise BadEvent(f"unknown key {str(unknown[0])[:40]!r} (known: drained_at, node)")
    node, when = data.get("node"), data.get("drained_at")
    if not isinstance(node, str):
        raise BadEvent("node: expected a string")
    if not isinstance(when, str | int | float) or isinstance(when, bool):
        raise BadEvent("drained_at: expected an ISO 8601 time or epoch seconds")
    try:
        node = parse_node(node[:300])
    except argparse.ArgumentTypeError as exc:
        raise BadEvent(f"node: {exc}") from None
    try:
        return DrainEvent(node, parse_drained_at(str(when)[:100], now=now))
    except argparse.ArgumentTypeError as exc:
        raise BadEvent(f"drained_at: {exc}") from None

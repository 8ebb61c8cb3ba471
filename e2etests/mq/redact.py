"""Keeping broker credentials and transport URLs out of every message.

Client libraries put URLs in their exceptions; everything the MQ checks print
goes through :func:`scrub` first, with the secrets of the cloud at hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# user:password@ (or just user@) right after a scheme: the shape of every AMQP URL.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")
MASK = "***"


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` on one line, with the given secrets and any URL credentials masked.

    Longer secrets are masked first so that a password inside a transport URL
    cannot leave part of the URL behind.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    return " ".join(text.split())


def describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception as one scrubbed line: ``Type: message``."""
    message = scrub(str(exc), secrets)
    name = type(exc).__name__
    return f"{name}: {message}" if message else name

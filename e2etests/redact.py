"""Keeping passwords, tokens and broker URLs out of everything the harness prints or posts.

The one place secrets are masked. Client libraries quote transport URLs and request headers in
their exceptions, so the reports, the Slack poster, the CLI and the MQ checks all pass what they
print through :func:`redact` rather than trust every message to be clean.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

MASK = "***"

# Secrets the configuration holds (Keystone passwords, application credential secrets, broker
# passwords and URLs, the Slack token), registered once when they are loaded, so every output
# masks them without each caller having to pass them along.
_KNOWN: set[str] = set()
_KNOWN_LOCK = threading.Lock()
# Shorter values would mask ordinary words; a 3-character password is not worth that cost.
MIN_SECRET_CHARS = 4


def add_secrets(values: Iterable[str | None]) -> None:
    """Remember secrets for every later :func:`redact` call in this process."""
    with _KNOWN_LOCK:
        _KNOWN.update(v for v in values if v and len(v) >= MIN_SECRET_CHARS)


def known_secrets() -> frozenset[str]:
    """The secrets registered with :func:`add_secrets`."""
    with _KNOWN_LOCK:
        return frozenset(_KNOWN)


# The whole URL, not just its userinfo: a multi-host transport URL
# (rabbit://u:p@h1,u:p@h2/) carries credentials after every comma. A comma followed by a
# space is prose, not the next host.
_BROKER_URL = re.compile(
    r"\b(?:rabbit|amqps?|kombu(?:\+\w+)?|qpid|kafka)://(?:[^\s'\"<>,;)\]}]|,(?=\S))*", re.I
)
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^/\s@'\"<>]+@", re.I)
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]+")
_FERNET_TOKEN = re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
# key=value, key: value, "key": "value" and 'key': 'value' for secret-looking keys.
_SECRET_KV = re.compile(
    r"""(?ix)
    (\b[\w-]*(?:password|passwd|secret|token|api[_-]?key|credential)s?\b)   # the key
    (['"]?\s*[=:]\s*['"]?)                                                  # separator
    ([^\s'",;&}\]]+)                                                        # the value
    """
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets, then anything shaped like a credential, masked.

    Known secrets go first, longest first, so a password inside a transport URL cannot leave
    part of the URL behind.

    >>> redact("rabbit://nova:s3cret@10.0.0.5:5672/ timed out")
    'rabbit://<redacted> timed out'
    >>> redact("https://admin:pw@keystone:5000/v3 password=hunter2")
    'https://***@keystone:5000/v3 password=***'
    >>> redact("user nova, password read from /etc/pw: s3cret", ["s3cret"])
    'user nova, password read from /etc/pw: ***'
    """
    every = {s for s in secrets if s} | known_secrets()
    for secret in sorted(every, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _BROKER_URL.sub(lambda m: m.group(0).split("://", 1)[0] + "://<redacted>", text)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    text = _SLACK_TOKEN.sub(f"xox?-{MASK}", text)
    text = _FERNET_TOKEN.sub(MASK, text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    return _SECRET_KV.sub(rf"\1\2{MASK}", text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int | None = None) -> str:
    """Runs of white space (newlines included) as single spaces, optionally clipped."""
    line = " ".join(text.split())
    return line if limit is None else clip(line, limit)


def redact_line(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` redacted and on one line: the form every harness message takes."""
    return one_line(redact(text, secrets))


def message(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception's message as one redacted line, or its type's name when it has none."""
    return redact_line(str(exc), secrets) or type(exc).__name__


def describe(exc: BaseException, secrets: Iterable[str] = ()) -> str:
    """An exception as one redacted line: ``Type: message``, or ``Type`` alone."""
    text = redact_line(str(exc), secrets)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name

"""Keeping passwords, tokens and broker URLs out of everything the harness prints or posts.

The one place secrets are masked. Client libraries quote transport URLs and request headers in
their exceptions, so the reports, the Slack poster, the CLI and the MQ checks all pass what they
print through :func:`redact` rather than trust every message to be clean.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

MASK = "***"

T = TypeVar("T")

# Shorter values would mask ordinary words; a 3-character password is not worth that cost.
MIN_SECRET_CHARS = 4
# Forms at least this long are looked up by their first characters: a fleet registers
# thousands of forms, and most texts hold none of them.
_GRAM = 4


@functools.lru_cache(maxsize=8192)
def _spellings(secret: str) -> frozenset[str]:
    """The forms a known secret takes in output: as is, URL-encoded, JSON- or repr-escaped."""
    return frozenset(
        {
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote(secret),
            urllib.parse.quote_plus(secret),
            json.dumps(secret)[1:-1],
            repr(secret)[1:-1],
        }
    )


class _Forms:
    """Every spelling of a set of secrets, indexed so that finding the few a text holds costs
    about one set lookup per character of the text, not one search per form."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {form for s in secrets if s for form in _spellings(s)}
        self.short = tuple(f for f in forms if len(f) < _GRAM)
        self.by_gram: dict[str, list[str]] = {}
        for form in forms:
            if len(form) >= _GRAM:
                self.by_gram.setdefault(form[:_GRAM], []).append(form)
        self.count = len(forms)

    def found_in(self, text: str) -> list[str]:
        """The forms that occur in ``text``."""
        found = [f for f in self.short if f in text]
        if not self.by_gram or len(text) < _GRAM:
            return found
        if len(text) > 8 * self.count:
            # A long text and few forms: searching for each form is cheaper than the grams.
            return found + [f for fs in self.by_gram.values() for f in fs if f in text]
        grams = {text[i : i + _GRAM] for i in range(len(text) - _GRAM + 1)}
        starts = grams & self.by_gram.keys()
        return found + [f for g in starts for f in self.by_gram[g] if f in text]


class _Registry:
    """The secrets the configuration holds (Keystone passwords, application credential
    secrets, broker passwords and URLs, the Slack token), registered once when they are
    loaded, so every output masks them without each caller having to pass them along."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._forms: _Forms | None = _Forms(())

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            more = {v for v in values if v and len(v) >= MIN_SECRET_CHARS} - self._secrets
            if more:
                self._secrets |= more
                self._forms = None  # built again on the next use, not once per cloud loaded

    def restore(self, secrets: frozenset[str]) -> None:
        with self._lock:
            self._secrets = secrets
            self._forms = None

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def forms(self) -> _Forms:
        with self._lock:
            if self._forms is None:
                self._forms = _Forms(self._secrets)
            return self._forms


_REGISTRY = _Registry()


def add_secrets(values: Iterable[str | None]) -> None:
    """Remember secrets for every later :func:`redact` call in this process."""
    _REGISTRY.add(values)


def known_secrets() -> frozenset[str]:
    """The secrets registered with :func:`add_secrets`."""
    return _REGISTRY.secrets


def restore_secrets(secrets: frozenset[str]) -> None:
    """Make ``secrets`` the registered ones again: for tests that register their own."""
    _REGISTRY.restore(secrets)


# Userinfo runs to the *last* "@" of the URL: a raw password may hold "/", "@" or ":"
# (https://admin:p@ss/w@host), and a multi-host URL (rabbit://u:p@h1,u:p@h2) has one per host.
# Masking a path that merely contains "@" too is the safe mistake.
_URL_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s'\"<>`]*@", re.I)
# The whole broker URL, not just its userinfo: hosts and virtual host say which cluster it is.
# A comma followed by a space is prose, not the next host. At least one character after
# "://", so that redacting twice changes nothing ("<" ends the match).
_BROKER_URL = re.compile(
    r"\b(?:rabbit|amqps?|kombu(?:\+\w+)?|qpid|kafka)://(?:[^\s'\"<>,;)\]}]|,(?=\S))+", re.I
)
# Credentials without a scheme: the second host of a multi-host URL written with a space after
# its comma (rabbit://u:p@h1, u:p@h2), which the broker URL above stops before, or a
# user:password@host pasted alone ("scheme://" is the URL rules' job). "user@host" without a
# colon is left alone: no password.
_BARE_USERINFO = re.compile(r"(?<![\w.%~+:/@-])[\w.%~+-]+:(?!//)[^\s'\"<>`]*@(?=[\w\[])")
# An incoming webhook URL is a credential in itself: whoever has it can post.
_SLACK_WEBHOOK = re.compile(r"\b(hooks\.slack(?:-gov)?\.com/)[^\s'\"<>`]+", re.I)
_SLACK_TOKEN = re.compile(r"\bx(?:ox[abposre]|app)-[A-Za-z0-9-]+")
_FERNET_TOKEN = re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}")
_BEARER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.I)
# Key names that hold a secret, anywhere in the name (admin_password, secret_key, X-Auth-Token).
_KEY_NAMES = (
    r"[\w.-]*(?:password|passwd|passphrase|secret|token|api[_-]?key|access[_-]?key"
    r"|private[_-]?key|credential)[\w.-]*"
)
# key=value, key: value, JSON "key": "value", Python-repr 'key': 'value' and key='value', and
# the same inside an escaped string (\"key\": \"value\"). A quoted value is masked to its
# closing quote, spaces and punctuation included; an unquoted one to the next delimiter.
_SECRET_KV = re.compile(
    rf"""(?ix)
    (?<![\w.-])(?P<key>{_KEY_NAMES})
    (?P<sep>\\?['"]?[ \t]*[=:][ \t]*)
    (?:
        \\"(?P<esc>(?:(?!\\").)*)\\"
      | "(?P<dq>(?:[^"\\\n]|\\.)*)"
      | '(?P<sq>(?:[^'\\\n]|\\.)*)'
      | (?P<bare>[^\s'",;&}}\]]+)
    )
    """
)
# Command lines: --os-password hunter2, --slack-token=xoxb-…
_SECRET_FLAG = re.compile(
    r"(?i)(?<![\w-])(--[\w-]*(?:password|passwd|secret|token|api-key|credential)[\w-]*)"
    r"(\s+|=)(?!-)(\S+)"
)


def _mask_value(match: re.Match[str]) -> str:
    head = match["key"] + match["sep"]
    if match["esc"] is not None:
        return f'{head}\\"{MASK}\\"'
    if match["dq"] is not None:
        return f'{head}"{MASK}"'
    if match["sq"] is not None:
        return f"{head}'{MASK}'"
    return head + MASK


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
    >>> redact('{"password": "correct horse battery"}')
    '{"password": "***"}'
    """
    found = set(_REGISTRY.forms().found_in(text))
    if secrets:
        found.update(_Forms(secrets).found_in(text))
    for form in sorted(found, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _URL_USERINFO.sub(rf"\1{MASK}@", text)
    text = _BROKER_URL.sub(lambda m: m.group(0).split("://", 1)[0] + "://<redacted>", text)
    text = _BARE_USERINFO.sub(f"{MASK}@", text)
    text = _SLACK_WEBHOOK.sub(rf"\1{MASK}", text)
    text = _SLACK_TOKEN.sub(f"xox?-{MASK}", text)
    text = _FERNET_TOKEN.sub(MASK, text)
    text = _BEARER.sub(rf"\1 {MASK}", text)
    text = _SECRET_FLAG.sub(rf"\1\2{MASK}", text)
    return _SECRET_KV.sub(_mask_value, text)


def redact_tree(value: T) -> T:
    """``value`` with every string in it redacted: through dataclasses, mappings and sequences.

    The last gate of a renderer: whatever field a result grows, its text cannot skip redaction.
    Other values (numbers, datetimes, enums) are returned as they are.
    """
    return cast(T, _tree(value))


def _tree(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _tree(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init
        }
        return dataclasses.replace(value, **changes)
    if isinstance(value, Mapping):
        return {_tree(k): _tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tree(v) for v in value)
    return value


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

"""Exit statuses, the errors that map onto them, and the validators of configuration values.

The validators are the one place a configuration mistake is worded, so ``clouds.yaml``'s
``e2etests:`` block and its ``mq:`` sub-block read alike: ``<file>: <key path>: <what was
expected>, got <what was found>``. They never echo text the operator wrote: a password pasted
under the wrong key must not end up in a CI log.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "CheckFailed",
    "ConfigError",
    "CouldNotRun",
    "E2EError",
    "ExitStatus",
    "ServerFault",
    "found",
    "mapping",
    "reject_unknown",
    "seconds",
    "text",
]


class ExitStatus(enum.IntEnum):
    """The wrapper's documented exit codes: upgrade scripts branch on these."""

    OK = 0
    CHECK_FAILED = 1
    USAGE_ERROR = 2
    HARNESS_ERROR = 3


class E2EError(Exception):
    """Every error the harness words itself: the message is one line, free of secrets.

    ``transient``: a restarting API or broker would give the same error, so a caller inside a
    grace window may wait and look again. ``misconfigured``: the operator's settings are at
    fault (a key of clouds.yaml, credentials, a RabbitMQ user's tags), named in the message.
    """

    def __init__(self, message: str, *, transient: bool = False, misconfigured: bool = False):
        super().__init__(message)
        self.transient = transient
        self.misconfigured = misconfigured


class ConfigError(E2EError):
    """Bad configuration; the message is one line naming the file and key at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(message, misconfigured=True)


class CouldNotRun(E2EError):
    """A check could not look at the cloud: no verdict on it (unreachable, refused, missing)."""


@dataclasses.dataclass(frozen=True)
class ServerFault:
    """Nova's fault of a server that went to ERROR: its code and its message, one line."""

    code: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.message} (fault code {'?' if self.code is None else self.code})"

    @property
    def no_valid_host(self) -> bool:
        """The scheduler found no host for it (``NoValidHost``, code 500 in Nova)."""
        return self.message.startswith("No valid host")


class CheckFailed(E2EError):
    """A check found a problem with the cloud: ``culprit`` one line, ``evidence`` a few more.

    ``fault``: Nova's fault of the server, when it had one; ``request_ids``: the requests an
    operator looks up in the services' logs (``global req-...``, ``create req-...``).
    """

    def __init__(
        self,
        culprit: str,
        evidence: Sequence[str] = (),
        *,
        misconfigured: bool = False,
        fault: ServerFault | None = None,
        request_ids: Sequence[str] = (),
    ) -> None:
        super().__init__(culprit, misconfigured=misconfigured)
        self.culprit = culprit
        self.evidence = list(evidence)
        self.fault = fault
        self.request_ids = tuple(request_ids)

    def __str__(self) -> str:
        return "\n".join([self.culprit, *self.evidence])


def found(value: object) -> str:
    """What a bad value is, for an error message: numbers as they are, anything else by type."""
    if value is None:
        return "nothing"
    if isinstance(value, bool | int | float):
        return repr(value)
    return type(value).__name__


def mapping(raw: object, where: str) -> Mapping[str, object]:
    """``raw`` as a mapping with string keys, or ConfigError naming ``where``."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {found(raw)}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {found(key)}")
    return raw


def reject_unknown(block: Mapping[str, object], known: Collection[str], where: str) -> None:
    """ConfigError for the first key of ``block`` outside ``known`` (a typo is never ignored)."""
    unknown = sorted(set(block) - set(known))
    if unknown:
        listing = ", ".join(sorted(known))
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {listing})")


def text(
    block: Mapping[str, object], key: str, where: str, *, required: str | None = None
) -> str | None:
    """A non-empty string, stripped; None when absent unless ``required`` (an example value)."""
    value = block.get(key)
    if value is None:
        if required is not None:
            raise ConfigError(f"{where}.{key}: required, e.g. {key}: {required}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: expected a non-empty string, got {found(value)}")
    return value.strip()


def seconds(
    block: Mapping[str, object],
    key: str,
    where: str,
    *,
    default: float,
    low: float,
    high: float,
) -> float:
    """A finite number of seconds in ``[low, high]``, ``default`` when absent.

    Finite on purpose: YAML reads ``.nan`` and ``.inf`` as floats, and a NaN deadline never
    expires while a NaN poll interval polls in a tight loop.
    """
    value = block.get(key)
    if value is None:
        return default
    # bool is an int subclass; `boot_timeout: yes` is a typo, not one second.
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    # The range test also refuses NaN (every comparison with it is false) and infinities.
    if number is None or not low <= number <= high or not math.isfinite(number):
        raise ConfigError(
            f"{where}.{key}: expected a number of seconds from {low:g} to {high:g}, "
            f"got {found(value)}"
        )
    return float(number)

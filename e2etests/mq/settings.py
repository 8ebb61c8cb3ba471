"""The ``mq:`` block of a cloud's ``e2etests:`` settings, parsed and checked.

Secrets (the broker password, the transport URL) are referenced, never inlined:
a file or an environment variable names where they live, and they are read only
when a check needs them, so a run that skips the MQ checks never touches them
and nothing that prints a settings object can leak them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse
from collections.abc import Mapping

from e2etests.errors import ConfigError

#: Nova's ``service_down_time`` (60 s) plus one ``report_interval`` (10 s): a
#: service silent for longer than this after a disturbance is not recovering.
DEFAULT_GRACE = 70.0
#: How long a canary server may sit in BUILD before the cloud is called broken.
DEFAULT_CANARY_DEADLINE = 30.0


@dataclasses.dataclass(frozen=True)
class Secret:
    """A secret known by where it lives; its value is read on demand.

    ``repr`` and ``str`` name the source only, so a settings object may be
    logged or shown in a pytest failure without leaking anything.
    """

    where: str
    file: pathlib.Path | None = None
    env: str | None = None

    def __post_init__(self) -> None:
        if (self.file is None) == (self.env is None):
            raise ValueError("a Secret needs exactly one of file or env")

    def reveal(self) -> str:
        """The secret's value, stripped of surrounding whitespace.

        Raises ConfigError (one line, naming the key and the source) when the
        file cannot be read, the variable is unset, or the value is empty.
        """
        if self.file is not None:
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                raise ConfigError(f"{self.where}: cannot read {self.file}: {reason}") from None
            source = str(self.file)
        else:
            assert self.env is not None
            value = os.environ.get(self.env, "").strip()
            source = f"environment variable {self.env}"
        if not value:
            raise ConfigError(f"{self.where}: {source} is empty or unset")
        return value

    def __repr__(self) -> str:
        source = f"file={str(self.file)!r}" if self.file is not None else f"env={self.env!r}"
        return f"Secret({source})"

    __str__ = __repr__


@dataclasses.dataclass(frozen=True)
class RabbitSettings:
    """How to reach the RabbitMQ management API that serves Nova's vhost."""

    url: str
    vhost: str
    username: str
    password: Secret
    #: True (system CAs), False (no verification) or a CA bundle path.
    verify: bool | pathlib.Path
    #: Neutron often has its own vhost; its agents' queues are checked only when named.
    neutron_vhost: str | None = None


@dataclasses.dataclass(frozen=True)
class MQSettings:
    """Everything the MQ checks of one cloud need; absent parts disable checks."""

    where: str
    rabbitmq: RabbitSettings | None
    transport_url: Secret | None
    grace: float = DEFAULT_GRACE
    canary_deadline: float = DEFAULT_CANARY_DEADLINE


_TOP_KEYS = frozenset(
    {"rabbitmq", "transport_url_file", "transport_url_env", "grace", "canary_deadline"}
)
_RABBIT_KEYS = frozenset(
    {"url", "vhost", "username", "password_file", "password_env", "verify", "neutron_vhost"}
)


def _mapping(raw: object, where: str) -> Mapping[str, object]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    for key in raw:
        if not isinstance(key, str):
            raise ConfigError(f"{where}: keys must be strings, got {key!r}")
    return raw


def _reject_unknown(raw: Mapping[str, object], known: frozenset[str], where: str) -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(known))})"
        )


def _text(raw: Mapping[str, object], key: str, where: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{where}.{key}: missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}.{key}: expected a non-empty string")
    return value.strip()


def _seconds(raw: Mapping[str, object], key: str, where: str, default: float) -> float:
    value = raw.get(key)
    if value is None:
        return default
    # bool is an int subclass; `grace: yes` is a typo, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}.{key}: expected a positive number of seconds")
    return float(value)


def _secret(raw: Mapping[str, object], stem: str, where: str, *, required: bool) -> Secret | None:
    file_key, env_key = f"{stem}_file", f"{stem}_env"
    path = _text(raw, file_key, where, required=False)
    env = _text(raw, env_key, where, required=False)
    if path is not None and env is not None:
        raise ConfigError(f"{where}.{file_key}: give either {file_key} or {env_key}, not both")
    if path is not None:
        return Secret(where=f"{where}.{file_key}", file=pathlib.Path(path).expanduser())
    if env is not None:
        return Secret(where=f"{where}.{env_key}", env=env)
    if required:
        raise ConfigError(f"{where}.{file_key}: missing (or give {env_key})")
    return None


def _verify(raw: Mapping[str, object], where: str) -> bool | pathlib.Path:
    value = raw.get("verify", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return pathlib.Path(value.strip()).expanduser()
    raise ConfigError(f"{where}.verify: expected true, false or a CA bundle path")


def _rabbit(raw: object, where: str) -> RabbitSettings:
    block = _mapping(raw, where)
    _reject_unknown(block, _RABBIT_KEYS, where)
    url = _text(block, "url", where, required=True)
    assert url is not None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL")
    # The URL is printed in error messages; credentials belong in password_file.
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where}.url: must not carry credentials; use username and password_*")
    vhost = block.get("vhost", "/")
    if not isinstance(vhost, str) or not vhost:
        raise ConfigError(f"{where}.vhost: expected a non-empty string")
    username = _text(block, "username", where, required=True)
    assert username is not None
    password = _secret(block, "password", where, required=True)
    assert password is not None
    neutron_vhost = block.get("neutron_vhost")
    if neutron_vhost is not None and (not isinstance(neutron_vhost, str) or not neutron_vhost):
        raise ConfigError(f"{where}.neutron_vhost: expected a non-empty string")
    return RabbitSettings(
        url=url.rstrip("/"),
        vhost=vhost,
        username=username,
        password=password,
        verify=_verify(block, where),
        neutron_vhost=neutron_vhost,
    )


def parse_mq_settings(raw: object, where: str) -> MQSettings | None:
    """Parse the raw ``mq`` sub-dict of one cloud; None when it is absent or empty.

    ``where`` names the file and key path for error messages, e.g.
    ``"clouds.yaml: clouds.prod.e2etests.mq"``. Any mistake raises ConfigError
    with one line naming the offending key. Secret files are not read here.
    """
    if raw is None:
        return None
    block = _mapping(raw, where)
    if not block:
        # The core settings give every cloud an empty block: no MQ checks wanted.
        return None
    _reject_unknown(block, _TOP_KEYS, where)
    rabbit = _rabbit(block["rabbitmq"], f"{where}.rabbitmq") if "rabbitmq" in block else None
    return MQSettings(
        where=where,
        rabbitmq=rabbit,
        transport_url=_secret(block, "transport_url", where, required=False),
        grace=_seconds(block, "grace", where, DEFAULT_GRACE),
        canary_deadline=_seconds(block, "canary_deadline", where, DEFAULT_CANARY_DEADLINE),
    )

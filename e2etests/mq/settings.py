"""The ``mq:`` block of a cloud's ``e2etests:`` settings, parsed and checked.

Secrets (the broker password, the transport URL) are referenced, never inlined:
a file or an environment variable names where they live, and nothing that prints
a settings object can leak them. Each value is registered with
``e2etests.redact.add_secrets`` the moment it is read, so every later output masks
it; ``config.load_targets`` reads them once for that reason, and a secret that
cannot be read then is an error only when a check needs it.

Values are checked by the validators of ``e2etests.errors``, which also check the
rest of the ``e2etests:`` block: one wording for every mistake.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse
from collections.abc import Mapping

from e2etests.errors import ConfigError, found, mapping, reject_unknown, seconds, text
from e2etests.redact import add_secrets

#: Nova's ``service_down_time`` (60 s) plus one ``report_interval`` (10 s): a
#: service silent for longer than this after a disturbance is not recovering.
DEFAULT_GRACE = 70.0
#: How long after a disturbance a service that reports again may still lack its queue's
#: consumer: oslo.messaging's rabbit driver sleeps at most ``rabbit_interval_max`` (30 s by
#: default) between two reconnect attempts, and the broker's start is read from its node's
#: uptime, which runs several seconds ahead of the broker taking connections; 15 s covers
#: that boot, the connect and the redeclare. ``bench/bench_after_drain.py`` measures how
#: long healthy services take on the test cloud.
DEFAULT_RECONNECT = 45.0
#: How long a canary server may sit in BUILD before the cloud is called broken.
DEFAULT_CANARY_DEADLINE = 30.0
#: Longest grace window and canary deadline: past an hour a drain hook is hung, not patient.
MAX_WAIT = 3600.0


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
        # Before anything can quote it: a transport URL and the passwords inside it.
        add_secrets([value, *url_passwords(value)])
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
    #: The broker-level window (see ``DEFAULT_RECONNECT``); never longer than ``grace``.
    reconnect: float = DEFAULT_RECONNECT

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """Every secret this block references."""
        rabbit = (self.rabbitmq.password,) if self.rabbitmq is not None else ()
        url = (self.transport_url,) if self.transport_url is not None else ()
        return rabbit + url


_TOP_KEYS = frozenset(
    {
        "rabbitmq",
        "transport_url_file",
        "transport_url_env",
        "grace",
        "canary_deadline",
        "reconnect",
    }
)
_RABBIT_KEYS = frozenset(
    {"url", "vhost", "username", "password_file", "password_env", "verify", "neutron_vhost"}
)


def url_passwords(value: str) -> list[str]:
    """The passwords in a URL's user info, every host of a multi-host transport URL included.

    Both as written and percent-decoded: a client library may quote either.
    """
    if "://" not in value:
        return []
    netloc = urllib.parse.urlsplit(value.strip()).netloc
    passwords: list[str] = []
    for host in netloc.split(","):
        userinfo, at, _ = host.rpartition("@")
        _, colon, password = userinfo.partition(":")
        if at and colon and password:
            passwords += [password, urllib.parse.unquote(password)]
    return passwords


def _secret(raw: Mapping[str, object], stem: str, where: str, *, required: bool) -> Secret | None:
    file_key, env_key = f"{stem}_file", f"{stem}_env"
    path = text(raw, file_key, where)
    env = text(raw, env_key, where)
    if path is not None and env is not None:
        raise ConfigError(f"{where}.{file_key}: give either {file_key} or {env_key}, not both")
    if path is not None:
        return Secret(where=f"{where}.{file_key}", file=pathlib.Path(path).expanduser())
    if env is not None:
        return Secret(where=f"{where}.{env_key}", env=env)
    if required:
        raise ConfigError(f"{where}.{file_key}: required, e.g. {file_key}: <path> (or {env_key})")
    return None


def _verify(raw: Mapping[str, object], where: str) -> bool | pathlib.Path:
    value = raw.get("verify", True)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return pathlib.Path(value.strip()).expanduser()
    raise ConfigError(
        f"{where}.verify: expected true, false or a CA bundle path, got {found(value)}"
    )


def _rabbit(raw: object, where: str) -> RabbitSettings:
    block = mapping(raw, where)
    reject_unknown(block, _RABBIT_KEYS, where)
    url = text(block, "url", where, required="https://rabbitmq-mgmt.example.net")
    assert url is not None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ConfigError(f"{where}.url: expected an http:// or https:// URL")
    # The URL is printed in error messages; credentials belong in password_file.
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{where}.url: must not carry credentials; use username and password_*")
    # Not stripped: a vhost is a name on the broker, white space included.
    vhost = block.get("vhost", "/")
    if not isinstance(vhost, str) or not vhost:
        raise ConfigError(f"{where}.vhost: expected a non-empty string, got {found(vhost)}")
    username = text(block, "username", where, required="e2e-monitor")
    assert username is not None
    password = _secret(block, "password", where, required=True)
    assert password is not None
    neutron_vhost = block.get("neutron_vhost")
    if neutron_vhost is not None and (not isinstance(neutron_vhost, str) or not neutron_vhost):
        raise ConfigError(
            f"{where}.neutron_vhost: expected a non-empty string, got {found(neutron_vhost)}"
        )
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
    block = mapping(raw, where)
    if not block:
        # `mq: {}` asks for nothing: no MQ checks wanted.
        return None
    reject_unknown(block, _TOP_KEYS, where)
    rabbit = _rabbit(block["rabbitmq"], f"{where}.rabbitmq") if "rabbitmq" in block else None
    grace = seconds(block, "grace", where, default=DEFAULT_GRACE, low=1, high=MAX_WAIT)
    return MQSettings(
        where=where,
        rabbitmq=rabbit,
        transport_url=_secret(block, "transport_url", where, required=False),
        grace=grace,
        canary_deadline=seconds(
            block, "canary_deadline", where, default=DEFAULT_CANARY_DEADLINE, low=1, high=MAX_WAIT
        ),
        reconnect=_reconnect(block, where, grace),
    )


def _reconnect(block: Mapping[str, object], where: str, grace: float) -> float:
    """The broker-level window: inside the grace window. A cloud that shortens ``grace``
    shortens the default with it; a ``reconnect`` written longer than ``grace`` is a mistake."""
    if block.get("reconnect") is None:
        return min(grace, DEFAULT_RECONNECT)
    value = seconds(block, "reconnect", where, default=DEFAULT_RECONNECT, low=1, high=MAX_WAIT)
    if value > grace:
        raise ConfigError(f"{where}.reconnect: {value:g} s is longer than grace ({grace:g} s)")
    return value

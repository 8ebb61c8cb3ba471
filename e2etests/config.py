"""Clouds to test and their harness settings, read from clouds.yaml.

The clouds come from openstacksdk's own loader, so ``OS_CLIENT_CONFIG_FILE``, the standard
locations, ``secure.yaml`` and ``OS_CLOUD`` mean what operators already expect. Each cloud
entry may carry an ``e2etests:`` block with the harness settings::

    clouds:
      cluster42:
        auth: {...}
        e2etests:
          flavor: m1.tiny
          image: cirros
          network: private        # or "none"
          boot_timeout: 120

Nothing here imports pytest: the sweeper and the benchmarks use it too.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import time
import types
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import keystoneauth1.exceptions
import openstack.config
import openstack.config.loader
import openstack.connection
import openstack.exceptions
from openstack.config.cloud_region import CloudRegion

from e2etests import retry
from e2etests.errors import ConfigError
from e2etests.redact import message

__all__ = [
    "BLOCK_KEY",
    "CloudSettings",
    "CloudTarget",
    "CloudUnavailable",
    "connect",
    "load_targets",
    "parse_settings",
    "select_targets",
]

#: Key of the harness's block inside a cloud entry of clouds.yaml.
BLOCK_KEY = "e2etests"

_NO_NETWORK = "none"

#: Seconds one API request may take when the cloud sets no ``api_timeout``. The SDK's default
#: is none at all: a load balancer that accepts and never answers would hang a check (and its
#: cleanup) past every deadline the harness keeps.
DEFAULT_API_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class CloudSettings:
    """The validated ``e2etests:`` block of one cloud."""

    #: Flavor name or id for the lifecycle server.
    flavor: str
    #: Image name or id for the lifecycle server.
    image: str
    #: Network name or id to boot on; ``None`` boots with ``networks='none'``.
    network: str | None = None
    #: Availability zone to boot in; ``None`` lets Nova choose.
    availability_zone: str | None = None
    #: Seconds from the create call until the server must be ACTIVE.
    boot_timeout: float = 120.0
    #: Seconds from the delete call until the server must be gone.
    delete_timeout: float = 60.0
    #: Seconds between two status polls.
    poll_interval: float = 1.0
    #: When set, the cloud's failures do not gate (tests become non-strict xfail).
    quarantine: str | None = None
    #: When set, the cloud's tests are skipped with this reason.
    skip: str | None = None
    #: The ``mq:`` sub-block, untouched; the message-queue checks validate it.
    mq: Mapping[str, Any] = dataclasses.field(default_factory=lambda: types.MappingProxyType({}))


@dataclasses.dataclass(frozen=True)
class CloudTarget:
    """One cloud (and region) the harness runs against."""

    #: Test id: the cloud name, or ``name/region`` when the cloud has several regions.
    id: str
    #: Cloud name in clouds.yaml.
    name: str
    #: Region name, ``""`` when the cloud does not name one.
    region: str
    #: File the cloud was read from, for error messages.
    source: str
    settings: CloudSettings
    #: openstacksdk's resolved configuration; holds credentials, never print it.
    region_config: CloudRegion = dataclasses.field(repr=False, compare=False)

    @property
    def slug(self) -> str:
        """The id reduced to ``[a-z0-9-]``, safe inside server names and regexes."""
        return re.sub(r"[^a-z0-9]+", "-", self.id.lower()).strip("-") or "cloud"


def _where(source: str, cloud: str, key: str | None = None) -> str:
    path = f"clouds.{cloud}.{BLOCK_KEY}"
    return f"{source}: {path}.{key}" if key else f"{source}: {path}"


def _optional_text(block: Mapping[str, Any], key: str, where: str) -> str | None:
    value = block.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def _required_text(block: Mapping[str, Any], key: str, where: str) -> str:
    value = _optional_text(block, key, where)
    if value is None:
        raise ConfigError(f"{where}: required, e.g. {key}: <name or id>")
    return value


def _seconds(block: Mapping[str, Any], key: str, where: str, default: float) -> float:
    value = block.get(key, default)
    # bool is an int subclass; `boot_timeout: yes` is a typo, not one second.
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{where}: expected a positive number of seconds, got {value!r}")
    return float(value)


def parse_settings(raw: object, *, source: str, cloud: str) -> CloudSettings:
    """Validate one cloud's ``e2etests:`` block; errors name the file and key."""
    if raw is None:
        raise ConfigError(f"{_where(source, cloud)}: missing (needs at least flavor and image)")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{_where(source, cloud)}: expected a mapping, got {type(raw).__name__}")
    known = {f.name for f in dataclasses.fields(CloudSettings)}
    for key in raw:
        if key not in known:
            listing = ", ".join(sorted(known))
            raise ConfigError(f"{_where(source, cloud, str(key))}: unknown key (known: {listing})")

    def at(key: str) -> str:
        return _where(source, cloud, key)

    network = _optional_text(raw, "network", at("network"))
    if network is not None and network.lower() == _NO_NETWORK:
        network = None
    boot_timeout = _seconds(raw, "boot_timeout", at("boot_timeout"), CloudSettings.boot_timeout)
    delete_timeout = _seconds(
        raw, "delete_timeout", at("delete_timeout"), CloudSettings.delete_timeout
    )
    poll_interval = _seconds(raw, "poll_interval", at("poll_interval"), CloudSettings.poll_interval)
    if poll_interval >= boot_timeout:
        raise ConfigError(f"{at('poll_interval')}: must be shorter than boot_timeout")
    mq = raw.get("mq", {})
    if not isinstance(mq, Mapping):
        # Not the value: a transport URL written inline here carries the broker password.
        raise ConfigError(f"{at('mq')}: expected a mapping, got {type(mq).__name__}")
    return CloudSettings(
        flavor=_required_text(raw, "flavor", at("flavor")),
        image=_required_text(raw, "image", at("image")),
        network=network,
        availability_zone=_optional_text(raw, "availability_zone", at("availability_zone")),
        boot_timeout=boot_timeout,
        delete_timeout=delete_timeout,
        poll_interval=poll_interval,
        quarantine=_optional_text(raw, "quarantine", at("quarantine")),
        skip=_optional_text(raw, "skip", at("skip")),
        mq=types.MappingProxyType(dict(mq)),
    )


def _open_loader(config_files: Sequence[str] | None) -> openstack.config.OpenStackConfig:
    try:
        loader = openstack.config.OpenStackConfig(
            config_files=list(config_files) if config_files is not None else None
        )
    except openstack.exceptions.ConfigException as exc:
        raise ConfigError(f"clouds.yaml: {message(exc)}") from None
    if loader.config_filename is None and not _has_env_cloud(loader):
        searched = list(
            openstack.config.loader.CONFIG_FILES if config_files is None else config_files
        )
        override = os.environ.get("OS_CLIENT_CONFIG_FILE")
        if override:
            searched.insert(0, override)
        present = [f for f in searched if os.path.exists(f)]
        if present:
            # The SDK logs and skips a file it cannot parse; say so instead of "not found".
            raise ConfigError(f"{present[0]}: not valid YAML or not readable")
        hint = override or "set OS_CLIENT_CONFIG_FILE or create ~/.config/openstack/clouds.yaml"
        raise ConfigError(f"clouds.yaml: not found ({hint})")
    return loader


def _has_env_cloud(loader: openstack.config.OpenStackConfig) -> bool:
    return bool(loader.envvar_key and loader.envvar_key in loader.cloud_config.get("clouds", {}))


def load_targets(
    patterns: Sequence[str] = (), *, config_files: Sequence[str] | None = None
) -> list[CloudTarget]:
    """Load the selected clouds, sorted by id.

    ``patterns`` are cloud names, ids or shell globs; empty means ``OS_CLOUD`` when it is set,
    else every cloud. A pattern matching nothing is an error, as is a bad ``e2etests:``
    block in a selected cloud (other clouds' blocks are not read). ``config_files`` replaces
    the standard search path (``OS_CLIENT_CONFIG_FILE`` still comes first).
    """
    loader = _open_loader(config_files)
    source = loader.config_filename or "environment"
    if not patterns and os.environ.get("OS_CLOUD"):
        patterns = [os.environ["OS_CLOUD"]]
    try:
        regions = loader.get_all()
    except openstack.exceptions.ConfigException as exc:
        raise ConfigError(f"{source}: {message(exc)}") from None
    loaded = {r.name for r in regions}
    for name in loader.get_cloud_names():
        if name not in loaded:
            raise ConfigError(f"{source}: clouds.{name}: cannot be loaded (check its auth block)")
    per_name: dict[str, int] = {}
    for region in regions:
        per_name[region.name] = per_name.get(region.name, 0) + 1

    candidates: list[tuple[str, CloudRegion]] = []
    for region in regions:
        several = per_name[region.name] > 1 and region.region_name
        cloud_id = f"{region.name}/{region.region_name}" if several else region.name
        candidates.append((cloud_id, region))
    chosen = select_targets([c[0] for c in candidates], patterns, source=source)

    raw_clouds: Mapping[str, Any] = loader.cloud_config.get("clouds", {})
    targets = []
    for cloud_id, region in candidates:
        if cloud_id not in chosen:
            continue
        entry = raw_clouds.get(region.name) or {}
        # Read the block raw: the SDK's normalised copy turns numbers into strings.
        raw_block = entry.get(BLOCK_KEY) if isinstance(entry, Mapping) else None
        settings = parse_settings(raw_block, source=source, cloud=region.name)
        if region.config.get("api_timeout") is None:
            region.config["api_timeout"] = DEFAULT_API_TIMEOUT
        targets.append(
            CloudTarget(
                id=cloud_id,
                name=region.name,
                region=region.region_name or "",
                source=source,
                settings=settings,
                region_config=region,
            )
        )
    return sorted(targets, key=lambda t: t.id)


def split_patterns(values: Iterable[str]) -> list[str]:
    """Flatten repeated and comma-separated ``--clouds`` values."""
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def select_targets(ids: Sequence[str], patterns: Sequence[str], *, source: str) -> set[str]:
    """Ids matched by any pattern (a name, an id or a glob); all ids when there are none.

    A pattern also matches ``name/region`` ids through their cloud name, so ``--clouds prod``
    selects every region of ``prod``.
    """
    if not patterns:
        return set(ids)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {
            i
            for i in ids
            if fnmatch.fnmatchcase(i, pattern) or fnmatch.fnmatchcase(i.split("/")[0], pattern)
        }
        if not hits:
            known = ", ".join(sorted(ids)) or "none"
            raise ConfigError(f"{source}: --clouds {pattern!r} matches no cloud (known: {known})")
        chosen |= hits
    return chosen


class CloudUnavailable(Exception):
    """The cloud cannot be used: unreachable, or it refused the credentials. One line."""


def connect(
    target: CloudTarget, *, sleep: retry.Sleep = time.sleep
) -> openstack.connection.Connection:
    """An authenticated connection to ``target``; raises :class:`CloudUnavailable`."""
    try:
        conn = openstack.connection.Connection(config=target.region_config)
        # Authenticate now so a bad cloud fails with one line before any check starts.
        retry.idempotent(sleep, label=target.id)(conn.session.get_token)
    except Exception as exc:
        raise CloudUnavailable(
            f"{target.id}: cannot connect: {_connect_error(exc, target)}"
        ) from None
    return conn


def _connect_error(exc: Exception, target: CloudTarget) -> str:
    auth = target.region_config.config.get("auth") or {}
    url = urllib.parse.urlsplit(str(auth.get("auth_url") or ""))
    # Rebuilt from parts so credentials embedded in the URL are never echoed.
    port = f":{url.port}" if url.port else ""
    where = f"{url.scheme}://{url.hostname}{port}{url.path}" if url.hostname else "?"
    if isinstance(exc, keystoneauth1.exceptions.Unauthorized):
        return f"keystone at {where} rejected the credentials (HTTP 401)"
    if isinstance(exc, keystoneauth1.exceptions.ConnectionError | ConnectionError):
        return f"keystone at {where} is unreachable ({type(exc).__name__})"
    if isinstance(exc, keystoneauth1.exceptions.HttpError):
        return f"keystone at {where} answered HTTP {exc.http_status}"
    return f"{type(exc).__name__}: {message(exc)[:200]}"

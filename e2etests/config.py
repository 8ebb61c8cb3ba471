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

Before the SDK sees them, the files are read and checked here, so every mistake is one line
naming the file that holds it (the SDK skips a file it cannot parse, crashes on a list where a
mapping belongs, and invents a cloud named ``defaults`` for an empty file). Which file wins:

- **clouds.yaml**: the first that exists of ``OS_CLIENT_CONFIG_FILE``, then ``./clouds.yaml``,
  ``~/.config/openstack/clouds.yaml``, ``/etc/openstack/clouds.yaml`` (each also as ``.yml``
  and ``.json``). The SDK reads that one file and no other; a selected cloud that another of
  these files also defines is refused, since which definition is meant cannot be known.
- **secure.yaml** (first of ``OS_CLIENT_SECURE_FILE``, then the same folders): its values are
  merged into clouds.yaml's clouds. It may only add to a cloud clouds.yaml defines, may not
  set a key clouds.yaml sets to another value, and holds no ``e2etests:`` block.
- **within one file** a key given twice (two ``c1:`` entries) is refused: YAML keys are
  unique, and the SDK's parser would silently keep the last.

The whole ``e2etests:`` block, ``mq:`` included, is validated when the clouds are loaded, by
the validators of :mod:`e2etests.errors`; every secret the selected clouds hold is registered
with :func:`e2etests.redact.add_secrets` so that no later output can show it.

Nothing here imports pytest: the sweeper and the benchmarks use it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import json
import os
import re
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import keystoneauth1.exceptions
import openstack.config
import openstack.config.loader
import openstack.connection
import openstack.exceptions
import yaml
from openstack.config.cloud_region import CloudRegion

from e2etests import retry
from e2etests.errors import ConfigError, CouldNotRun, found, mapping, reject_unknown, seconds, text
from e2etests.mq.settings import MQSettings, parse_mq_settings, url_passwords
from e2etests.redact import add_secrets, message

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

#: Longest boot or delete wait: a check that needs more than an hour is not a smoke test.
MAX_TIMEOUT = 3600.0
#: Status polls: faster than 0.1 s is a load test of Nova, slower than a minute sees nothing.
MIN_POLL, MAX_POLL = 0.1, 60.0


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
    #: The validated ``mq:`` sub-block; ``None`` when absent or empty (no MQ checks).
    mq: MQSettings | None = None


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


def parse_settings(raw: object, *, source: str, cloud: str) -> CloudSettings:
    """Validate one cloud's ``e2etests:`` block, ``mq:`` included; errors name the file and key."""
    where = _where(source, cloud)
    if raw is None:
        raise ConfigError(f"{where}: missing (needs at least flavor and image)")
    block = mapping(raw, where)
    reject_unknown(block, [f.name for f in dataclasses.fields(CloudSettings)], where)

    def timeout(key: str, default: float) -> float:
        return seconds(block, key, where, default=default, low=1, high=MAX_TIMEOUT)

    network = text(block, "network", where)
    if network is not None and network.lower() == _NO_NETWORK:
        network = None
    boot_timeout = timeout("boot_timeout", CloudSettings.boot_timeout)
    delete_timeout = timeout("delete_timeout", CloudSettings.delete_timeout)
    poll_interval = seconds(
        block, "poll_interval", where, default=CloudSettings.poll_interval, low=MIN_POLL,
        high=MAX_POLL,
    )  # fmt: skip
    if poll_interval >= boot_timeout:
        raise ConfigError(f"{where}.poll_interval: must be shorter than boot_timeout")
    return CloudSettings(
        flavor=_required(text(block, "flavor", where, required="<name or id>")),
        image=_required(text(block, "image", where, required="<name or id>")),
        network=network,
        availability_zone=text(block, "availability_zone", where),
        boot_timeout=boot_timeout,
        delete_timeout=delete_timeout,
        poll_interval=poll_interval,
        quarantine=text(block, "quarantine", where),
        skip=text(block, "skip", where),
        mq=parse_mq_settings(block.get("mq"), f"{where}.mq"),
    )


def _required(value: str | None) -> str:
    assert value is not None  # text(required=...) raised otherwise
    return value


# -- reading the files ----------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (what the SDK uses), refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first_line: dict[object, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *defaults` is meant to be overridden
                key = self.construct_object(key_node, deep=False)
                line = key_node.start_mark.line + 1
                try:
                    if key in first_line:
                        raise yaml.constructor.ConstructorError(
                            problem=f"duplicate key {key!r} (also on line {first_line[key]})",
                            problem_mark=key_node.start_mark,
                        )
                    first_line[key] = line
                except TypeError:
                    continue  # an unhashable key; the base class says so
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


class _DuplicateJSONKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateJSONKey(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _parse_file(path: str, *, unique: bool = True) -> object:
    """The file's data, parsed as the SDK would parse it; ConfigError naming the file.

    With ``unique`` a key given twice in one mapping is an error; without, the last wins.
    """
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith("json"):
                return json.load(f, object_pairs_hook=_unique_pairs if unique else None)
            loader = _UniqueKeyLoader if unique else yaml.SafeLoader
            return yaml.load(f, Loader=loader)  # noqa: S506  (both are safe loaders)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid YAML: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: line {exc.lineno}: {exc.msg}") from None
    except _DuplicateJSONKey as exc:
        raise ConfigError(f"{path}: {exc}: keys must be unique") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "cannot parse"
        if problem.startswith("duplicate key"):
            raise ConfigError(
                f"{path}: {line}{problem}: keys must be unique (the SDK would keep the last)"
            ) from None
        raise ConfigError(f"{path}: not valid YAML: {line}{problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {message(exc)}") from None


def _clouds_of(path: str, data: object, *, secure: bool) -> dict[str, Mapping[str, object]]:
    """The ``clouds:`` mapping of one file's data, its shape checked."""
    if data is None:
        if secure:
            return {}  # an empty secure.yaml adds nothing, as with the SDK
        raise ConfigError(f"{path}: empty (expected clouds: with at least one cloud)")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping with a clouds: key, got {found(data)}")
    if "clouds" not in data:
        raise ConfigError(f"{path}: no clouds: key (expected clouds: with at least one cloud)")
    clouds = mapping(data["clouds"], f"{path}: clouds") if data["clouds"] is not None else None
    if clouds is None:
        raise ConfigError(f"{path}: clouds: expected a mapping of cloud names, got nothing")
    if not clouds and not secure:
        raise ConfigError(f"{path}: clouds: no cloud defined")
    checked: dict[str, Mapping[str, object]] = {}
    for name, entry in clouds.items():
        # Not the value: a password written one level too high would be echoed.
        checked[name] = mapping(entry, f"{path}: clouds.{name}")
        if "auth" in checked[name]:
            mapping(checked[name]["auth"], f"{path}: clouds.{name}.auth")
    return checked


@dataclasses.dataclass(frozen=True)
class _ConfigFile:
    path: str
    clouds: Mapping[str, Mapping[str, object]]


@dataclasses.dataclass(frozen=True)
class _Files:
    """The clouds file and secure file in use, and the clouds other candidates define."""

    clouds: _ConfigFile | None
    secure: _ConfigFile | None
    #: Cloud name -> (file that also defines it but is not read, file in use, why that wins).
    shadowed: Mapping[str, tuple[str, str, str]]


def _candidates(files: Iterable[str], override_env: str) -> Iterator[tuple[str, str]]:
    """Existing files in the SDK's order, each once, with the reason it comes first."""
    override = os.environ.get(override_env)
    seen: set[str] = set()
    for index, path in enumerate([*([override] if override else []), *files]):
        real = os.path.realpath(path)
        if real in seen or not os.path.exists(path):
            continue
        seen.add(real)
        first = override_env if override and index == 0 else "first in the search path"
        yield path, first


def _read_files(config_files: Sequence[str] | None) -> _Files:
    cloud_paths = list(
        openstack.config.loader.CONFIG_FILES if config_files is None else config_files
    )
    shadowed: dict[str, tuple[str, str, str]] = {}

    def pick(paths: Iterable[str], override_env: str, *, secure: bool) -> _ConfigFile | None:
        chosen: _ConfigFile | None = None
        why = ""
        for path, reason in _candidates(paths, override_env):
            if chosen is None:
                chosen = _ConfigFile(path, _clouds_of(path, _parse_file(path), secure=secure))
                why = reason
                continue
            try:
                others = _clouds_of(path, _parse_file(path, unique=False), secure=True)
            except ConfigError:
                continue  # not read by the SDK either: its other mistakes change nothing
            for name in others:
                if name in chosen.clouds:
                    shadowed.setdefault(name, (path, chosen.path, why))
        return chosen

    clouds = pick(cloud_paths, "OS_CLIENT_CONFIG_FILE", secure=False)
    secure = pick(openstack.config.loader.SECURE_FILES, "OS_CLIENT_SECURE_FILE", secure=True)
    if clouds is not None and secure is not None:
        _check_secure(secure, clouds)
    return _Files(clouds, secure, shadowed)


def _check_secure(secure: _ConfigFile, clouds: _ConfigFile) -> None:
    """secure.yaml may only add to the clouds clouds.yaml defines."""
    for name, entry in secure.clouds.items():
        where = f"{secure.path}: clouds.{name}"
        if name not in clouds.clouds:
            raise ConfigError(
                f"{where}: no such cloud in {clouds.path} (secure.yaml only adds to it)"
            )
        if BLOCK_KEY in entry:
            raise ConfigError(
                f"{where}.{BLOCK_KEY}: harness settings belong in {clouds.path} "
                "(MQ secrets are named by *_file or *_env keys there)"
            )
        conflict = next(_conflicts(entry, clouds.clouds[name]), None)
        if conflict is not None:
            raise ConfigError(
                # No colon after the key: "password: <word>" reads as a secret to redact().
                f"{where}: {conflict} is also set in {clouds.path}, to another value "
                "(set it in one file)"
            )


def _conflicts(
    new: Mapping[str, object], old: Mapping[str, object], prefix: str = ""
) -> Iterator[str]:
    for key, value in new.items():
        if key not in old:
            continue
        if isinstance(value, Mapping) and isinstance(old[key], Mapping):
            yield from _conflicts(value, old[key], f"{prefix}{key}.")  # type: ignore[arg-type]
        elif value != old[key]:
            yield f"{prefix}{key}"


def _open_loader(files: _Files) -> openstack.config.OpenStackConfig:
    try:
        # Only the files checked above: the SDK's own search would skip an unreadable one
        # and quietly take the next.
        loader = openstack.config.OpenStackConfig(
            config_files=[files.clouds.path] if files.clouds else [],
            secure_files=[files.secure.path] if files.secure else [],
        )
    except openstack.exceptions.ConfigException as exc:
        source = files.clouds.path if files.clouds else "clouds.yaml"
        raise ConfigError(f"{source}: {message(exc)}") from None
    if files.clouds is None and not _has_env_cloud(loader):
        override = os.environ.get("OS_CLIENT_CONFIG_FILE")
        hint = override or "set OS_CLIENT_CONFIG_FILE or create ~/.config/openstack/clouds.yaml"
        raise ConfigError(f"clouds.yaml: not found ({hint})")
    return loader


def _has_env_cloud(loader: openstack.config.OpenStackConfig) -> bool:
    return bool(loader.envvar_key and loader.envvar_key in loader.cloud_config.get("clouds", {}))


def _all_regions(loader: openstack.config.OpenStackConfig, source: str) -> list[CloudRegion]:
    try:
        regions = loader.get_all()
    except openstack.exceptions.ConfigException as exc:
        raise ConfigError(f"{source}: {message(exc)}") from None
    except Exception as exc:
        # The SDK trusts the entry's shape (`auth: x` is an AttributeError); name the cloud.
        for name in loader.get_cloud_names():
            try:
                loader.get_one(name)
            except Exception:
                raise ConfigError(
                    f"{source}: clouds.{name}: openstacksdk cannot load it "
                    f"({type(exc).__name__}: {message(exc)[:200]})"
                ) from None
        raise ConfigError(f"{source}: openstacksdk cannot load it ({message(exc)[:200]})") from None
    loaded = {r.name for r in regions}
    for name in loader.get_cloud_names():
        if name not in loaded:
            raise ConfigError(f"{source}: clouds.{name}: cannot be loaded (check its auth block)")
    return regions


def load_targets(
    patterns: Sequence[str] = (), *, config_files: Sequence[str] | None = None
) -> list[CloudTarget]:
    """Load the selected clouds, sorted by id.

    ``patterns`` are cloud names, ids or shell globs; empty means ``OS_CLOUD`` when it is set,
    else every cloud. A pattern matching nothing is an error, as is a bad ``e2etests:``
    block in a selected cloud (other clouds' blocks are not read). ``config_files`` replaces
    the standard search path (``OS_CLIENT_CONFIG_FILE`` still comes first). Every secret of
    the selected clouds is registered with :func:`e2etests.redact.add_secrets`.
    """
    files = _read_files(config_files)
    loader = _open_loader(files)
    source = files.clouds.path if files.clouds else "environment"
    option = "--clouds"
    if not patterns and os.environ.get("OS_CLOUD"):
        patterns, option = [os.environ["OS_CLOUD"]], "OS_CLOUD"
    regions = _all_regions(loader, source)
    per_name: dict[str, int] = {}
    for region in regions:
        per_name[region.name] = per_name.get(region.name, 0) + 1

    candidates: list[tuple[str, CloudRegion]] = []
    for region in regions:
        several = per_name[region.name] > 1 and region.region_name
        cloud_id = f"{region.name}/{region.region_name}" if several else region.name
        candidates.append((cloud_id, region))
    chosen = select_targets([c[0] for c in candidates], patterns, source=source, option=option)

    raw_clouds = files.clouds.clouds if files.clouds else {}
    targets = []
    for cloud_id, region in candidates:
        if cloud_id not in chosen:
            continue
        if region.name in files.shadowed:
            other, used, why = files.shadowed[region.name]
            raise ConfigError(
                f"{other}: clouds.{region.name}: also defined in {used}, the file in use "
                f"({why}); remove one, or point OS_CLIENT_CONFIG_FILE at the one meant"
            )
        entry = raw_clouds.get(region.name) or {}
        # Read the block raw: the SDK's normalised copy turns numbers into strings.
        settings = parse_settings(entry.get(BLOCK_KEY), source=source, cloud=region.name)
        _register_secrets(region, settings)
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
    _refuse_shared_slugs(targets, source)
    return sorted(targets, key=lambda t: t.id)


def _refuse_shared_slugs(targets: Sequence[CloudTarget], source: str) -> None:
    """Server names carry the cloud's slug, and a sweep or a lost create's lookup selects by
    name: two selected entries on one slug (``Cloud_A``, ``cloud-a``) on one project would
    take each other's servers for their own."""
    seen: dict[str, str] = {}
    for target in targets:
        other = seen.setdefault(target.slug, target.id)
        if other != target.id:
            raise ConfigError(
                f"{source}: clouds {other} and {target.id} both name their servers "
                f"'{target.slug}'; rename one, or select one of them"
            )


_SECRET_KEY = re.compile(r"password|secret|token|passcode", re.I)


def _config_secrets(config: Mapping[str, Any]) -> Iterator[str]:
    for key, value in config.items():
        if isinstance(value, Mapping):
            yield from _config_secrets(value)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            if _SECRET_KEY.search(str(key)):
                yield str(value)
            elif isinstance(value, str):
                yield from url_passwords(value)  # auth_url: https://admin:pw@keystone/v3


def _register_secrets(region: CloudRegion, settings: CloudSettings) -> None:
    """Every secret of one cloud, for :func:`e2etests.redact.redact` to mask from now on."""
    add_secrets(_config_secrets(region.config))
    for secret in settings.mq.secrets if settings.mq else ():
        # Unreadable now: the check that needs it says so, and an unread value cannot leak.
        with contextlib.suppress(ConfigError):
            secret.reveal()  # registers the value and any password inside it


def split_patterns(values: Iterable[str]) -> list[str]:
    """Flatten repeated and comma-separated ``--clouds`` values."""
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def select_targets(
    ids: Sequence[str], patterns: Sequence[str], *, source: str, option: str = "--clouds"
) -> set[str]:
    """Ids matched by any pattern (a name, an id or a glob); all ids when there are none.

    A pattern also matches ``name/region`` ids through their cloud name, so ``--clouds prod``
    selects every region of ``prod``. ``option`` names where the patterns came from.
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
            raise ConfigError(f"{source}: {option} {pattern!r} matches no cloud (known: {known})")
        chosen |= hits
    return chosen


class CloudUnavailable(CouldNotRun):
    """The cloud cannot be used: unreachable, or it refused the credentials. One line.

    ``misconfigured``: Keystone refused the credentials of the cloud's entry (HTTP 401).
    """


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
            f"{target.id}: cannot connect: {_connect_error(exc, target)}",
            misconfigured=isinstance(exc, keystoneauth1.exceptions.Unauthorized),
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

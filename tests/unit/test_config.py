"""clouds.yaml loading, cloud selection and validation of the e2etests: block."""

from __future__ import annotations

import os
import pathlib
import socket
from collections.abc import Callable

import pytest
import yaml

from e2etests import config
from e2etests.errors import ConfigError
from e2etests.mq.settings import MQSettings

Writer = Callable[[dict[str, object]], pathlib.Path]

GOOD_BLOCK = {"flavor": "m1.tiny", "image": "cirros"}


def _cloud(block: object = GOOD_BLOCK, **extra: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "auth": {
            "auth_url": "http://127.0.0.1:5000/v3",
            "username": "u",
            "password": "pw-not-for-output",
            "project_name": "p",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        **extra,
    }
    if block is not None:
        entry["e2etests"] = block
    return entry


@pytest.fixture
def write_clouds(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Writer:
    """Write a clouds.yaml and point OS_CLIENT_CONFIG_FILE at it, with no other OS_* set."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    path = tmp_path / "clouds.yaml"

    def write(clouds: dict[str, object]) -> pathlib.Path:
        path.write_text(yaml.safe_dump({"clouds": clouds}))
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        return path

    return write


def _ids(targets: list[config.CloudTarget]) -> list[str]:
    return [t.id for t in targets]


def test_clouds_are_sorted_and_multi_region_ids_name_the_region(write_clouds: Writer) -> None:
    write_clouds(
        {
            "zeta": _cloud(),
            "alpha": _cloud(regions=["r2", "r1"]),
            "mid": _cloud(region_name="RegionOne"),
        }
    )
    targets = config.load_targets(config_files=[])
    assert _ids(targets) == ["alpha/r1", "alpha/r2", "mid", "zeta"]
    assert [t.region for t in targets] == ["r1", "r2", "RegionOne", ""]


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["prod-*"], ["prod-a", "prod-b/east", "prod-b/west"]),
        (["prod-b"], ["prod-b/east", "prod-b/west"]),
        (["prod-b/west", "lab"], ["lab", "prod-b/west"]),
        (config.split_patterns(["lab,prod-a", " "]), ["lab", "prod-a"]),
        (["*/east"], ["prod-b/east"]),
    ],
)
def test_clouds_select_by_name_id_or_glob(
    write_clouds: Writer, patterns: list[str], expected: list[str]
) -> None:
    write_clouds({"prod-a": _cloud(), "prod-b": _cloud(regions=["east", "west"]), "lab": _cloud()})
    assert _ids(config.load_targets(patterns, config_files=[])) == expected


def test_every_request_is_bounded_unless_the_cloud_sets_its_own_timeout(
    write_clouds: Writer,
) -> None:
    write_clouds({"plain": _cloud(), "own": _cloud(api_timeout=7)})
    timeouts = {
        t.id: float(t.region_config.config["api_timeout"])
        for t in config.load_targets(config_files=[])
    }
    assert timeouts == {"plain": config.DEFAULT_API_TIMEOUT, "own": 7.0}


def test_unknown_cloud_is_one_line_naming_file_and_pattern(write_clouds: Writer) -> None:
    path = write_clouds({"lab": _cloud()})
    with pytest.raises(ConfigError) as err:
        config.load_targets(["nope*"], config_files=[])
    assert str(err.value) == f"{path}: --clouds 'nope*' matches no cloud (known: lab)"


def test_os_cloud_selects_the_default_cloud(
    write_clouds: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_clouds({"a": _cloud(), "b": _cloud()})
    monkeypatch.setenv("OS_CLOUD", "b")
    assert _ids(config.load_targets(config_files=[])) == ["b"]
    assert _ids(config.load_targets(["a"], config_files=[])) == ["a"]


def test_secure_yaml_supplies_the_password(
    write_clouds: Writer, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _cloud()
    auth = entry["auth"]
    assert isinstance(auth, dict)
    del auth["password"]
    write_clouds({"a": entry})
    secure = tmp_path / "secure.yaml"
    secure.write_text(yaml.safe_dump({"clouds": {"a": {"auth": {"password": "from-secure"}}}}))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(secure))
    (target,) = config.load_targets(config_files=[])
    merged = target.region_config.config["auth"]
    assert merged["password"] == "from-secure"  # noqa: S105  (a test value)
    assert "from-secure" not in repr(target)


def test_settings_keep_types_defaults_and_a_validated_mq_block(write_clouds: Writer) -> None:
    mq = {"rabbitmq": {"url": "http://127.0.0.1:15672", "username": "m", "password_env": "PW"}}
    block = {**GOOD_BLOCK, "network": "private", "boot_timeout": 30, "mq": {**mq, "grace": 5}}
    path = write_clouds({"a": _cloud(block)})
    (target,) = config.load_targets(config_files=[])
    settings = target.settings
    assert settings.network == "private"
    assert settings.boot_timeout == 30.0  # a number, though the SDK's copy holds "30"
    assert settings.delete_timeout == config.CloudSettings.delete_timeout
    assert isinstance(settings.mq, MQSettings)
    assert settings.mq.where == f"{path}: clouds.a.e2etests.mq"
    assert settings.mq.grace == 5.0
    assert settings.mq.rabbitmq is not None
    assert settings.mq.rabbitmq.username == "m"
    assert settings.quarantine is None
    assert settings.skip is None


def test_no_or_an_empty_mq_block_means_no_mq_checks() -> None:
    assert config.parse_settings(GOOD_BLOCK, source="f", cloud="c").mq is None
    assert config.parse_settings({**GOOD_BLOCK, "mq": {}}, source="f", cloud="c").mq is None


@pytest.mark.parametrize("value", ["none", "None", None])
def test_network_none_means_no_network(value: object) -> None:
    settings = config.parse_settings({**GOOD_BLOCK, "network": value}, source="f", cloud="c")
    assert settings.network is None


def test_quarantine_and_skip_reasons_are_kept() -> None:
    settings = config.parse_settings(
        {**GOOD_BLOCK, "quarantine": "LP#123 flaky", "skip": "maintenance"}, source="f", cloud="c"
    )
    assert (settings.quarantine, settings.skip) == ("LP#123 flaky", "maintenance")


@pytest.mark.parametrize(
    ("block", "key", "problem"),
    [
        (None, "", "missing"),
        ("flavor", "", "expected a mapping, got str"),
        ({"image": "cirros"}, "flavor", "required"),
        ({"flavor": "", "image": "cirros"}, "flavor", "expected a non-empty string"),
        ({**GOOD_BLOCK, "flavour": "x"}, "flavour", "unknown key"),
        ({**GOOD_BLOCK, "boot_timeout": -1}, "boot_timeout", "expected a number of seconds"),
        ({**GOOD_BLOCK, "boot_timeout": True}, "boot_timeout", "expected a number of seconds"),
        ({**GOOD_BLOCK, "delete_timeout": "60s"}, "delete_timeout", "expected a number"),
        ({**GOOD_BLOCK, "boot_timeout": 20, "poll_interval": 30}, "poll_interval", "must be"),
        ({**GOOD_BLOCK, "network": 5}, "network", "expected a non-empty string"),
        ({**GOOD_BLOCK, "mq": ["x"]}, "mq", "expected a mapping, got list"),
        ({**GOOD_BLOCK, "mq": {"graze": 1}}, "mq.graze", "unknown key"),
        ({**GOOD_BLOCK, "mq": {"grace": "30s"}}, "mq.grace", "expected a number of seconds"),
        ({**GOOD_BLOCK, "mq": {"canary_deadline": -5}}, "mq.canary_deadline", "expected a"),
        ({**GOOD_BLOCK, "mq": {"rabbitmq": "str"}}, "mq.rabbitmq", "expected a mapping"),
    ],
)
def test_bad_block_is_one_line_naming_file_and_key(
    write_clouds: Writer, block: object, key: str, problem: str
) -> None:
    path = write_clouds({"ok": _cloud(), "bad": _cloud(block)})
    with pytest.raises(ConfigError) as err:
        config.load_targets(config_files=[])
    message = str(err.value)
    where = f"{path}: clouds.bad.e2etests" + (f".{key}" if key else "")
    assert message.startswith(f"{where}: {problem}"), message
    assert "\n" not in message
    assert "pw-not-for-output" not in message


@pytest.mark.parametrize("key", ["mq", None])
def test_a_misplaced_transport_url_is_not_echoed(key: str | None) -> None:
    url = "rabbit://nova:inline-pw@10.0.0.5:5672/"
    raw = {**GOOD_BLOCK, "mq": url} if key else url
    with pytest.raises(ConfigError) as err:
        config.parse_settings(raw, source="f", cloud="c")
    assert "expected a mapping, got str" in str(err.value)
    assert "inline-pw" not in str(err.value)


def test_bad_block_of_an_unselected_cloud_is_not_read(write_clouds: Writer) -> None:
    write_clouds({"ok": _cloud(), "bad": _cloud({"flavour": "x"})})
    assert _ids(config.load_targets(["ok"], config_files=[])) == ["ok"]


def test_missing_clouds_yaml_is_an_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    missing = tmp_path / "nowhere" / "clouds.yaml"
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(missing))
    with pytest.raises(ConfigError, match=r"^clouds.yaml: not found \(.*nowhere/clouds.yaml\)$"):
        config.load_targets(config_files=[])


def test_unparsable_clouds_yaml_is_an_error(write_clouds: Writer) -> None:
    path = write_clouds({})
    path.write_text("clouds: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load_targets(config_files=[])


def test_slug_is_safe_for_names() -> None:
    settings = config.parse_settings(GOOD_BLOCK, source="f", cloud="c")
    target = config.CloudTarget(
        id="Prod_EU/Region.One",
        name="Prod_EU",
        region="Region.One",
        source="f",
        settings=settings,
        region_config=None,  # type: ignore[arg-type]  # slug never reads it
    )
    assert target.slug == "prod-eu-region-one"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_keystone_is_one_line_without_secrets(write_clouds: Writer) -> None:
    entry = _cloud()
    auth = entry["auth"]
    assert isinstance(auth, dict)
    auth["auth_url"] = f"http://admin:url-secret@127.0.0.1:{_closed_port()}/v3"
    write_clouds({"down": entry})
    (target,) = config.load_targets(config_files=[])
    sleeps: list[float] = []
    with pytest.raises(config.CloudUnavailable) as err:
        config.connect(target, sleep=sleeps.append)
    message = str(err.value)
    assert message.startswith("down: cannot connect: keystone at http://127.0.0.1:")
    assert "unreachable" in message
    assert "url-secret" not in message
    assert "pw-not-for-output" not in message
    assert len(sleeps) == 3  # transient: retried within the policy's bound

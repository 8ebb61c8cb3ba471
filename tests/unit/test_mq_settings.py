"""Parsing of the ``mq:`` block: good input, every bad key, and secrets kept secret."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from e2etests.errors import ConfigError
from e2etests.mq.settings import (
    DEFAULT_CANARY_DEADLINE,
    DEFAULT_GRACE,
    DEFAULT_RECONNECT,
    Secret,
    parse_mq_settings,
)

WHERE = "clouds.yaml: clouds.a.e2etests.mq"
PASSWORD = "s3cr3t-Pa55"  # noqa: S105 -- a fake, to prove it never leaks


def _full(tmp_path: pathlib.Path) -> dict[str, Any]:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    (tmp_path / "url").write_text(f"rabbit://nova:{PASSWORD}@127.0.0.1:5672/\n")
    return {
        "rabbitmq": {
            "url": "http://127.0.0.1:35673/",
            "vhost": "/",
            "username": "e2e-monitor",
            "password_file": str(tmp_path / "pw"),
            "verify": True,
        },
        "transport_url_file": str(tmp_path / "url"),
        "grace": 70,
        "canary_deadline": 30,
    }


def test_the_test_cloud_schema_parses(tmp_path: pathlib.Path) -> None:
    mq = parse_mq_settings(_full(tmp_path), WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.rabbitmq.url == "http://127.0.0.1:35673"
    assert (mq.rabbitmq.vhost, mq.rabbitmq.username, mq.rabbitmq.verify) == (
        "/",
        "e2e-monitor",
        True,
    )
    assert mq.rabbitmq.password.reveal() == PASSWORD
    assert mq.transport_url is not None
    assert mq.transport_url.reveal().startswith("rabbit://nova:")
    assert (mq.grace, mq.canary_deadline) == (70.0, 30.0)


@pytest.mark.parametrize("raw", [None, {}])
def test_absent_or_empty_block_means_no_mq_checks(raw: object) -> None:
    assert parse_mq_settings(raw, WHERE) is None


def test_defaults_and_partial_blocks() -> None:
    mq = parse_mq_settings({"grace": 5}, WHERE)
    assert mq is not None
    assert (mq.rabbitmq, mq.transport_url) == (None, None)
    assert (mq.grace, mq.canary_deadline) == (5.0, DEFAULT_CANARY_DEADLINE)
    only_deadline = parse_mq_settings({"canary_deadline": 12.5}, WHERE)
    assert only_deadline is not None
    assert only_deadline.grace == DEFAULT_GRACE


def test_the_broker_window_stays_inside_the_grace_window() -> None:
    default = parse_mq_settings({"grace": 70}, WHERE)
    assert default is not None
    assert default.reconnect == DEFAULT_RECONNECT < 70
    # A cloud that shortens grace shortens the default broker window with it...
    short = parse_mq_settings({"grace": 30}, WHERE)
    assert short is not None
    assert short.reconnect == 30.0
    tuned = parse_mq_settings({"grace": 30, "reconnect": 12}, WHERE)
    assert tuned is not None
    assert tuned.reconnect == 12.0
    # ...but one written longer than grace is a mistake, named in one line.
    with pytest.raises(
        ConfigError, match=r"^[^\n]*mq\.reconnect: 40 s is longer than grace \(30 s\)$"
    ):
        parse_mq_settings({"grace": 30, "reconnect": 40}, WHERE)


def test_verify_false_and_ca_bundle(tmp_path: pathlib.Path) -> None:
    raw = _full(tmp_path)
    raw["rabbitmq"]["verify"] = False
    mq = parse_mq_settings(raw, WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.rabbitmq.verify is False
    raw["rabbitmq"]["verify"] = "/etc/ssl/ca.pem"
    mq = parse_mq_settings(raw, WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.rabbitmq.verify == pathlib.Path("/etc/ssl/ca.pem")


def test_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_RABBIT_PW", PASSWORD)
    raw = {
        "rabbitmq": {"url": "https://mq.example", "username": "u", "password_env": "E2E_RABBIT_PW"},
        "transport_url_env": "E2E_TRANSPORT",
    }
    mq = parse_mq_settings(raw, WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.transport_url is not None
    assert mq.rabbitmq.vhost == "/"
    assert mq.rabbitmq.password.reveal() == PASSWORD
    # Unset variable: parsing succeeded (lazy), revealing names the key, not a value.
    with pytest.raises(ConfigError, match=r"mq\.transport_url_env: environment variable"):
        mq.transport_url.reveal()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], r"^clouds\.yaml: clouds\.a\.e2etests\.mq: expected a mapping, got list$"),
        ({"graze": 1}, r"mq\.graze: unknown key"),
        ({"grace": 0}, r"mq\.grace: expected a number of seconds from 1 to 3600, got 0$"),
        ({"grace": True}, r"mq\.grace: expected a number of seconds from 1 to 3600, got True$"),
        ({"grace": float("nan")}, r"mq\.grace: expected a number of seconds .*, got nan$"),
        ({"grace": float("inf")}, r"mq\.grace: expected a number of seconds .*, got inf$"),
        ({"canary_deadline": "30"}, r"mq\.canary_deadline: expected a number .*, got str$"),
        ({"canary_deadline": -1}, r"mq\.canary_deadline: expected a number .*, got -1$"),
        ({"reconnect": float("nan")}, r"mq\.reconnect: expected a number of seconds .*, got nan$"),
        ({"reconnect": 0}, r"mq\.reconnect: expected a number of seconds from 1 to 3600, got 0$"),
        ({"rabbitmq": None}, r"mq\.rabbitmq: expected a mapping"),
        ({"rabbitmq": {"username": "u", "password_env": "X"}}, r"mq\.rabbitmq\.url: required"),
        (
            {"rabbitmq": {"url": "ftp://h", "username": "u", "password_env": "X"}},
            r"rabbitmq\.url: expected an http",
        ),
        ({"rabbitmq": {"url": "http://h", "password_env": "X"}}, r"rabbitmq\.username: required"),
        ({"rabbitmq": {"url": "http://h", "username": "u"}}, r"rabbitmq\.password_file: required"),
        (
            {"rabbitmq": {"url": "http://h", "username": "u", "password_env": "X", "vhost": ""}},
            r"rabbitmq\.vhost: expected",
        ),
        (
            {"rabbitmq": {"url": "http://h", "username": "u", "password_env": "X", "verify": 1}},
            r"rabbitmq\.verify: expected true, false or a CA bundle path",
        ),
        (
            {"rabbitmq": {"url": "http://h", "username": "u", "password_env": "X", "tls": 1}},
            r"rabbitmq\.tls: unknown key",
        ),
        (
            {"transport_url_file": "/a", "transport_url_env": "B"},
            r"mq\.transport_url_file: give either",
        ),
        ({"transport_url_env": ""}, r"mq\.transport_url_env: expected a non-empty string"),
    ],
)
def test_bad_input_is_one_line_naming_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        parse_mq_settings(raw, WHERE)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(WHERE)


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    raw = {"rabbitmq": {"url": f"http://admin:{PASSWORD}@h", "username": "u", "password_env": "X"}}
    with pytest.raises(ConfigError, match=r"rabbitmq\.url: must not carry credentials") as caught:
        parse_mq_settings(raw, WHERE)
    assert PASSWORD not in str(caught.value)


def test_missing_secret_file_is_reported_when_used(tmp_path: pathlib.Path) -> None:
    raw = _full(tmp_path)
    raw["rabbitmq"]["password_file"] = str(tmp_path / "nope")
    mq = parse_mq_settings(raw, WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    with pytest.raises(ConfigError, match=r"rabbitmq\.password_file: cannot read .*nope: No such"):
        mq.rabbitmq.password.reveal()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"is empty or unset"):
        Secret(where="k", file=tmp_path / "empty").reveal()


def test_repr_of_settings_never_shows_secrets(tmp_path: pathlib.Path) -> None:
    mq = parse_mq_settings(_full(tmp_path), WHERE)
    assert mq is not None
    assert mq.rabbitmq is not None
    assert mq.transport_url is not None
    # Reveal first: a cached value must not sneak into the repr either.
    mq.rabbitmq.password.reveal()
    mq.transport_url.reveal()
    shown = f"{mq!r} {mq} {mq.rabbitmq.password} {mq.transport_url!r}"
    assert PASSWORD not in shown
    assert "rabbit://" not in shown
    assert "Secret(file=" in shown


def test_secret_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Secret(where="k")
    with pytest.raises(ValueError, match="exactly one"):
        Secret(where="k", file=pathlib.Path("/a"), env="B")

"""Issue 9's trust contract for bad input: one line, exit 2, nothing run, nothing written.

Every case goes through ``cli.main`` with a ``pytest_main`` that fails the test if called, and
checks that the report directory was never created. Files are written as YAML text, so what
PyYAML makes of ``.nan`` or a key given twice is what is tested.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2etests import cli, config, redact
from e2etests.errors import ConfigError, ExitStatus
from tests.slack_standin import SlackStandIn

ENTRY = """\
  {name}:
    auth: {{auth_url: "http://127.0.0.1:9/v3", username: u, password: {password},
            project_name: p, user_domain_name: Default, project_domain_name: Default}}
    e2etests: {{flavor: f, image: i{extra}}}
"""


def entry(name: str, extra: str = "", password: str = "pw-trust-1") -> str:  # noqa: S107
    return ENTRY.format(name=name, extra=f", {extra}" if extra else "", password=password)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No OS_* or Slack variable from the caller, and a registry of secrets of our own."""
    for key in list(os.environ):
        if key.startswith(("OS_", "E2E_SLACK")):
            monkeypatch.delenv(key)
    # Secrets registered here must not mask words in other tests of this process.
    monkeypatch.setattr(redact, "_REGISTRY", redact._Registry())
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    path = tmp_path / "etc" / "clouds.yaml"
    path.parent.mkdir()

    def write(content: str) -> Path:
        path.write_text(content)
        monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
        return path

    return write


def never(*args: object, **kwargs: object) -> int:
    raise AssertionError("pytest ran, though the input was bad")


def refused(argv: list[str], tmp_path: Path, environ: dict[str, str] | None = None) -> str:
    """Run the CLI; assert the contract for bad input and return the one line."""
    reports = tmp_path / "reports"
    out, err = io.StringIO(), io.StringIO()
    full = [*argv[:1], "--report-dir", str(reports), *argv[1:]] if argv[0] != "clouds" else argv
    code = cli.main(full, out=out, err=err, environ=environ or {}, pytest_main=never)
    assert code == ExitStatus.USAGE_ERROR, err.getvalue()
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("e2etests: ")
    assert "Traceback" not in err.getvalue() + out.getvalue()
    assert not reports.exists()
    return lines[0].removeprefix("e2etests: ")


COMMANDS = [["clouds"], ["run"], ["after-drain", "--node", "n1"]]


# -- item 13: the shape of clouds.yaml ----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("clouds: [a, b]\n", "clouds: expected a mapping, got list"),
        ("clouds:\n", "clouds: expected a mapping of cloud names, got nothing"),
        ('clouds:\n  c1: "just a string"\n', "clouds.c1: expected a mapping, got str"),
        ("", "empty (expected clouds: with at least one cloud)"),
        ("# nothing but a comment\n", "empty (expected clouds: with at least one cloud)"),
        ("clouds: {}\n", "clouds: no cloud defined"),
        ("- clouds\n", "expected a mapping with a clouds: key, got list"),
        ("client: {}\n", "no clouds: key"),
        ("clouds:\n  1: {auth: {}}\n", "clouds: keys must be strings, got 1"),
        ('clouds:\n  c1: {auth: "pw-in-the-wrong-place"}\n', "clouds.c1.auth: expected a mapping"),
        ("clouds: [unclosed\n", "not valid YAML: line 2"),
    ],
)
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_a_misshapen_clouds_yaml_is_one_line_naming_the_file(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, argv: list[str], content: str, problem: str
) -> None:
    path = clouds_yaml(content)
    line = refused(argv, tmp_path)
    assert line.startswith(f"{path}: {problem}"), line
    assert "defaults" not in line
    assert "pw-in-the-wrong-place" not in line


# -- items 12 and 14: every value of the e2etests: block, mq: included, checked at load -----


NUMBERS = {
    "boot_timeout": (1, 3600),
    "delete_timeout": (1, 3600),
    "poll_interval": (0.1, 60),
    "mq.grace": (1, 3600),
    "mq.canary_deadline": (1, 3600),
}


def _setting(key: str, value: str) -> str:
    if key.startswith("mq."):
        return f"mq: {{{key.removeprefix('mq.')}: {value}}}"
    return f"{key}: {value}"


def _bad_numbers() -> Iterator[tuple[str, str, str]]:
    for key, (low, high) in NUMBERS.items():
        for value, shown in [
            (".nan", "nan"),
            (".inf", "inf"),
            ("-.inf", "-inf"),
            (f"{low / 2:g}", f"{low / 2!r}"),
            (f"{high * 2:g}", f"{high * 2!r}"),
            ("-5", "-5"),
            ('"30s"', "str"),
            ("yes", "True"),
        ]:
            yield key, value, shown


@pytest.mark.parametrize(("key", "value", "shown"), list(_bad_numbers()))
def test_every_number_is_finite_and_in_range(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, key: str, value: str, shown: str
) -> None:
    path = clouds_yaml("clouds:\n" + entry("c1", _setting(key, value)))
    low, high = NUMBERS[key]
    line = refused(["run"], tmp_path)
    assert line == (
        f"{path}: clouds.c1.e2etests.{key}: expected a number of seconds from {low:g} to "
        f"{high:g}, got {shown}"
    )


@pytest.mark.parametrize("key", list(NUMBERS))
def test_the_bounds_themselves_are_accepted(key: str) -> None:
    low, high = NUMBERS[key]
    for value in (low, high):
        block = {"flavor": "f", "image": "i", "boot_timeout": 3600}
        if key.startswith("mq."):
            block["mq"] = {key.removeprefix("mq."): value}
        else:
            block[key] = value
        if key == "boot_timeout":
            block["boot_timeout"] = max(value, 61)  # poll_interval must stay shorter
        config.parse_settings(block, source="f", cloud="c")


@pytest.mark.parametrize(
    ("mq", "problem"),
    [
        ("{graze: 1}", "mq.graze: unknown key"),
        ('{grace: "30s"}', "mq.grace: expected a number of seconds"),
        ("{canary_deadline: -5}", "mq.canary_deadline: expected a number of seconds"),
        ('{rabbitmq: "str"}', "mq.rabbitmq: expected a mapping, got str"),
    ],
)
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_a_bad_mq_block_is_a_usage_error_not_a_red_cloud(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, argv: list[str], mq: str, problem: str
) -> None:
    path = clouds_yaml("clouds:\n" + entry("c1", f"mq: {mq}"))
    assert refused(argv, tmp_path).startswith(f"{path}: clouds.c1.e2etests.{problem}")


# -- item 15: which file and which entry ----------------------------------------------------


def test_a_cloud_defined_twice_in_one_file_is_refused(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    path = clouds_yaml("clouds:\n" + entry("c1") + entry("c2") + entry("c1", "skip: later"))
    line = refused(["clouds"], tmp_path)
    assert line.startswith(f"{path}: line 10: duplicate key 'c1' (also on line 2)")


def test_a_key_given_twice_anywhere_is_refused(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    path = clouds_yaml("clouds:\n" + entry("c1", "flavor: g"))
    line = refused(["run"], tmp_path)
    assert line.startswith(f"{path}: line 5: duplicate key 'flavor' (also on line 5)")


def test_yaml_merge_keys_still_override(clouds_yaml: Callable[[str], Path]) -> None:
    clouds_yaml(
        textwrap.dedent(
            """\
            base: &base {flavor: f, image: i}
            clouds:
              c1:
                auth: {auth_url: "http://127.0.0.1:9/v3", username: u, password: pw-x1,
                       project_name: p}
                e2etests: {<<: *base, image: j}
            """
        )
    )
    (target,) = config.load_targets(config_files=[])
    assert (target.settings.flavor, target.settings.image) == ("f", "j")


def test_a_duplicate_key_in_json_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clouds.json"
    path.write_text('{"clouds": {"c1": {}, "c1": {}}}')
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    assert refused(["clouds"], tmp_path) == f"{path}: duplicate key 'c1': keys must be unique"


def test_a_cloud_also_defined_in_a_shadowed_clouds_yaml_is_refused(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    used = clouds_yaml("clouds:\n" + entry("c1") + entry("c2"))
    # A file on the search path after OS_CLIENT_CONFIG_FILE: the SDK would ignore it.
    shadowed = tmp_path / "clouds.yaml"
    shadowed.write_text("clouds:\n" + entry("c1", "image: other"))
    with pytest.raises(ConfigError) as caught:
        config.load_targets(config_files=[str(shadowed)])
    assert str(caught.value) == (
        f"{shadowed}: clouds.c1: also defined in {used}, the file in use "
        "(OS_CLIENT_CONFIG_FILE); remove one, or point OS_CLIENT_CONFIG_FILE at the one meant"
    )
    # Not refused where the duplicate is not selected: that run is unambiguous.
    assert [t.id for t in config.load_targets(["c2"], config_files=[str(shadowed)])] == ["c2"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_two_clouds_whose_server_names_would_be_the_same_are_refused(
    command: list[str], clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    path = clouds_yaml("clouds:\n" + entry("Cloud_A") + entry("cloud-a") + entry("c2"))
    assert refused(command, tmp_path) == (
        f"{path}: clouds Cloud_A and cloud-a both name their servers 'cloud-a'; "
        "rename one, or select one of them"
    )
    # Either alone is unambiguous.
    assert [t.id for t in config.load_targets(["cloud-a", "c2"])] == ["c2", "cloud-a"]


def test_the_first_file_of_the_search_path_is_named_as_the_winner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("clouds:\n" + entry("c1"))
    second.write_text("clouds:\n" + entry("c1"))
    with pytest.raises(ConfigError, match=r"b\.yaml: clouds\.c1: also defined in .*a\.yaml, "
                       r"the file in use \(first in the search path\)"):  # fmt: skip
        config.load_targets(config_files=[str(tmp_path / "none.yaml"), str(first), str(second)])


def test_the_same_file_twice_on_the_search_path_is_one_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n" + entry("c1"))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", "clouds.yaml")  # relative: the same file
    targets = config.load_targets(config_files=[str(path)])
    assert [t.source for t in targets] == ["clouds.yaml"]


def test_an_unreadable_clouds_yaml_is_refused_not_skipped(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = clouds_yaml("clouds:\n" + entry("c1"))
    (tmp_path / "clouds.yaml").write_text("clouds:\n" + entry("c9"))
    path.chmod(0)
    assert refused(["clouds"], tmp_path) == f"{path}: cannot read: Permission denied"


@pytest.fixture
def secure_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    path = tmp_path / "etc" / "secure.yaml"

    def write(content: str) -> Path:
        path.write_text(content)
        monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(path))
        return path

    return write


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("clouds: [a]\n", "clouds: expected a mapping, got list"),
        ("clouds:\n  c1: {auth: {password: x}\n", "not valid YAML: line 3"),
        ("clouds:\n  c1: {}\n  c1: {}\n", "line 3: duplicate key 'c1'"),
        ("clouds:\n  c9: {auth: {password: pw-x2}}\n", "clouds.c9: no such cloud in"),
        ("clouds:\n  c1: {e2etests: {flavor: g}}\n", "clouds.c1.e2etests: harness settings"),
        (
            "clouds:\n  c1: {auth: {password: another-pw}}\n",
            "clouds.c1: auth.password is also set in",
        ),
    ],
)
def test_a_mistake_in_secure_yaml_names_secure_yaml(
    clouds_yaml: Callable[[str], Path],
    secure_yaml: Callable[[str], Path],
    tmp_path: Path,
    content: str,
    problem: str,
) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    secure = secure_yaml(content)
    line = refused(["run"], tmp_path)
    assert line.startswith(f"{secure}: {problem}"), line
    assert "another-pw" not in line


def test_secure_yaml_adds_a_password_clouds_yaml_leaves_out(
    clouds_yaml: Callable[[str], Path], secure_yaml: Callable[[str], Path]
) -> None:
    clouds_yaml("clouds:\n" + entry("c1").replace("password: pw-trust-1,", ""))
    secure_yaml("clouds:\n  c1: {auth: {password: pw-from-secure}}\n")
    (target,) = config.load_targets(config_files=[])
    assert target.region_config.config["auth"]["password"] == "pw-from-secure"  # noqa: S105
    assert redact.redact("said pw-from-secure") == f"said {redact.MASK}"


def test_os_cloud_matching_nothing_names_os_cloud(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = clouds_yaml("clouds:\n" + entry("c1"))
    monkeypatch.setenv("OS_CLOUD", "nomatch")
    line = refused(["run"], tmp_path)
    assert line == f"{path}: OS_CLOUD 'nomatch' matches no cloud (known: c1)"


# -- item 16: the wrapper's own values ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("1999-12-31T23:59:59Z", "is before 2000-01-01"),
        ("0", "is before 2000-01-01"),
    ],
)
def test_an_implausible_drain_time_is_refused(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, value: str, problem: str
) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    line = refused(["after-drain", "--node", "n1", "--drained-at", value], tmp_path)
    assert line.startswith(f"argument --drained-at: {value!r} {problem}"), line


@pytest.mark.parametrize("where", ["ours", "pytest's"])
def test_a_bad_run_id_is_refused_before_anything_runs(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, where: str
) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    argv = ["run", "--run-id", "bad id!"] if where == "ours" else ["run", "--", "--run-id=bad id!"]
    with SlackStandIn() as standin:
        line = refused(
            [*argv[:1], "--slack-channel", "#ops", "--slack-api-url", standin.url, *argv[1:]],
            tmp_path,
            environ={"E2E_SLACK_TOKEN": "xoxb-trust"},
        )
        assert standin.posts() == []
    assert "argument --run-id: expected 1-40 letters, digits or dashes" in line
    assert "usage:" not in line


# -- item 17: Slack asked for but unusable --------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "environ", "problem"),
    [
        (["--slack-channel", "#ops"], {}, "--slack-channel #ops: no Slack token"),
        ([], {"E2E_SLACK_CHANNEL": "#ops"}, "$E2E_SLACK_CHANNEL #ops: no Slack token"),
        (
            ["--slack-channel", "#ops", "--slack-token-file", "/nonexistent/token"],
            {},
            "--slack-channel #ops: cannot read the Slack token file /nonexistent/token",
        ),
        (
            ["--slack-channel", "#ops"],
            {"E2E_SLACK_TOKEN_FILE": "/nonexistent/token"},
            "--slack-channel #ops: cannot read the Slack token file",
        ),
    ],
)
def test_slack_without_a_usable_token_is_refused_up_front(
    clouds_yaml: Callable[[str], Path],
    tmp_path: Path,
    argv: list[str],
    environ: dict[str, str],
    problem: str,
) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    assert refused(["run", *argv], tmp_path, environ=environ).startswith(problem)


def test_a_slack_dry_run_needs_no_token(clouds_yaml: Callable[[str], Path], tmp_path: Path) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    ran: list[list[str]] = []

    def fake_pytest(args: list[str], plugins: list[object]) -> int:
        ran.append(args)
        return 5  # no tests collected

    code = cli.main(
        ["run", "--slack-channel", "#ops", "--slack-dry-run", "--report-dir", str(tmp_path / "r")],
        out=io.StringIO(),
        err=io.StringIO(),
        environ={},
        pytest_main=fake_pytest,
    )
    assert ran, "pytest did not run"
    assert code != ExitStatus.USAGE_ERROR


def test_the_slack_token_is_registered_once_resolved(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    clouds_yaml("clouds:\n" + entry("c1"))
    token_file = tmp_path / "token"
    token_file.write_text("plain-slack-secret-77\n")
    seen: list[str] = []

    def fake_pytest(args: list[str], plugins: list[object]) -> int:
        seen.append(redact.redact("token is plain-slack-secret-77"))
        return 5

    cli.main(
        ["run", "--slack-channel", "#ops", "--slack-token-file", str(token_file),
         "--slack-api-url", "http://127.0.0.1:9", "--report-dir", str(tmp_path / "r")],
        out=io.StringIO(), err=io.StringIO(), environ={}, pytest_main=fake_pytest,
    )  # fmt: skip
    assert seen == [f"token is {redact.MASK}"]


# -- item 19: every secret the selected clouds hold is masked once loaded -------------------


def test_load_targets_registers_every_secret_of_the_selected_clouds(
    clouds_yaml: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rabbit-pw").write_text("rabbit-pw-42\n")
    url = "rabbit://nova:t%40url-pw@10.0.0.5:5672,nova:t%40url-pw@10.0.0.6:5672/"
    monkeypatch.setenv("E2E_TRANSPORT", url)
    clouds_yaml(
        textwrap.dedent(
            f"""\
            clouds:
              keystone:
                auth: {{auth_url: "http://admin:in-url-pw@127.0.0.1:9/v3", username: u,
                        password: keystone-pw-1, project_name: p}}
                e2etests:
                  flavor: f
                  image: i
                  mq:
                    rabbitmq:
                      url: http://127.0.0.1:15672
                      username: m
                      password_file: {tmp_path / "rabbit-pw"}
                    transport_url_env: E2E_TRANSPORT
              appcred:
                auth_type: v3applicationcredential
                auth: {{auth_url: "http://127.0.0.1:9/v3", application_credential_id: abc,
                        application_credential_secret: app-secret-2}}
                e2etests: {{flavor: f, image: i}}
              token:
                auth_type: v3token
                auth: {{auth_url: "http://127.0.0.1:9/v3", token: keystone-token-3,
                        project_name: p, project_domain_name: Default}}
                e2etests: {{flavor: f, image: i}}
              other:
                auth: {{auth_url: "http://127.0.0.1:9/v3", username: u,
                        password: unselected-pw-4, project_name: p}}
                e2etests: {{flavor: f, image: i}}
            """
        )
    )
    assert redact.known_secrets() == frozenset()
    config.load_targets(["keystone", "appcred", "token"])
    for secret in [
        "keystone-pw-1", "in-url-pw", "app-secret-2", "keystone-token-3", "rabbit-pw-42",
        url, "t%40url-pw", "t@url-pw",
    ]:  # fmt: skip
        assert redact.redact(f"quoted: {secret} .") == f"quoted: {redact.MASK} .", secret
    assert "unselected-pw-4" not in redact.known_secrets()


def test_an_unreadable_mq_secret_is_not_a_load_error(
    clouds_yaml: Callable[[str], Path], tmp_path: Path
) -> None:
    rabbit = f"rabbitmq: {{url: 'http://h', username: m, password_file: {tmp_path / 'nope'}}}"
    clouds_yaml("clouds:\n" + entry("c1", f"mq: {{{rabbit}}}"))
    (target,) = config.load_targets()
    assert target.settings.mq is not None
    assert target.settings.mq.rabbitmq is not None
    with pytest.raises(ConfigError, match="cannot read"):
        target.settings.mq.rabbitmq.password.reveal()  # the check that needs it says so

"""Pure Slack builders: content, Block Kit limits at fleet scale, redaction, what to post when."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from e2etests import history, slack
from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def cloud(name: str, failed: bool, evidence: int = 3) -> CloudResult:
    mq = CheckResult(
        name,
        "mq.consumers",
        "failed" if failed else "passed",
        culprit="queue compute.mc-compute1 has 0 consumers" if failed else None,
        evidence=tuple(f"evidence line {i} of {name}" for i in range(evidence)) if failed else (),
    )
    checks = (CheckResult(name, "lifecycle", "passed", phases={"boot": 2.0}), mq)
    return CloudResult(name, cloud_verdict(checks), checks)


def fleet(passed: int, failed: int, **kw: int) -> RunResult:
    clouds = tuple(
        [cloud(f"cluster-{i:03d}", False) for i in range(passed)]
        + [cloud(f"broken-{i:03d}", True, **kw) for i in range(failed)]
    )
    status = ExitStatus.CHECK_FAILED if failed else ExitStatus.OK
    return RunResult(
        started_at=T0,
        duration=61.5,
        clouds=clouds,
        exit_status=status,
        node="worker-3",
        drained_at=T0,
    )


def texts(blocks: tuple[dict[str, Any], ...]) -> list[str]:
    found = []
    for block in blocks:
        if "text" in block:
            found.append(block["text"]["text"])
        for element in block.get("elements", []):
            found.append(element["text"])
    return found


def assert_within_block_kit_limits(message: slack.SlackMessage) -> None:
    assert 1 <= len(message.blocks) <= 50
    for block in message.blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
    assert len(message.text) <= 3000
    json.dumps(message.as_dict())  # serialisable as sent


def test_summary_names_verdict_node_counts_and_culprits() -> None:
    message = slack.build_summary(fleet(2, 1))
    body = "\n".join(texts(message.blocks))
    assert message.blocks[0]["text"]["text"] == ":red_circle: e2etests RED: 1 of 3 clouds failed"
    assert "node *worker-3*" in body
    assert "took 61.5 s" in body
    assert "• *broken-000* — mq.consumers: queue compute.mc-compute1 has 0 consumers" in body
    assert "*Passed (2):* `cluster-000`, `cluster-001`" in body
    assert "broken-000" in message.text  # the notification says what broke, too


def test_one_reply_per_failing_cloud_with_its_evidence() -> None:
    payload = slack.build_payload(fleet(5, 2))
    assert len(payload.replies) == 2
    first = "\n".join(texts(payload.replies[0].blocks))
    assert "*broken-000*" in first
    assert "evidence line 2 of broken-000" in first
    assert "broken-001" not in first


@pytest.mark.parametrize(("passed", "failed"), [(250, 0), (200, 10), (0, 220), (120, 120)])
def test_block_kit_limits_hold_at_fleet_scale(passed: int, failed: int) -> None:
    payload = slack.build_payload(fleet(passed, failed, evidence=40))
    assert_within_block_kit_limits(payload.summary)
    for reply in payload.replies:
        assert_within_block_kit_limits(reply)
    # at most 20 replies plus one that lists the rest
    assert len(payload.replies) == min(failed, 20) + (failed > 20)
    body = "\n".join(texts(payload.summary.blocks))
    if passed > 100:
        assert "more" in body  # the passed list was cut with "and N more"
    if failed > 40:
        assert f"and {failed - 40} more failing clouds" in body


def test_harness_errors_past_ten_are_counted_not_dropped() -> None:
    errors = tuple(f"cannot collect suite_{i}.py: ImportError" for i in range(15))
    run = dataclasses.replace(
        fleet(0, 0), exit_status=ExitStatus.HARNESS_ERROR, harness_errors=errors
    )
    shown = "\n".join(texts(slack.build_summary(run).blocks))
    assert "suite_9.py" in shown
    assert "suite_10.py" not in shown
    assert "… and 5 more" in shown


def test_the_overflow_reply_counts_everything_it_leaves_out() -> None:
    payload = slack.build_payload(fleet(0, 220), max_replies=20)
    overflow = "\n".join(texts(payload.replies[-1].blocks))
    assert overflow.startswith("*200 more failing clouds*")
    assert "broken-020" in overflow


def test_long_evidence_is_cut_with_a_count() -> None:
    long = CheckResult(
        "a", "lifecycle", "failed", culprit="x", evidence=tuple("y" * 400 for _ in range(40))
    )
    reply = slack.build_reply(CloudResult("a", "failed", (long,)))
    assert_within_block_kit_limits(reply)
    assert "more lines" in reply.blocks[1]["text"]["text"]


def test_pack_lines_says_how_many_lines_it_dropped() -> None:
    lines = [f"line {i:04d} " + "x" * 90 for i in range(500)]
    blocks = slack.pack_lines("title", lines, max_blocks=2, more=lambda n: f"… and {n} more")
    assert len(blocks) == 2
    shown = sum(t.count("line ") for t in texts(tuple(blocks)))
    last = blocks[-1]["text"]["text"].splitlines()[-1]
    assert last == f"… and {500 - shown} more"


def test_no_secret_leaves_in_any_payload() -> None:
    leaky = CheckResult(
        "a",
        "mq.rpc_ping",
        "failed",
        culprit="MessagingTimeout on rabbit://nova:hunter2@10.0.0.5:5672/",
        evidence=("password=hunter2", "token xoxb-1-2-secret", "https://u:hunter2@keystone/v3"),
    )
    run = RunResult(
        started_at=T0,
        duration=1.0,
        clouds=(CloudResult("a", "failed", (leaky,)),),
        exit_status=ExitStatus.CHECK_FAILED,
        node="n1",
    )
    payload = slack.build_payload(run)
    dumped = json.dumps([m.as_dict() for m in (payload.summary, *payload.replies)])
    for secret in ("hunter2", "xoxb-1-2", "nova:"):
        assert secret not in dumped


def test_mrkdwn_control_characters_are_escaped() -> None:
    odd = CheckResult("a", "lifecycle", "failed", culprit="<!channel> & <http://x|click>")
    message = slack.build_summary(
        RunResult(T0, 1.0, (CloudResult("a", "failed", (odd,)),), ExitStatus.CHECK_FAILED)
    )
    body = "\n".join(texts(message.blocks))
    assert "<!channel>" not in body
    assert "&lt;!channel&gt; &amp; &lt;http://x|click&gt;" in body


def options(**kw: Any) -> slack.SlackOptions:
    return slack.SlackOptions(channel="#ops", **kw)


def test_plan_red_run_posts_summary_and_thread() -> None:
    [payload] = slack.plan(fleet(1, 1), options(only_on_failure=True), None)
    assert len(payload.replies) == 1


def test_plan_green_only_on_failure_posts_nothing_unless_it_recovers() -> None:
    green = fleet(3, 0)
    assert slack.plan(green, options(only_on_failure=True), None) == []
    was_red = history.PreviousRun("failed", "2026-01-01T00:00:00Z", ("broken-000",))
    [notice] = slack.plan(green, options(only_on_failure=True), was_red)
    assert notice.replies == ()
    assert "RECOVERED" in notice.summary.text
    assert "broken-000" in notice.summary.text
    no_notice = options(only_on_failure=True, recovery_notice=False)
    assert slack.plan(green, no_notice, was_red) == []


def test_plan_green_without_only_on_failure_marks_the_recovery_in_the_summary() -> None:
    was_red = history.PreviousRun("failed")
    [payload] = slack.plan(fleet(3, 0), options(), was_red)
    assert "RECOVERED" in payload.summary.blocks[0]["text"]["text"]


def test_token_comes_from_env_then_file(tmp_path: Path) -> None:
    assert slack.resolve_token({"E2E_SLACK_TOKEN": " xoxb-env \n"}) == "xoxb-env"
    token_file = tmp_path / "token"
    token_file.write_text("xoxb-file\n")
    assert slack.resolve_token({}, token_file) == "xoxb-file"
    assert slack.resolve_token({"E2E_SLACK_TOKEN_FILE": str(token_file)}) == "xoxb-file"


@pytest.mark.parametrize(
    ("environ", "file_text", "message"),
    [
        ({}, None, "no Slack token: set E2E_SLACK_TOKEN or pass --slack-token-file"),
        ({"E2E_SLACK_TOKEN_FILE": "/nonexistent/token"}, None, "cannot read the Slack token file"),
        ({}, "  \n", "is empty"),
    ],
)
def test_token_errors_are_one_line(
    tmp_path: Path, environ: dict[str, str], file_text: str | None, message: str
) -> None:
    token_file = None
    if file_text is not None:
        token_file = tmp_path / "token"
        token_file.write_text(file_text)
    with pytest.raises(slack.SlackConfigError) as info:
        slack.resolve_token(environ, token_file)
    assert message in str(info.value)
    assert "\n" not in str(info.value)

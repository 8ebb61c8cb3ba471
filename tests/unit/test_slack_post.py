"""Posting through a real WebClient to the local Slack stand-in: threads, 429, 500, silence,
and every broken answer a proxy can give: none of them escapes ``publish``."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tenacity
from slack_sdk import WebClient

from e2etests import retry, slack
from e2etests.errors import ExitStatus
from e2etests.results import CheckResult, CloudResult, RunResult, cloud_verdict
from tests.slack_standin import (
    Behaviour,
    Hang,
    Ok,
    RateLimited,
    Raw,
    Reset,
    ServerError,
    SlackStandIn,
    Slow,
    Truncated,
)

T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
TOKEN = "xoxb-test-token"  # noqa: S105 (a fake token for the stand-in)


def no_sleep(_: float) -> None:
    pass


def quick_policy() -> tenacity.Retrying:
    return retry.slack_call(attempts=3, budget=10, sleep=no_sleep)


def run_with(failed: int, passed: int = 2) -> RunResult:
    clouds = []
    for i in range(passed + failed):
        bad = i >= passed
        check = CheckResult(
            f"c{i}",
            "mq.consumers" if bad else "lifecycle",  # green needs a check that booted
            "failed" if bad else "passed",
            culprit="queue compute.mc-compute1 has 0 consumers" if bad else None,
            evidence=("compute.mc-compute1: 0 consumers",) if bad else (),
        )
        clouds.append(CloudResult(f"c{i}", cloud_verdict([check]), (check,)))
    status = ExitStatus.CHECK_FAILED if failed else ExitStatus.OK
    return RunResult(T0, 12.0, tuple(clouds), status, node="worker-3")


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


def poster(standin: SlackStandIn, timeout: float = 5) -> slack.SlackPoster:
    client = slack.make_client(TOKEN, base_url=standin.url, timeout=timeout)
    return slack.SlackPoster(client, "#ops", policy=quick_policy)


def test_summary_then_one_threaded_reply_per_failing_cloud(standin: SlackStandIn) -> None:
    ts = poster(standin).post(slack.build_payload(run_with(failed=2)))
    summary, *replies = standin.posts()
    assert summary.thread_ts is None
    assert summary.body["channel"] == "#ops"
    assert summary.headers["authorization"] == f"Bearer {TOKEN}"
    assert "2 of 4 clouds failed" in json.dumps(summary.body["blocks"])
    assert [r.thread_ts for r in replies] == [ts, ts]
    assert ["c2" in json.dumps(replies[0].body), "c3" in json.dumps(replies[1].body)] == [
        True,
        True,
    ]


def test_429_is_retried_after_retry_after(standin: SlackStandIn) -> None:
    standin.enqueue(RateLimited(retry_after=1))
    poster(standin).post_message(slack.build_summary(run_with(failed=0)))
    limited, retried = standin.calls
    assert (limited.answered, retried.answered) == (429, 200)
    assert retried.at - limited.at >= 1.0


def test_a_429_asking_for_too_long_a_wait_fails_fast(standin: SlackStandIn) -> None:
    standin.enqueue(RateLimited(retry_after=3600))
    started = time.monotonic()
    with pytest.raises(slack.SlackPostError, match=r"HTTP 429 from chat\.postMessage"):
        poster(standin).post_message(slack.build_summary(run_with(failed=0)))
    assert time.monotonic() - started < 5


def test_500_is_retried_a_bounded_number_of_times(standin: SlackStandIn) -> None:
    standin.enqueue(ServerError(500), ServerError(503))
    poster(standin).post_message(slack.build_summary(run_with(failed=0)))
    assert [c.answered for c in standin.calls] == [500, 503, 200]


def test_persistent_500_keeps_what_was_not_posted(standin: SlackStandIn) -> None:
    payload = slack.build_payload(run_with(failed=2))
    # the summary and the first reply go through, then every attempt at the second fails
    standin.enqueue(Ok(), Ok(), ServerError(500), ServerError(500), ServerError(500))
    with pytest.raises(slack.SlackPostError) as info:
        poster(standin).post(payload)
    assert str(info.value) == "HTTP 500 from chat.postMessage (internal_error)"
    assert info.value.unsent == payload.replies[1:]
    assert info.value.thread_ts == "1700000000.000001"  # the stand-in's first ts: the summary
    assert [c.answered for c in standin.calls] == [200, 200, 500, 500, 500]


def test_no_answer_is_bounded_by_the_client_timeout(standin: SlackStandIn) -> None:
    standin.enqueue(Hang(30), Hang(30), Hang(30))
    started = time.monotonic()
    with pytest.raises(slack.SlackPostError, match="timed out"):
        poster(standin, timeout=1).post_message(slack.build_summary(run_with(failed=0)))
    assert time.monotonic() - started < 10
    assert len(standin.calls) == 3


def test_publish_saves_the_message_when_slack_answers_500(
    standin: SlackStandIn, tmp_path: Path
) -> None:
    standin.enqueue(*[ServerError(500)] * 3)
    out, err = io.StringIO(), io.StringIO()
    options = slack.SlackOptions(
        channel="#ops", report_dir=tmp_path, base_url=standin.url, budget=5
    )
    ok = slack.publish(
        run_with(failed=1), options, out=out, err=err, environ={"E2E_SLACK_TOKEN": TOKEN}
    )
    assert ok is False
    line = err.getvalue()
    assert line.count("\n") == 1
    assert "HTTP 500" in line
    saved = Path(line.rsplit(" ", 1)[-1].strip())
    doc = json.loads(saved.read_text())
    assert doc["channel"] == "#ops"
    assert len(doc["messages"]) == 2
    assert TOKEN not in saved.read_text()


def test_publish_without_token_saves_the_message(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    options = slack.SlackOptions(channel="#ops", report_dir=tmp_path)
    assert slack.publish(run_with(failed=1), options, out=out, err=err, environ={}) is False
    assert err.getvalue().startswith("slack: no Slack token: set E2E_SLACK_TOKEN")
    assert list(tmp_path.glob("slack-unsent-*.json"))


def test_dry_run_prints_blocks_and_posts_nothing(standin: SlackStandIn, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    options = slack.SlackOptions(
        channel="#ops", dry_run=True, report_dir=tmp_path, base_url=standin.url
    )
    assert slack.publish(run_with(failed=1), options, out=out, err=err, environ={}) is True
    [doc] = json.loads((tmp_path / "slack-dry-run.json").read_text())
    assert doc["summary"]["blocks"][0]["type"] == "header"
    assert len(doc["thread"]) == 1
    # On screen: a few lines a person reads, the file's path, no JSON.
    lines = out.getvalue().splitlines()
    assert lines[0] == f"slack (dry run) to #ops, blocks in {tmp_path / 'slack-dry-run.json'}:"
    assert lines[1] == "  " + doc["summary"]["blocks"][0]["text"]["text"]
    assert any(line.startswith("    └ ") for line in lines)
    assert "{" not in out.getvalue()
    assert len(lines) <= 8
    assert standin.calls == []
    assert not (tmp_path / "slack-state.json").exists()  # a dry run changes nothing


def test_recovery_notice_after_a_red_run(standin: SlackStandIn, tmp_path: Path) -> None:
    env = {"E2E_SLACK_TOKEN": TOKEN}
    options = slack.SlackOptions(
        channel="#ops", only_on_failure=True, report_dir=tmp_path, base_url=standin.url
    )
    out, err = io.StringIO(), io.StringIO()
    slack.publish(run_with(failed=1), options, out=out, err=err, environ=env)
    slack.publish(run_with(failed=0), options, out=out, err=err, environ=env)
    slack.publish(run_with(failed=0), options, out=out, err=err, environ=env)
    texts = [c.body["text"] for c in standin.posts() if c.thread_ts is None]
    assert len(texts) == 2
    assert texts[1].startswith("RECOVERED")
    assert err.getvalue() == ""


# Each answer once per attempt: what retry.slack_call gives up on is what publish must survive.
BROKEN: dict[str, Behaviour] = {
    # A 200 whose JSON stops halfway: slack-sdk lets json.loads's JSONDecodeError through.
    "truncated JSON": Raw(200, b'{"ok": true, "ts": "17', "application/json; charset=utf-8"),
    # Shorter than its Content-Length: http.client.IncompleteRead, not an OSError.
    "short body": Truncated(),
    "non-JSON 200": Raw(200, b"upstream says hello", "text/plain"),
    "HTML 502": Raw(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    "reset mid-answer": Reset(),
    "slower than the timeout": Slow(5),
}


def publish_with(
    standin: SlackStandIn, tmp_path: Path, run: RunResult, timeout: float = 5
) -> tuple[bool, str]:
    out, err = io.StringIO(), io.StringIO()
    options = slack.SlackOptions(
        channel="#ops", report_dir=tmp_path, base_url=standin.url, budget=5, timeout=timeout
    )
    ok = slack.publish(run, options, out=out, err=err, environ={"E2E_SLACK_TOKEN": TOKEN})
    return ok, err.getvalue()


@pytest.mark.parametrize("answer", BROKEN.values(), ids=BROKEN.keys())
def test_no_answer_from_slack_escapes_publish(
    standin: SlackStandIn, tmp_path: Path, answer: Behaviour
) -> None:
    standin.enqueue(*[answer] * 3)
    started = time.monotonic()
    ok, err = publish_with(standin, tmp_path, run_with(failed=1), timeout=1)
    # bounded: three attempts of at most the 1 s timeout, short pauses between them
    assert time.monotonic() - started < 8
    assert ok is False
    assert err.count("\n") == 1
    assert err.startswith("slack: cannot post to #ops: ")
    assert TOKEN not in err
    saved = Path(err.rsplit(" ", 1)[-1].strip())
    doc = json.loads(saved.read_text())
    assert len(doc["messages"]) == 2  # the summary failed, so its reply was never tried
    assert doc["reason"] in err
    # the state is written all the same: the next run's recovery notice depends on it
    assert json.loads((tmp_path / "slack-state.json").read_text())["verdict"] == "failed"


def test_a_broken_answer_to_a_reply_keeps_the_rest_of_the_thread(
    standin: SlackStandIn, tmp_path: Path
) -> None:
    standin.enqueue(Ok(), Truncated())
    ok, err = publish_with(standin, tmp_path, run_with(failed=2))
    assert ok is False
    assert "unreadable answer from Slack (IncompleteRead); the message may be posted" in err
    doc = json.loads(Path(err.rsplit(" ", 1)[-1].strip()).read_text())
    assert doc["thread_ts"] == "1700000000.000001"
    assert len(doc["messages"]) == 2  # the reply cut short and the one after it


def test_a_slow_answer_within_the_timeout_is_waited_for(
    standin: SlackStandIn, tmp_path: Path
) -> None:
    standin.enqueue(Slow(0.5))
    ok, err = publish_with(standin, tmp_path, run_with(failed=0))
    assert (ok, err) == (True, "")
    assert len(standin.posts()) == 1


@pytest.mark.parametrize(
    "failure",
    [ValueError("Expecting value: line 1"), RuntimeError("boom"), KeyError("ts")],
    ids=type,
)
def test_any_exception_of_the_client_is_a_failed_post(tmp_path: Path, failure: Exception) -> None:
    class Broken:
        def chat_postMessage(self, **_: object) -> object:
            raise failure

    out, err = io.StringIO(), io.StringIO()
    options = slack.SlackOptions(channel="#ops", report_dir=tmp_path)
    ok = slack.publish(
        run_with(failed=1),
        options,
        out=out,
        err=err,
        environ={"E2E_SLACK_TOKEN": TOKEN},
        client_factory=lambda _: Broken(),  # type: ignore[arg-type,return-value]
    )
    assert ok is False
    assert err.getvalue().count("\n") == 1
    assert list(tmp_path.glob("slack-unsent-*.json"))
    assert (tmp_path / "slack-state.json").exists()


def test_a_client_that_cannot_be_made_still_leaves_the_message(tmp_path: Path) -> None:
    def factory(_: str) -> WebClient:
        raise TypeError("bad base_url")

    err = io.StringIO()
    options = slack.SlackOptions(channel="#ops", report_dir=tmp_path)
    ok = slack.publish(
        run_with(failed=1),
        options,
        out=io.StringIO(),
        err=err,
        environ={"E2E_SLACK_TOKEN": TOKEN},
        client_factory=factory,
    )
    assert ok is False
    assert "cannot make a Slack client: the Slack client failed: TypeError: bad base_url" in (
        err.getvalue()
    )
    assert list(tmp_path.glob("slack-unsent-*.json"))


def test_a_message_that_cannot_be_saved_is_printed_whole(
    standin: SlackStandIn, tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "reports"
    not_a_dir.write_text("")
    standin.enqueue(*[ServerError(500)] * 3)
    err = io.StringIO()
    options = slack.SlackOptions(
        channel="#ops", report_dir=not_a_dir, base_url=standin.url, budget=5
    )
    ok = slack.publish(
        run_with(failed=1), options, out=io.StringIO(), err=err, environ={"E2E_SLACK_TOKEN": TOKEN}
    )
    assert ok is False
    first, second = err.getvalue().splitlines()  # the message, then the state file's failure
    assert "cannot save it in" in first
    printed = json.loads(first.split("so here it is: ", 1)[1])
    assert len(printed["messages"]) == 2
    assert second.startswith("slack: cannot write ")


def test_describe_error_is_total_and_never_echoes_a_body() -> None:
    body = '{"ok": true, "token": "xoxb-leak-me"'
    try:
        json.loads(body)
    except ValueError as exc:
        decode_error = exc
    assert "xoxb" not in slack.describe_error(decode_error)
    assert slack.describe_error(KeyError("ts")) == "the Slack client failed: KeyError: 'ts'"
    assert "hunter2" not in slack.describe_error(RuntimeError("password=hunter2"))

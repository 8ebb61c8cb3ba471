"""The watcher's Slack messages: what each transition says, the fleet brake, and the outbox
that keeps a message through a Slack outage (posted to the local Slack stand-in)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tenacity

from e2etests import retry, slack
from e2etests.slack.blocks import SlackPayload
from e2etests.watch.alerts import AlertPolicy, payloads_for
from e2etests.watch.notify import SlackNotifier
from e2etests.watch.state import Event, EventKind
from tests.slack_standin import ServerError, SlackStandIn

TOKEN = "xoxb-watch-notify"  # noqa: S105 (a fake token for the stand-in)


def red(cloud: str, at: float = 1.0, check: str = "mq.consumers") -> Event:
    return Event(
        EventKind.TURNED_RED,
        cloud,
        check,
        at=at,
        culprit=f"queue compute.{cloud}-host has 0 consumers",
        evidence=(f"compute.{cloud}-host: 0 consumers, 2 ready",),
    )


def recovered(cloud: str, at: float = 2.0) -> Event:
    return Event(EventKind.RECOVERED, cloud, "mq.consumers", at=at, seconds_red=125.0)


def text_of(payload: SlackPayload) -> str:
    return json.dumps([payload.summary.as_dict(), *(r.as_dict() for r in payload.replies)])


def test_a_red_check_is_one_message_culprit_first_evidence_in_the_thread() -> None:
    [payload] = payloads_for([red("cluster42")], AlertPolicy(clouds=10))
    head = payload.summary.blocks[0]["text"]["text"]
    assert "RED cluster42 · mq.consumers" in head
    assert "queue compute.cluster42-host has 0 consumers" in payload.summary.text
    [reply] = payload.replies
    assert "0 consumers, 2 ready" in json.dumps(reply.as_dict())


def test_a_recovery_says_how_long_it_was_red() -> None:
    [payload] = payloads_for([recovered("cluster42")], AlertPolicy(clouds=10))
    assert "recovered after 2 min 5 s red" in payload.summary.text
    assert payload.replies == ()


def test_could_not_measure_is_announced_with_its_rounds() -> None:
    event = Event(
        EventKind.COULD_NOT_MEASURE, "c1", "mq.rpc_ping", at=1, culprit="keystone: 503", rounds=3
    )
    [payload] = payloads_for([event], AlertPolicy(clouds=10))
    assert "could not be measured for 3 rounds: keystone: 503" in payload.summary.text


def test_many_clouds_red_in_one_batch_is_one_brake_message() -> None:
    events = [red(f"c{i:02d}", at=i) for i in range(8)] + [recovered("c99")]
    payloads = payloads_for(events, AlertPolicy(clouds=20, brake=0.3))
    assert len(payloads) == 2  # the brake, then the one recovery
    brake = text_of(payloads[0])
    assert "8 of 20 clouds RED at once" in brake
    assert "Suspect the harness or its network" in brake
    assert "c00" in brake and "c07" in brake  # noqa: PT018 (one message names them all)
    assert "recovered" in payloads[1].summary.text


def test_a_few_reds_are_one_message_each() -> None:
    events = [red("c1"), red("c2", check="mq.rpc_ping"), red("c3")]
    assert len(payloads_for(events, AlertPolicy(clouds=20, brake=0.3))) == 3
    # Three of a fleet of three is all of it, but the brake asks for more than its share.
    assert len(payloads_for(events, AlertPolicy(clouds=3, brake=0.3))) == 1


def quick_policy() -> tenacity.Retrying:
    return retry.slack_call(attempts=2, budget=5, sleep=lambda _: None)


@pytest.fixture
def standin() -> Iterator[SlackStandIn]:
    with SlackStandIn() as server:
        yield server


def notifier(
    standin: SlackStandIn, tmp_path: Path, logs: list[str], clouds: int = 10
) -> SlackNotifier:
    client = slack.make_client(TOKEN, base_url=standin.url, timeout=5)
    poster = slack.SlackPoster(client, "#ops", policy=quick_policy)
    return SlackNotifier(
        poster, AlertPolicy(clouds=clouds), log=logs.append, save_dir=tmp_path, batch=0,
        retry_every=0.2,
    )  # fmt: skip


def wait_for(condition: object, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_each_transition_is_posted_once_in_order(standin: SlackStandIn, tmp_path: Path) -> None:
    logs: list[str] = []
    notify = notifier(standin, tmp_path, logs)
    notify.start()
    notify(red("cluster42"))
    wait_for(lambda: len(standin.posts()) == 2)
    notify(recovered("cluster42", at=9))
    wait_for(lambda: len(standin.posts()) == 3)
    assert notify.close() is None
    summary, reply, recovery = standin.posts()
    assert reply.thread_ts is not None
    assert summary.thread_ts is None
    assert "RED cluster42" in json.dumps(summary.body)
    assert "recovered after" in json.dumps(recovery.body)
    assert logs == []


def test_a_slack_outage_delays_messages_and_loses_none(
    standin: SlackStandIn, tmp_path: Path
) -> None:
    standin.enqueue(*[ServerError(500)] * 4)  # two tries of each of two rounds fail
    logs: list[str] = []
    notify = notifier(standin, tmp_path, logs)
    notify.start()
    notify(red("cluster42"))
    notify(recovered("cluster42", at=9))
    wait_for(lambda: len(standin.posts()) == 3)
    notify.close()
    texts = [json.dumps(c.body) for c in standin.posts()]
    assert "RED cluster42" in texts[0]
    assert "recovered after" in texts[2]
    assert len([x for x in logs if x.startswith("slack: cannot post")]) == 1


def test_what_slack_never_took_is_saved_at_close(standin: SlackStandIn, tmp_path: Path) -> None:
    standin.enqueue(*[ServerError(500)] * 1000)
    logs: list[str] = []
    notify = notifier(standin, tmp_path, logs)
    notify.start()
    notify(red("cluster42"))
    wait_for(lambda: any(x.startswith("slack: cannot post") for x in logs))
    path = notify.close(wait=5)
    assert path is not None
    saved = json.loads(path.read_text())
    assert "RED cluster42" in json.dumps(saved["messages"])
    assert logs[-1] == f"slack: 1 message(s) not posted, kept in {path}"
    assert TOKEN not in path.read_text()


def test_dry_run_logs_what_would_be_posted(tmp_path: Path) -> None:
    logs: list[str] = []
    notify = SlackNotifier(None, AlertPolicy(clouds=2), log=logs.append, save_dir=tmp_path, batch=0)
    notify.start()
    notify(red("cluster42"))
    wait_for(lambda: bool(logs))
    notify.close()
    assert logs[0].startswith("slack (dry run): ")
    assert "RED cluster42" in logs[0]

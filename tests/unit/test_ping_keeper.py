"""When a transport kept open between a watcher's rounds may be used, and what its sweeps prove."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from e2etests.mq import pingkeeper
from e2etests.mq.pingkeeper import MAX_AGE, NO_ANSWER, START_MARGIN, Keeper, judged, reusable

OK = {"ok": True, "seconds": 0.01, "error": None}
MISSED = {"ok": False, "seconds": 5.0, "error": "MessagingTimeout"}


def test_a_transport_made_after_the_broker_started_is_reused_until_it_is_old() -> None:
    assert reusable(made_at=1000.0, broker_started=500.0, now=1010.0)
    assert reusable(made_at=1000.0, broker_started=1000.0 - START_MARGIN, now=1010.0)
    assert not reusable(made_at=1000.0, broker_started=500.0, now=1000.0 + MAX_AGE)


def test_a_transport_older_than_the_brokers_start_or_without_one_seen_is_not_reused() -> None:
    # Made before the restart, or so soon after it that the broker may still have been starting.
    assert not reusable(made_at=1000.0, broker_started=1200.0, now=1300.0)
    assert not reusable(made_at=1000.0, broker_started=999.9, now=1010.0)
    # A user without the monitoring tag cannot see the broker's start: a restart would go unseen.
    assert not reusable(made_at=1000.0, broker_started=None, now=1010.0)


def answer(*results: dict[str, Any]) -> dict[str, Any]:
    return {"results": list(results)}


def test_a_clean_sweep_keeps_its_transport_reused_or_not() -> None:
    for reused in (False, True):
        assert judged(answer(OK, OK), reused=reused) == (answer(OK, OK), False)


def test_a_failed_ping_drops_the_transport_and_stands_when_another_server_answered() -> None:
    # The replies of the others came back on it: the transport works, the miss is the server's.
    for reused in (False, True):
        assert judged(answer(OK, MISSED), reused=reused) == (answer(OK, MISSED), True)


def test_no_answer_at_all_on_a_reused_transport_proves_nothing_about_the_servers() -> None:
    said, drop = judged(answer(MISSED, MISSED), reused=True)
    assert drop
    assert said["transient"] is True
    assert said["error"].startswith(f"RPC transport: {NO_ANSWER} (2 pinged)")
    assert "results" not in said


def test_no_answer_on_a_fresh_transport_fails_every_server() -> None:
    assert judged(answer(MISSED), reused=False) == (answer(MISSED), True)


def test_a_transport_error_drops_the_transport() -> None:
    error = {"error": "RPC transport: the broker is unreachable", "transient": True}
    assert judged(error, reused=True) == (error, True)


# --- the keeper's bookkeeping: one transport per URL, shared, closed once nobody uses it ---


class Transport:
    """Stands in for an oslo.messaging transport: the keeper only makes and closes them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.closed = threading.Event()

    def cleanup(self) -> None:
        self.closed.set()


class Factory:
    def __init__(self) -> None:
        self.made: list[Transport] = []

    def get_rpc_transport(self, conf: object, url: str) -> Transport:
        self.made.append(Transport(url))
        return self.made[-1]


def keeper() -> tuple[Keeper, Factory]:
    factory = Factory()
    return Keeper(factory, conf=None), factory


def test_one_transport_per_url_is_shared_and_made_again_after_a_broker_restart() -> None:
    kept, factory = keeper()
    started = time.time() - 60
    first, reused = kept._take("rabbit://a", started)
    assert not reused
    kept._give_back("rabbit://a", first, drop=False)
    again, reused = kept._take("rabbit://a", started)
    assert reused
    assert again is first
    kept._give_back("rabbit://a", again, drop=False)
    # The broker started after the transport was made: a fresh one, and the old one closed.
    fresh, reused = kept._take("rabbit://a", time.time())
    assert not reused
    assert fresh is not first
    assert factory.made[0].closed.wait(5)


def test_a_dropped_transport_is_closed_only_once_its_last_sweep_is_done() -> None:
    kept, factory = keeper()
    started = time.time() - 60
    one, _ = kept._take("rabbit://a", started)
    kept._give_back("rabbit://a", one, drop=False)
    one, _ = kept._take("rabbit://a", started)
    two, reused = kept._take("rabbit://a", started)
    assert reused
    assert two is one
    kept._give_back("rabbit://a", one, drop=True)  # a server missed in the first sweep
    assert not factory.made[0].closed.wait(0.2)  # the second sweep still uses it
    assert kept._take("rabbit://a", started)[1] is False  # but nobody new gets it
    kept._give_back("rabbit://a", two, drop=False)
    assert factory.made[0].closed.wait(5)


def test_urls_beyond_the_cap_get_a_transport_per_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pingkeeper, "MAX_KEPT", 2)
    kept, factory = keeper()
    started = time.time() - 60
    for url in ("rabbit://a", "rabbit://b", "rabbit://c"):
        taken, _ = kept._take(url, started)
        kept._give_back(url, taken, drop=False)
    assert sorted(kept.kept) == ["rabbit://a", "rabbit://b"]
    assert factory.made[2].closed.wait(5)
    assert not factory.made[0].closed.is_set()


def test_the_keepers_reply_listeners_wait_a_second_after_a_reply_not_a_millisecond() -> None:
    # In a child: the setting is oslo's process-wide module constant.
    pytest.importorskip("oslo_messaging")
    code = (
        "import io, sys\n"
        "from e2etests.mq import pingkeeper\n"
        "pingkeeper.serve(io.StringIO(''), io.StringIO())\n"
        "from oslo_messaging._drivers import amqpdriver\n"
        "print(amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MIN)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.split()[-1]) == pingkeeper.REPLY_POLL_MIN == 1.0

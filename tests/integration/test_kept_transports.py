"""The watcher's RPC ping on transports kept open, against the real broker and its faults.

A kept transport must save work only where it cannot lie: reused while the broker has not
restarted and every server answers; dropped after a miss, so the next look is fresh; never
reused across a broker restart or when the broker's start cannot be seen.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest

from e2etests import config
from e2etests.checks.mq import probe_for
from e2etests.cloud import Cloud
from e2etests.mq.pingserver import Pinger
from e2etests.mq.probe import MQProbe
from e2etests.mq.rpcping import PingTarget
from tests.conftest import Minicloud
from tests.integration.test_mq_faults import nova_consuming

pytestmark = pytest.mark.integration


@dataclasses.dataclass
class Sweeps:
    pinger: Pinger
    url: str
    targets: list[PingTarget]

    def __call__(self, broker_started: float | None) -> dict[str, Any]:
        request = {
            "url": self.url,
            "timeout": 5.0,
            "targets": [dataclasses.asdict(t) for t in self.targets],
            "broker_started": broker_started,
        }
        return self.pinger.ask(request, timeout=60, keep=True)

    def missed(self, answer: dict[str, Any]) -> set[str]:
        assert "error" not in answer, answer
        results = answer["results"]
        return {
            f"{t.topic}.{t.host}" for t, r in zip(self.targets, results, strict=True) if not r["ok"]
        }


@pytest.fixture
def probe(minicloud: Minicloud, monkeypatch: pytest.MonkeyPatch) -> MQProbe:
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(minicloud.clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    (target,) = config.load_targets(["minicloud-a"])
    made = probe_for(Cloud(target), None)
    assert made is not None
    return made


@pytest.fixture
def sweeps(probe: MQProbe) -> Iterator[Sweeps]:
    assert probe.settings.transport_url is not None
    pinger = Pinger()
    try:
        yield Sweeps(
            pinger, probe.settings.transport_url.reveal(), probe.ping_targets(probe.services())
        )
    finally:
        pinger.close()


def broker_start(probe: MQProbe) -> float:
    started = probe.broker_started()
    assert started is not None, "the test cloud's broker user sees the nodes"
    return started.timestamp()


def wait_consuming(minicloud: Minicloud) -> None:
    deadline = time.monotonic() + 120
    while not nova_consuming(minicloud):
        assert time.monotonic() < deadline, "the test cloud's services are not consuming"
        time.sleep(1)


def test_a_kept_transport_is_reused_only_while_every_server_answers_and_the_broker_stays_up(
    minicloud: Minicloud, probe: MQProbe, sweeps: Sweeps
) -> None:
    wait_consuming(minicloud)
    started = broker_start(probe)
    assert len(sweeps.targets) >= 4  # conductor, scheduler, two computes, the DHCP agent

    first, second = sweeps(started), sweeps(started)
    assert (first["reused"], sweeps.missed(first)) == (False, set())
    assert (second["reused"], sweeps.missed(second)) == (True, set())
    # Without the broker's start a restart would go unseen: a fresh transport every time.
    unseen = sweeps(None)
    assert (unseen["reused"], sweeps.missed(unseen)) == (False, set())

    deaf = minicloud.compute_hosts[-1]
    try:
        minicloud.fault("broker-moved", f"nova-compute@{deaf}")
        kept, fresh = sweeps(started), sweeps(started)
    finally:
        minicloud.fault("heal", f"nova-compute@{deaf}")
    # The others answered on the kept transport: its miss is the server's, and it is dropped.
    assert (kept["reused"], sweeps.missed(kept)) == (True, {f"compute.{deaf}"})
    assert (fresh["reused"], sweeps.missed(fresh)) == (False, {f"compute.{deaf}"})

    wait_consuming(minicloud)
    before = sweeps(started)
    assert sweeps.missed(before) == set()
    minicloud.fault("broker-restart", "--outage", "3")
    wait_consuming(minicloud)
    restarted = broker_start(probe)
    assert restarted > started
    after, again = sweeps(restarted), sweeps(restarted)
    # The transport kept from before the restart is not used: a fresh one, then that one.
    assert (after["reused"], sweeps.missed(after)) == (False, set())
    assert (again["reused"], sweeps.missed(again)) == (True, set())

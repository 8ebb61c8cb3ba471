"""The RPC ping's failure paths: bounded, one line, and no transport URL in any message."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from e2etests.mq import rpcping
from e2etests.mq.pingserver import Pinger, PingServerGone
from e2etests.mq.rpcping import PingError, PingTarget, ping

SECRET = "Xy7-transport-secret"  # noqa: S105 -- a fake, to prove it never leaks
TARGETS = [PingTarget("nova-conductor", "ctl", "conductor")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


needs_oslo = pytest.mark.skipif(
    not rpcping.oslo_messaging_available(), reason="needs oslo.messaging"
)


class Keeping(Pinger):
    """Every sweep on a kept transport, as a watcher asks for them."""

    def ask(self, request: dict[str, Any], *, timeout: float, keep: bool = False) -> dict[str, Any]:
        return super().ask(request, timeout=timeout, keep=True)


@pytest.fixture(params=["child", "server", "keeper"])
def pinger(request: pytest.FixtureRequest) -> Iterator[Pinger | None]:
    """Each sweep in a child started for it, forked by a long-lived server, or on a transport
    a long-lived keeper holds: one contract."""
    if request.param == "child":
        yield None
        return
    server = Keeping() if request.param == "keeper" else Pinger()
    try:
        yield server
    finally:
        server.close()


@needs_oslo
def test_unreachable_broker_fails_fast_and_transiently(pinger: Pinger | None) -> None:
    url = f"rabbit://nova:{SECRET}@127.0.0.1:{closed_port()}/"
    started = time.monotonic()
    with pytest.raises(PingError, match=r"^RPC transport: .*Connection refused$") as caught:
        ping(url, TARGETS, timeout=3.0, pinger=pinger)
    assert time.monotonic() - started < 10
    assert caught.value.transient
    assert SECRET not in str(caught.value)
    assert "rabbit://" not in str(caught.value)


@needs_oslo
def test_a_transport_url_oslo_rejects_is_not_transient(pinger: Pinger | None) -> None:
    with pytest.raises(PingError, match=r"^transport URL rejected: ") as caught:
        ping(f"nosuchdriver://nova:{SECRET}@127.0.0.1:1/", TARGETS, timeout=1.0, pinger=pinger)
    assert not caught.value.transient
    assert SECRET not in str(caught.value)


def test_missing_oslo_messaging_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpcping, "oslo_messaging_available", lambda: False)
    with pytest.raises(PingError, match=r"oslo.messaging is not installed") as caught:
        ping(f"rabbit://nova:{SECRET}@127.0.0.1:1/", TARGETS)
    assert not caught.value.transient


def _raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        raise exc from cause
    except BaseException as caught:
        return caught


@pytest.mark.skipif(not rpcping.oslo_messaging_available(), reason="needs oslo.messaging")
def test_the_harnesss_own_transport_failures_are_classified_as_such() -> None:
    import amqp.exceptions  # type: ignore[import-untyped]
    import kombu.exceptions

    # oslo.messaging's own classes, by name: importing it here would start eventlet's machinery.
    class MessageDeliveryFailure(Exception):
        pass

    class MessagingTimeout(Exception):
        pass

    refused = amqp.exceptions.AccessRefused("Login was refused", method_sig=(10, 40))
    assert rpcping.transport_failure(refused) == (
        "the broker refused the login of the harness's transport URL "
        "(AccessRefused: Connection.open: (403) Login was refused)",
        False,
    )
    vhost = amqp.exceptions.NotAllowed("vhost nova not found", method_sig=(10, 40))
    line, transient = rpcping.transport_failure(vhost) or ("", True)
    assert line.startswith("the broker refused the virtual host of the harness's transport URL")
    assert not transient
    for unreachable in (
        ConnectionRefusedError(111, "Connection refused"),
        _raised_from(kombu.exceptions.OperationalError("boom"), ConnectionRefusedError()),
        MessageDeliveryFailure("Unable to connect to AMQP server"),
    ):
        found = rpcping.transport_failure(unreachable)
        assert found is not None
        assert found[0].startswith("the broker is unreachable (")
        assert found[1]
    # What a service's answer (or its silence) raises is the service's, not the transport's.
    assert rpcping.transport_failure(MessagingTimeout("no reply")) is None
    assert rpcping.transport_failure(ValueError("bad payload")) is None
    # A refused login wrapped by kombu is still a refused login.
    wrapped = _raised_from(kombu.exceptions.OperationalError("failed"), refused)
    assert rpcping.transport_failure(wrapped) is not None


def test_a_call_failing_on_the_transport_blames_no_service() -> None:
    class FakeOM:
        class MessagingTimeout(Exception):
            pass

        class RemoteError(Exception):
            pass

        class Target:
            def __init__(self, **kwargs: str) -> None:
                pass

        @staticmethod
        def get_rpc_client(*args: object, **kwargs: object) -> object:
            class Client:
                def call(self, ctxt: object, method: str) -> None:
                    raise ConnectionRefusedError(111, "Connection refused")

            return Client()

    target = {"exchange": "nova", "topic": "conductor", "host": "ctl"}
    result = rpcping._child_ping(FakeOM, object(), target, 1.0)
    assert result["ok"] is False
    assert "error" not in result
    assert result["transport"].startswith("the broker is unreachable")
    assert result["transient"] is True


# --- the fork server: sweeps side by side, each answered to its asker; a death is survived ---


@needs_oslo
def test_the_server_answers_sweeps_side_by_side_each_to_its_asker() -> None:
    server = Pinger()
    try:
        urls = [f"rabbit://nova{i}:{SECRET}@127.0.0.1:{closed_port()}/" for i in range(3)]
        bad = f"nosuchdriver://nova:{SECRET}@127.0.0.1:1/"

        def sweep(url: str) -> str:
            try:
                ping(url, TARGETS, timeout=3.0, pinger=server)
            except PingError as exc:
                return str(exc)
            return "answered"

        with ThreadPoolExecutor(4) as pool:
            said = list(pool.map(sweep, [*urls, bad]))
        assert [line.split(":")[0] for line in said] == [
            "RPC transport",
            "RPC transport",
            "RPC transport",
            "transport URL rejected",
        ]
        assert not any(SECRET in line for line in said)
    finally:
        server.close()


@needs_oslo
def test_a_dead_server_fails_its_waiting_sweep_transiently_and_the_next_one_starts_anew() -> None:
    server = Pinger()
    try:
        url = f"rabbit://nova:{SECRET}@127.0.0.1:{closed_port()}/"
        with pytest.raises(PingError):
            ping(url, TARGETS, timeout=1.0, pinger=server)
        first = server._fork._proc
        assert first is not None
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(ping, url, TARGETS, timeout=3.0, pinger=server)
            # Killed while the sweep runs: an unreachable broker takes it over a second.
            while not server._fork._waiting:
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)
            with pytest.raises(PingError) as caught:
                waiting.result(timeout=30)
        assert caught.value.transient
        assert str(caught.value) == "the RPC ping server exited"
        with pytest.raises(PingError, match="RPC transport"):
            ping(url, TARGETS, timeout=1.0, pinger=server)
        assert server._fork._proc is not first
    finally:
        server.close()


@needs_oslo
def test_an_unanswered_ask_is_bounded() -> None:
    server = Pinger()
    try:
        # A request the server refuses to read is never answered: the ask's bound ends it.
        started = time.monotonic()
        with pytest.raises(PingServerGone, match="did not answer within 1 s"):
            server.ask({"no": "timeout"}, timeout=1.0)
        assert time.monotonic() - started < 10
    finally:
        server.close()


@needs_oslo
def test_close_ends_the_server() -> None:
    server = Pinger()
    with pytest.raises(PingError):
        ping(
            f"rabbit://nova:{SECRET}@127.0.0.1:{closed_port()}/",
            TARGETS,
            timeout=1.0,
            pinger=server,
        )
    proc = server._fork._proc
    assert proc is not None
    server.close()
    assert proc.poll() is not None


@needs_oslo
def test_a_keeper_past_its_bound_is_killed_and_the_next_ask_starts_a_new_one() -> None:
    server = Pinger()
    try:
        url = f"rabbit://nova:{SECRET}@127.0.0.1:{closed_port()}/"
        request = {"url": url, "timeout": 3.0, "targets": [], "broker_started": None}
        with pytest.raises(PingError, match="RPC transport"):
            ping(url, TARGETS, timeout=1.0, pinger=server, keep=True)
        first = server._keep._proc
        assert first is not None
        # Its sweeps are threads: one past its bound may be stuck for good, so the keeper goes.
        request["targets"] = [{"binary": "b", "host": "h", "topic": "t", "exchange": "nova"}]
        with pytest.raises(PingServerGone, match="did not answer within 0 s"):
            server.ask(request, timeout=0.05, keep=True)
        assert first.poll() is not None
        with pytest.raises(PingError, match="RPC transport"):
            ping(url, TARGETS, timeout=1.0, pinger=server, keep=True)
        assert server._keep._proc is not first
    finally:
        server.close()

"""The RPC ping's failure paths: bounded, one line, and no transport URL in any message."""

from __future__ import annotations

import socket
import time

import pytest

from e2etests.mq import rpcping
from e2etests.mq.rpcping import PingError, PingTarget, ping

SECRET = "Xy7-transport-secret"  # noqa: S105 -- a fake, to prove it never leaks
TARGETS = [PingTarget("nova-conductor", "ctl", "conductor")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.skipif(not rpcping.oslo_messaging_available(), reason="needs oslo.messaging")
def test_unreachable_broker_fails_fast_and_transiently() -> None:
    url = f"rabbit://nova:{SECRET}@127.0.0.1:{closed_port()}/"
    started = time.monotonic()
    with pytest.raises(PingError, match=r"^RPC transport: .*Connection refused$") as caught:
        ping(url, TARGETS, timeout=3.0)
    assert time.monotonic() - started < 10
    assert caught.value.transient
    assert SECRET not in str(caught.value)
    assert "rabbit://" not in str(caught.value)


@pytest.mark.skipif(not rpcping.oslo_messaging_available(), reason="needs oslo.messaging")
def test_a_transport_url_oslo_rejects_is_not_transient() -> None:
    with pytest.raises(PingError, match=r"^transport URL rejected: ") as caught:
        ping(f"nosuchdriver://nova:{SECRET}@127.0.0.1:1/", TARGETS, timeout=1.0)
    assert not caught.value.transient
    assert SECRET not in str(caught.value)


def test_missing_oslo_messaging_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rpcping, "oslo_messaging_available", lambda: False)
    with pytest.raises(PingError, match=r"oslo.messaging is not installed") as caught:
        ping(f"rabbit://nova:{SECRET}@127.0.0.1:1/", TARGETS)
    assert not caught.value.transient

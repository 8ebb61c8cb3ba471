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

"""Nova services and Neutron agents, as their APIs list them, become observations."""

from __future__ import annotations

import datetime as dt

from e2etests.mq.services import clock_offset, from_neutron, from_nova, parse_timestamp

UTC = dt.UTC


def test_timestamps_from_nova_and_neutron_are_utc() -> None:
    expected = dt.datetime(2025, 1, 31, 12, 0, 5, tzinfo=UTC)
    assert parse_timestamp("2025-01-31T12:00:05.000000") == expected
    assert parse_timestamp("2025-01-31 12:00:05") == expected
    assert parse_timestamp("2025-01-31T13:00:05+01:00") == expected
    assert parse_timestamp("2025-01-31T12:00:05Z") == expected
    assert parse_timestamp(None) is None
    assert parse_timestamp("") is None
    assert parse_timestamp("yesterday") is None


def test_nova_service() -> None:
    svc = from_nova(
        dict(
            binary="nova-compute",
            host="mc-compute1",
            status="enabled",
            state="up",
            forced_down=False,
            updated_at="2025-01-31T12:00:05.000000",
        )
    )
    assert (svc.kind, svc.binary, svc.host, svc.topic) == (
        "nova",
        "nova-compute",
        "mc-compute1",
        "compute",
    )
    assert svc.enabled
    assert svc.up
    assert svc.last_report == dt.datetime(2025, 1, 31, 12, 0, 5, tzinfo=UTC)
    assert svc.label == "nova-compute on mc-compute1"


def test_disabled_forced_down_and_unknown_binaries() -> None:
    disabled = from_nova(dict(binary="nova-compute", host="h", status="disabled", state="up"))
    assert not disabled.enabled
    forced = from_nova(
        dict(binary="nova-compute", host="h", status="enabled", state="down", forced_down=True)
    )
    assert not forced.enabled
    assert not forced.up
    other = from_nova(dict(binary="nova-consoleauth", host="h", status="enabled", state="up"))
    assert other.topic is None
    assert other.last_report is None


def test_neutron_agents() -> None:
    dhcp = from_neutron(
        dict(
            binary="neutron-dhcp-agent",
            host="net1",
            admin_state_up=True,
            alive=False,
            heartbeat_timestamp="2025-01-31 12:00:05",
            topic="dhcp_agent",
        )
    )
    assert (dhcp.kind, dhcp.binary, dhcp.topic, dhcp.enabled, dhcp.up) == (
        "neutron",
        "neutron-dhcp-agent",
        "dhcp_agent",
        True,
        False,
    )
    ovs = from_neutron(
        dict(binary="neutron-openvswitch-agent", host="c1", admin_state_up=True, topic="N/A")
    )
    assert ovs.topic is None


def test_clock_offset_from_the_date_header_both_ways() -> None:
    sent = dt.datetime(2025, 1, 31, 12, 0, 0, tzinfo=UTC)
    received = sent + dt.timedelta(seconds=0.2)
    # The cloud 90 s behind the harness: its Date says 11:58:30 while the harness says 12:00.
    assert clock_offset("Fri, 31 Jan 2025 11:58:30 GMT", sent, received) == -89.6
    # And 30 s ahead.
    assert clock_offset("Fri, 31 Jan 2025 12:00:30 GMT", sent, received) == 30.4
    # Within the header's one-second resolution is no skew at all.
    assert clock_offset("Fri, 31 Jan 2025 12:00:00 GMT", sent, received) == 0.0
    assert clock_offset(None, sent, received) is None
    assert clock_offset("not a date", sent, received) is None

"""Failure evidence of the lifecycle check, from hand-built transitions and faults."""

from __future__ import annotations

from e2etests.errors import ServerFault
from e2etests.lifecycle import CheckFailed, Transition, describe_server_failure, server_name

TRANSITIONS = [
    Transition(0.12, "BUILD", "scheduling"),
    Transition(1.31, "ERROR", None),
]
FAULT = {
    "code": 500,
    "message": "No valid host was found. There are not enough hosts available.",
    "details": "Traceback (most recent call last):\n  ... (never shown)",
    "created": "2025-01-02T03:04:05Z",
}


def test_error_failure_names_cloud_server_fault_and_history() -> None:
    failure = describe_server_failure(
        cloud="minicloud-a",
        server_id="8d1c",
        what="went ERROR during boot after 1.3 s",
        transitions=TRANSITIONS,
        fault=FAULT,
        request_ids=["req-global", "req-create", "req-global"],
        compute_host=None,
    )
    assert failure.culprit == (
        "minicloud-a: server 8d1c went ERROR during boot after 1.3 s: No valid host was found. "
        "There are not enough hosts available. (fault code 500)"
    )
    assert failure.evidence == [
        "cloud minicloud-a, server 8d1c, compute host (not assigned or not visible)",
        "last status ERROR, task_state -",
        "transitions: +0.1s BUILD/scheduling -> +1.3s ERROR/-",
        "fault: No valid host was found. There are not enough hosts available. (fault code 500)",
        "request ids: req-global, req-create",
    ]
    assert str(failure).splitlines()[0] == failure.culprit
    assert "Traceback" not in str(failure)
    # The same, typed, for a front end that acts on it instead of parsing the lines.
    assert failure.fault == ServerFault(500, str(FAULT["message"]))
    assert failure.fault.no_valid_host
    assert failure.request_ids == ("req-global", "req-create")


def test_deadline_failure_without_fault_shows_last_state_and_host() -> None:
    failure = describe_server_failure(
        cloud="prod/east",
        server_id="77aa",
        what="still BUILD/spawning 120 s after create (boot_timeout)",
        transitions=[Transition(0.5, "BUILD", "scheduling"), Transition(3.0, "BUILD", "spawning")],
        fault=None,
        request_ids=[],
        compute_host="cmp-17",
    )
    assert failure.culprit == (
        "prod/east: server 77aa still BUILD/spawning 120 s after create (boot_timeout)"
    )
    assert failure.evidence == [
        "cloud prod/east, server 77aa, compute host cmp-17",
        "last status BUILD, task_state spawning",
        "transitions: +0.5s BUILD/scheduling -> +3.0s BUILD/spawning",
    ]


def test_failure_before_any_poll_is_still_readable() -> None:
    failure = describe_server_failure(
        cloud="c",
        server_id=None,
        what="vanished",
        transitions=[],
        fault={"message": "  multi\n line  "},
        request_ids=["req-1"],
        compute_host=None,
    )
    assert failure.culprit == "c: server (id unknown) vanished: multi line (fault code ?)"
    assert failure.fault == ServerFault(None, "multi line")
    assert not failure.fault.no_valid_host
    assert "transitions: (none seen)" in failure.evidence
    assert "last status ?, task_state ?" in failure.evidence


def test_check_failed_renders_culprit_then_evidence() -> None:
    assert str(CheckFailed("one", ["two", "three"])) == "one\ntwo\nthree"
    assert str(CheckFailed("only")) == "only"


def test_server_name_carries_run_prefix_and_cloud() -> None:
    assert server_name("e2e-20250102-ab12-", "prod-east") == "e2e-20250102-ab12-prod-east-lc"

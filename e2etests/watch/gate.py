"""``e2etests gate``: tell the watcher about a drain, wait for its verdict on every cloud.

Exit statuses as ``after-drain``'s: 0 every cloud that holds the gate is green and was judged
in a round started after the drain; 1 one is red after it, or not every cloud was judged
within ``--timeout``; 2 the watcher refused the event, or only clouds' own entries are at
fault; 3 the watcher did not answer (never 0 then). A red verdict ends the wait at once: the
roll stops as soon as one cloud is known broken.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from e2etests.errors import ExitStatus
from e2etests.redact import clip, message, redact_line
from e2etests.timestamps import utc_iso
from e2etests.waiting import Clock, Deadline, poll

__all__ = ["DEFAULT_TIMEOUT", "GateRequest", "check_gate", "parse_watcher_url", "run_gate"]

#: Seconds to wait for the verdict: a grace window (70 s), a canary boot and a delete.
DEFAULT_TIMEOUT = 300.0
#: Seconds between two looks at /gate.
POLL_INTERVAL = 2.0
#: Seconds one request to the watcher may take.
REQUEST_TIMEOUT = 5.0
#: Seconds the drain event is re-sent for while the watcher does not answer.
POST_WITHIN = 20.0


def parse_watcher_url(value: str) -> str:
    """``--watcher``: ``http(s)://host[:port]``, without a path beyond ``/``."""
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(
            f"expected the watcher's base URL like http://watcher:9477, got {clip(value, 80)!r}"
        )
    try:
        parts.port  # noqa: B018 - urllib checks the port only when asked
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad port in {clip(value, 80)!r}") from None
    return f"{parts.scheme}://{parts.netloc}"


class _NoAnswer(Exception):
    """The watcher could not be reached, or answered with something that is not its API."""


#: (method, url, body, timeout) -> (status, body)
Fetch = Callable[[str, str, bytes | None, float], tuple[int, bytes]]


def _fetch(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:  # 4xx/5xx still carry the watcher's answer
        with exc:
            return exc.code, exc.read()
    except (OSError, ValueError) as exc:
        raise _NoAnswer(message(exc)) from None


@dataclasses.dataclass(frozen=True)
class GateRequest:
    watcher: str
    node: str
    drained_at: dt.datetime
    timeout: float = DEFAULT_TIMEOUT


def _json(status: int, body: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise _NoAnswer(f"{what} answered HTTP {status} without the watcher's JSON")
    return doc


def _post_drain(
    req: GateRequest, fetch: Fetch, deadline: Deadline, sleep: Callable[[float], None]
) -> str | dict[str, Any]:
    body = json.dumps({"node": req.node, "drained_at": utc_iso(req.drained_at)}).encode()
    url = f"{req.watcher}/events/drain"
    last = "no attempt"
    for _ in poll(deadline, POLL_INTERVAL, sleep):
        try:
            status, answer = fetch(
                "POST", url, body, min(REQUEST_TIMEOUT, deadline.remaining() + 1)
            )
        except _NoAnswer as exc:
            last = str(exc)
            continue
        if status == 400:
            return redact_line(answer.decode(errors="replace"))
        if status == 200:
            return _json(status, answer, url)
        last = f"HTTP {status}"
    raise _NoAnswer(last)


def _seq(doc: dict[str, Any]) -> int:
    drain = doc.get("drain")
    seq = drain.get("seq") if isinstance(drain, dict) else None
    return seq if isinstance(seq, int) else 0


def run_gate(
    req: GateRequest,
    *,
    out: TextIO,
    err: TextIO,
    fetch: Fetch = _fetch,
    clock: Clock = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ExitStatus:
    started = clock()
    deadline = Deadline.after(req.timeout, clock)
    where = f"watcher at {req.watcher}"
    try:
        posted = _post_drain(
            req, fetch, Deadline.after(min(POST_WITHIN, req.timeout), clock), sleep
        )
    except _NoAnswer as exc:
        err.write(f"e2etests gate: {where} does not answer: {redact_line(str(exc))}\n")
        return ExitStatus.HARNESS_ERROR
    if isinstance(posted, str):
        err.write(f"e2etests gate: {where} refused the drain event: {clip(posted, 300)}\n")
        return ExitStatus.USAGE_ERROR
    mine = _seq({"drain": posted})
    doc: dict[str, Any] | None = None
    answered, last_error = True, ""
    for _ in poll(deadline, POLL_INTERVAL, sleep):
        try:
            code, body = fetch("GET", f"{req.watcher}/gate", None, REQUEST_TIMEOUT)
            doc = _json(code, body, f"{req.watcher}/gate")
        except _NoAnswer as exc:
            answered, last_error = False, str(exc)
            continue
        answered = True
        if _seq(doc) < mine:
            # The watcher restarted and forgot the drain: tell it again.
            try:
                posted = _post_drain(req, fetch, Deadline.after(REQUEST_TIMEOUT, clock), sleep)
                mine = _seq({"drain": posted}) if isinstance(posted, dict) else mine
            except _NoAnswer:
                pass
            continue
        if code == 200 and doc.get("open") is True:
            return _verdict(doc, req, clock() - started, ExitStatus.OK, out)
        if any(
            c.get("blocking") and c.get("decided") and c.get("verdict") == "red"
            for c in _clouds(doc)
        ):
            return _verdict(doc, req, clock() - started, ExitStatus.CHECK_FAILED, out)
    if not answered or doc is None:
        err.write(f"e2etests gate: {where} stopped answering: {redact_line(last_error)}\n")
        return ExitStatus.HARNESS_ERROR
    pending = [c for c in _clouds(doc) if c.get("blocking") and c.get("verdict") != "green"]
    only_config = bool(pending) and all(c.get("misconfigured") for c in pending)
    status_ = ExitStatus.USAGE_ERROR if only_config else ExitStatus.CHECK_FAILED
    return _verdict(doc, req, clock() - started, status_, out, timed_out=True)


def check_gate(watcher: str, *, out: TextIO, err: TextIO, fetch: Fetch = _fetch) -> ExitStatus:
    """The gate as it stands, no drain announced: what a roll asks before its next drain.

    0 every cloud that holds the gate is green; 1 one is red or not judged yet (the roll must
    not drain on an unknown); 3 the watcher does not answer.
    """
    url = f"{watcher}/gate"
    try:
        code, body = fetch("GET", url, None, REQUEST_TIMEOUT)
        doc = _json(code, body, url)
    except _NoAnswer as exc:
        err.write(f"e2etests gate: watcher at {watcher} does not answer: {redact_line(str(exc))}\n")
        return ExitStatus.HARNESS_ERROR
    is_open = code == 200 and doc.get("open") is True
    blocking = [c for c in _clouds(doc) if c.get("blocking")]
    lines = [
        f"{'GREEN' if is_open else 'RED'} now: "
        f"{sum(c.get('verdict') == 'green' for c in blocking)} of {len(blocking)} clouds green"
    ]
    for c in _clouds(doc):
        if c.get("verdict") != "green":
            tag = (
                "QUAR"
                if not c.get("blocking")
                else {"red": "FAIL"}.get(str(c.get("verdict")), "WAIT")
            )
            for reason in [str(r) for r in c.get("reasons") or []] or ["not judged yet"]:
                lines.append(f"  {tag}  {c.get('cloud')}  {clip(redact_line(reason), 200)}")
    out.write("\n".join(lines) + "\n")
    return ExitStatus.OK if is_open else ExitStatus.CHECK_FAILED


def _clouds(doc: dict[str, Any]) -> list[dict[str, Any]]:
    clouds = doc.get("clouds")
    return [c for c in clouds if isinstance(c, dict)] if isinstance(clouds, list) else []


def _verdict(
    doc: dict[str, Any],
    req: GateRequest,
    seconds: float,
    status: ExitStatus,
    out: TextIO,
    *,
    timed_out: bool = False,
) -> ExitStatus:
    clouds = _clouds(doc)
    blocking = [c for c in clouds if c.get("blocking")]
    green = [c for c in blocking if c.get("verdict") == "green" and c.get("judged")]
    if status is ExitStatus.OK:
        head = f"GREEN after draining {req.node}: {len(green)} of {len(blocking)} clouds green"
    elif timed_out:
        head = (
            f"RED after draining {req.node}: not every cloud judged within {req.timeout:g}s "
            f"({len(green)} of {len(blocking)} green)"
        )
    else:
        red = len(blocking) - len(green)
        head = f"RED after draining {req.node}: {red} of {len(blocking)} clouds not green"
    lines = [f"{head} ({seconds:.1f} s)"]
    for c in clouds:
        if c.get("verdict") == "green" and c.get("judged"):
            continue
        tag = {"red": "FAIL", "pending": "WAIT"}.get(str(c.get("verdict")), "????")
        if not c.get("blocking"):
            tag = "QUAR"
        reasons = [str(r) for r in c.get("reasons") or []] or ["not judged after the drain"]
        for reason in reasons:
            lines.append(f"  {tag}  {c.get('cloud')}  {clip(redact_line(reason), 200)}")
    out.write("\n".join(lines) + "\n")
    return status

"""Publishing a run to Slack: what to post, posting it, and keeping what could not be posted.

The summary goes first and each failing cloud's reply into its thread, every call retried
within a bound. Whatever happens, Slack never decides the exit code: a message that could not
be posted is written to a file and its path printed. A dry run prints the messages instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import tenacity
from slack_sdk import WebClient

from e2etests import retry
from e2etests.history import PreviousRun, load_state, save_state
from e2etests.reports import atomic_write
from e2etests.results import RunResult
from e2etests.slack.blocks import (
    SlackMessage,
    SlackPayload,
    build_payload,
    build_recovery,
    readable,
    redact_payload,
)
from e2etests.slack.transport import SlackConfigError, describe_error, make_client, resolve_token


class SlackPostError(Exception):
    """Posting failed; ``unsent`` holds what was not posted, ``thread_ts`` the summary if it was."""

    def __init__(self, reason: str, unsent: Sequence[SlackMessage], thread_ts: str | None) -> None:
        super().__init__(reason)
        self.unsent = tuple(unsent)
        self.thread_ts = thread_ts


class SlackPoster:
    """Posts a payload: the summary, then each reply in its thread, each call retried (bounded)."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        *,
        policy: Callable[[], tenacity.Retrying] = retry.slack_call,
    ) -> None:
        self.client = client
        self.channel = channel
        self.policy = policy

    def _post(self, message: SlackMessage, thread_ts: str | None) -> str:
        kwargs: dict[str, Any] = {
            "channel": self.channel,
            "text": message.text,
            "blocks": list(message.blocks),
        }
        if thread_ts is not None:
            kwargs["thread_ts"] = thread_ts
        response = self.policy()(self.client.chat_postMessage, **kwargs)
        return str(response.get("ts") or "")

    def post(self, payload: SlackPayload, thread_ts: str | None = None) -> str:
        """Returns the summary's ``ts``; raises ``SlackPostError`` with what is left unposted.

        With ``thread_ts`` the summary was posted already (as that message): only the replies
        go, into its thread. Any ``Exception`` of the client counts as a failed post, not only
        slack-sdk's own: a truncated or non-JSON answer surfaces as ``JSONDecodeError`` or
        ``IncompleteRead``.
        """
        ts = thread_ts
        try:
            ts = ts or self._post(payload.summary, None)
        except Exception as exc:
            raise SlackPostError(
                describe_error(exc), [payload.summary, *payload.replies], None
            ) from None
        for i, reply in enumerate(payload.replies):
            try:
                self._post(reply, ts)
            except Exception as exc:
                raise SlackPostError(describe_error(exc), payload.replies[i:], ts) from None
        return ts

    def post_message(self, message: SlackMessage) -> str:
        try:
            return self._post(message, None)
        except Exception as exc:
            raise SlackPostError(describe_error(exc), [message], None) from None


@dataclasses.dataclass(frozen=True)
class SlackOptions:
    channel: str | None = None
    dry_run: bool = False
    only_on_failure: bool = False
    recovery_notice: bool = True
    token_file: Path | None = None
    report_dir: Path = Path("reports")
    state_file: Path | None = None
    base_url: str | None = None
    timeout: float = 10.0
    budget: float = 30.0
    max_replies: int = 20

    @property
    def wanted(self) -> bool:
        return self.dry_run or bool(self.channel)

    @property
    def state_path(self) -> Path:
        return self.state_file or self.report_dir / "slack-state.json"


def plan(run: RunResult, options: SlackOptions, previous: PreviousRun | None) -> list[SlackPayload]:
    """Pure: what to post for this run given the previous one (possibly nothing)."""
    was_red = previous is not None and previous.verdict != "passed"
    recovered = run.verdict == "passed" and was_red and options.recovery_notice
    if run.verdict != "passed" or not options.only_on_failure:
        return [build_payload(run, max_replies=options.max_replies, recovered=recovered)]
    if recovered and previous is not None:
        return [SlackPayload(summary=build_recovery(run, previous))]
    return []


def save_unsent(
    directory: Path,
    channel: str | None,
    reason: str,
    messages: Iterable[SlackMessage],
    thread_ts: str | None = None,
) -> Path:
    """The message that could not be posted, as a file someone can post by hand later."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = directory / f"slack-unsent-{stamp}.json"
    doc = {
        "channel": channel,
        "reason": reason,
        "thread_ts": thread_ts,
        "messages": [m.as_dict() for m in messages],
    }
    atomic_write(path, json.dumps(redact_payload(doc), indent=2, ensure_ascii=False) + "\n")
    return path


def publish(
    run: RunResult,
    options: SlackOptions,
    *,
    out: TextIO,
    err: TextIO,
    environ: Mapping[str, str] | None = None,
    client_factory: Callable[[str], WebClient] | None = None,
) -> bool:
    """Post (or print) this run's Slack messages. Never raises (bar ``BaseException``).

    Returns True when everything that had to be posted was posted (or printed). On any failure
    one line goes to ``err`` naming the file the messages were saved to. Total on purpose: the
    caller has a verdict to return and a node to uncordon, and Slack must not take that away.
    """
    if not options.wanted:
        return True
    previous = load_state(options.state_path)
    try:
        payloads = plan(run, options, previous)
    except Exception as exc:
        err.write(f"slack: cannot build the message: {describe_error(exc)}\n")
        return False
    if options.dry_run:
        return _print_dry_run(payloads, options, out=out, err=err)
    try:
        ok = _post_all(payloads, options, err=err, environ=environ, factory=client_factory)
    except Exception as exc:
        # Only a bug here gets this far; keep the messages all the same.
        messages = [m for p in payloads for m in (p.summary, *p.replies)]
        _keep(options, f"internal error: {describe_error(exc)}", messages, None, err)
        ok = False
    try:
        save_state(options.state_path, run, previous)
    except OSError as exc:
        err.write(f"slack: cannot write {options.state_path}: {exc.strerror}\n")
    return ok


def _print_dry_run(
    payloads: Sequence[SlackPayload], options: SlackOptions, *, out: TextIO, err: TextIO
) -> bool:
    """A few readable lines per message; the Block Kit JSON goes to a file named in them.

    Two hundred lines of JSON would scroll the verdict off the screen.
    """
    doc = [
        {
            "channel": options.channel,
            "summary": p.summary.as_dict(),
            "thread": [r.as_dict() for r in p.replies],
        }
        for p in payloads
    ]
    text = json.dumps(redact_payload(doc), indent=2, ensure_ascii=False) + "\n"
    path = options.report_dir / "slack-dry-run.json"
    try:
        atomic_write(path, text)
    except OSError as exc:
        err.write(f"slack: cannot write {path}: {exc.strerror}; the blocks follow\n")
        out.write(text)
    else:
        out.write(f"slack (dry run) to {options.channel or '(no channel)'}, blocks in {path}:\n")
    for payload in payloads:
        out.writelines(f"  {line}\n" for line in readable(payload))
    if not payloads:
        err.write("slack: nothing to post (green run with --slack-only-on-failure)\n")
    return True


def _post_all(
    payloads: Sequence[SlackPayload],
    options: SlackOptions,
    *,
    err: TextIO,
    environ: Mapping[str, str] | None,
    factory: Callable[[str], WebClient] | None,
) -> bool:
    messages = [m for p in payloads for m in (p.summary, *p.replies)]
    if not messages:
        return True
    try:
        token = resolve_token(os.environ if environ is None else environ, options.token_file)
    except SlackConfigError as exc:
        _keep(options, str(exc), messages, None, err)
        return False

    def default_factory(token: str) -> WebClient:
        return make_client(token, base_url=options.base_url, timeout=options.timeout)

    try:
        client = (factory or default_factory)(token)
    except Exception as exc:
        _keep(options, f"cannot make a Slack client: {describe_error(exc)}", messages, None, err)
        return False
    poster = SlackPoster(
        client, str(options.channel), policy=lambda: retry.slack_call(budget=options.budget)
    )
    ok = True
    for payload in payloads:
        try:
            poster.post(payload)
        except SlackPostError as exc:
            reason = f"cannot post to {options.channel}: {exc}"
            _keep(options, reason, exc.unsent, exc.thread_ts, err)
            ok = False
    return ok


def _keep(
    options: SlackOptions,
    reason: str,
    messages: Sequence[SlackMessage],
    thread_ts: str | None,
    err: TextIO,
) -> None:
    """Save what was not posted and say where, in one line; print it whole if it cannot be saved."""
    try:
        path = save_unsent(options.report_dir, options.channel, reason, messages, thread_ts)
    except OSError as exc:
        doc: dict[str, Any] = {
            "channel": options.channel,
            "thread_ts": thread_ts,
            "messages": [m.as_dict() for m in messages],
        }
        err.write(
            f"slack: {reason}; cannot save it in {options.report_dir} ({exc.strerror}), so here"
            f" it is: {json.dumps(redact_payload(doc), ensure_ascii=False)}\n"
        )
        return
    err.write(f"slack: {reason}; saved in {path}\n")

"""Slack reporting: pure Block Kit builders, and a poster that can fail without losing anything.

One summary message per run (verdict, node, clouds passed/failed, each failing cloud's culprit
line, duration) and one thread reply per failing cloud with its evidence. The builders are pure
and keep every message inside Block Kit's limits whatever the fleet size; the poster uses
slack-sdk's ``WebClient`` with a bounded rate-limit handler plus the bounded policy for 5xx and
connection errors (``e2etests.retry.slack_call``). Whatever happens, Slack never decides the
exit code: a message that could not be posted is written to a file and its path printed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.client
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import tenacity
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from e2etests import retry
from e2etests.redact import clip, one_line, redact
from e2etests.reports import atomic_write
from e2etests.results import CloudResult, RunResult
from e2etests.summary import VERDICT_WORD, headline, iso

# Block Kit limits (api.slack.com/reference/block-kit/blocks).
MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000
MAX_HEADER_CHARS = 150
# The notification text is shown in pushes and by clients without Block Kit; keep it short.
MAX_FALLBACK_CHARS = 1000
# A summary is for reading, not an inventory: past this, "and N more" and the JSON report.
MAX_FAILED_LINES = 40
MAX_CULPRIT_LINE_CHARS = 300
MAX_NAMES_CHARS = 1500

TOKEN_ENV = "E2E_SLACK_TOKEN"  # noqa: S105 (a variable name, not a token)
TOKEN_FILE_ENV = "E2E_SLACK_TOKEN_FILE"  # noqa: S105

ICON = {"passed": ":large_green_circle:", "failed": ":red_circle:", "error": ":warning:"}

Block = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class SlackMessage:
    """One ``chat.postMessage`` worth of content (channel and thread are the poster's business)."""

    text: str
    blocks: tuple[Block, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": list(self.blocks)}


@dataclasses.dataclass(frozen=True)
class SlackPayload:
    """The summary, then the replies that go into its thread."""

    summary: SlackMessage
    replies: tuple[SlackMessage, ...] = ()


# --- pure builders


def escape(text: str) -> str:
    """Slack mrkdwn treats ``& < >`` as control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe(text: str, limit: int) -> str:
    """Dynamic text made fit for a mrkdwn field: redacted, one line, escaped, bounded."""
    return clip(escape(one_line(redact(text))), limit)


def section(text: str) -> Block:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION_CHARS)}}


def context(text: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 2000)}]}


def header(text: str) -> Block:
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(text, MAX_HEADER_CHARS), "emoji": True},
    }


def pack_lines(
    title: str, lines: Sequence[str], *, max_blocks: int, more: Callable[[int], str]
) -> list[Block]:
    """Pack ``title`` and ``lines`` into at most ``max_blocks`` sections of bounded size.

    Lines that do not fit are replaced by ``more(n)`` as the last line, so the reader always
    learns how many were left out.
    """
    chunks: list[list[str]] = [[title] if title else []]
    for i, line in enumerate(lines):
        current = chunks[-1]
        if len("\n".join([*current, line])) <= MAX_SECTION_CHARS:
            current.append(line)
        elif len(chunks) < max(1, max_blocks):
            chunks.append([line])
        else:
            left = len(lines) - i
            while len(current) > 1 and len("\n".join([*current, more(left)])) > MAX_SECTION_CHARS:
                current.pop()
                left += 1
            current.append(more(left))
            break
    return [section("\n".join(chunk)) for chunk in chunks if chunk]


def _meta_line(run: RunResult) -> str:
    parts = []
    if run.node:
        parts.append(f"node *{_safe(run.node, 200)}*")
    if run.drained_at:
        parts.append(f"drained {iso(run.drained_at)}")
    parts.append(f"started {iso(run.started_at)}")
    parts.append(f"took {run.duration:.1f} s")
    if run.run_id:
        parts.append(f"run `{_safe(run.run_id, 100)}`")
    return " · ".join(parts)


def _names(clouds: Sequence[CloudResult]) -> str:
    shown: list[str] = []
    used = 0
    for i, cloud in enumerate(clouds):
        name = f"`{_safe(cloud.cloud, 200)}`"
        if used + len(name) > MAX_NAMES_CHARS:
            return ", ".join(shown) + f" and {len(clouds) - i} more"
        shown.append(name)
        used += len(name) + 2
    return ", ".join(shown)


def _failed_line(cloud: CloudResult) -> str:
    return f"• *{_safe(cloud.cloud, 200)}* — {_safe(cloud.culprit, MAX_CULPRIT_LINE_CHARS)}"


def build_summary(run: RunResult, *, recovered: bool = False) -> SlackMessage:
    """The one summary message of a run."""
    failed = run.failed_clouds
    word = VERDICT_WORD[run.verdict]
    title = f"{ICON[run.verdict]} {'RECOVERED — ' if recovered else ''}e2etests {word}"
    blocks: list[Block] = [
        header(f"{title}: {_counts(run)}"),
        context(_meta_line(run)),
    ]
    if run.harness_errors:
        lines = [f"• {_safe(e, MAX_CULPRIT_LINE_CHARS)}" for e in run.harness_errors[:10]]
        if len(run.harness_errors) > 10:
            lines.append(f"… and {len(run.harness_errors) - 10} more")
        blocks += pack_lines(
            "*The harness could not run:*",
            lines,
            max_blocks=1,
            more=lambda n: f"… and {n} more",
        )
    tail: list[Block] = []
    if run.passed_clouds:
        tail.append(section(f"*Passed ({len(run.passed_clouds)}):* {_names(run.passed_clouds)}"))
    if run.skipped_clouds:
        tail.append(section(f"*Skipped ({len(run.skipped_clouds)}):* {_names(run.skipped_clouds)}"))
    if failed:
        tail.append(context("Evidence for each failing cloud is in this message's thread."))
        listed = [_failed_line(c) for c in failed[:MAX_FAILED_LINES]]
        more = len(failed) - len(listed)
        if more:
            listed.append(f"… and {more} more failing clouds (see the JSON report)")
        room = max(1, MAX_BLOCKS - len(blocks) - len(tail))
        blocks += pack_lines(
            f"*Failed ({len(failed)}):*",
            listed,
            max_blocks=room,
            more=lambda n: f"… and {n + more} more failing clouds (see the JSON report)",
        )
    blocks += tail
    return _finish(SlackMessage(text=_fallback(run, recovered), blocks=tuple(blocks)))


def _counts(run: RunResult) -> str:
    if run.verdict == "error":
        return "the harness could not run"
    total = len(run.clouds)
    if run.failed_clouds:
        return f"{len(run.failed_clouds)} of {total} clouds failed"
    return f"all {total} clouds passed"


def _fallback(run: RunResult, recovered: bool) -> str:
    text = ("RECOVERED: " if recovered else "") + headline(run)
    for cloud in run.failed_clouds[:5]:
        text += f"\n{cloud.cloud}: {cloud.culprit}"
    if len(run.failed_clouds) > 5:
        text += f"\n… and {len(run.failed_clouds) - 5} more"
    return clip(escape(redact(text)), MAX_FALLBACK_CHARS)


def build_reply(cloud: CloudResult) -> SlackMessage:
    """The thread reply for one failing cloud: every failed check, its culprit and evidence."""
    blocks: list[Block] = [
        section(f"*{_safe(cloud.cloud, 200)}* — {len(cloud.failed_checks)} failed")
    ]
    for check in cloud.failed_checks:
        if len(blocks) >= MAX_BLOCKS - 1:
            left = len(cloud.failed_checks) - (len(blocks) - 1)
            blocks.append(section(f"… and {left} more failed checks (see the JSON report)"))
            break
        head = f"*{_safe(check.check, 200)}* ({check.outcome}): {_safe(check.culprit or '', 600)}"
        lines = [clip(escape(redact(line)), 500) for line in check.evidence]
        blocks.append(section(head + _code_block(lines, MAX_SECTION_CHARS - len(head) - 1)))
    text = f"{cloud.cloud}: {cloud.culprit}"
    return _finish(
        SlackMessage(text=clip(escape(redact(text)), MAX_FALLBACK_CHARS), blocks=tuple(blocks))
    )


def _code_block(lines: Sequence[str], room: int) -> str:
    """Evidence as a preformatted block of at most ``room`` characters, fences included."""
    if not lines:
        return ""
    overhead = len("\n```\n```")
    body = list(lines)
    text = "\n".join(body)
    dropped = 0
    while body and len(text) + overhead > room:
        body.pop()
        dropped += 1
        text = "\n".join([*body, f"… and {dropped} more lines"])
    return f"\n```\n{text}```"


def build_overflow_reply(clouds: Sequence[CloudResult]) -> SlackMessage:
    """One last reply naming the failing clouds that got no reply of their own."""
    lines = [_failed_line(c) for c in clouds]
    blocks = pack_lines(
        f"*{len(clouds)} more failing clouds* (their evidence is in the JSON report):",
        lines,
        max_blocks=MAX_BLOCKS,
        more=lambda n: f"… and {n} more",
    )
    text = f"{len(clouds)} more failing clouds"
    return _finish(SlackMessage(text=text, blocks=tuple(blocks)))


def build_payload(
    run: RunResult, *, max_replies: int = 20, recovered: bool = False
) -> SlackPayload:
    """Summary plus thread replies; at most ``max_replies`` + 1 replies whatever the fleet."""
    failed = run.failed_clouds
    replies = [build_reply(c) for c in failed[:max_replies]]
    if len(failed) > max_replies:
        replies.append(build_overflow_reply(failed[max_replies:]))
    return SlackPayload(summary=build_summary(run, recovered=recovered), replies=tuple(replies))


def build_recovery(run: RunResult, previous: PreviousRun) -> SlackMessage:
    """The notice that a fleet which was red is green again."""
    since = f" (red since {previous.at})" if previous.at else ""
    was = f"; was red on {', '.join(previous.failed_clouds[:10])}" if previous.failed_clouds else ""
    if len(previous.failed_clouds) > 10:
        was += f" and {len(previous.failed_clouds) - 10} more"
    line = f"RECOVERED: all {len(run.clouds)} clouds green again{since}{was}"
    blocks = (
        header(f"{ICON['passed']} e2etests RECOVERED: all {len(run.clouds)} clouds passed"),
        context(_meta_line(run)),
        section(_safe(line, MAX_SECTION_CHARS)),
    )
    return _finish(SlackMessage(text=clip(escape(redact(line)), MAX_FALLBACK_CHARS), blocks=blocks))


def redact_payload(value: Any) -> Any:
    """Every string anywhere in an outgoing payload goes through ``redact``: the last gate."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    return value


def _finish(message: SlackMessage) -> SlackMessage:
    blocks = [redact_payload(b) for b in message.blocks]
    if len(blocks) > MAX_BLOCKS:
        # The builders stay under the limit; this guards future edits from a rejected post.
        blocks = [*blocks[: MAX_BLOCKS - 1], section(f"… and {len(blocks) - MAX_BLOCKS + 1} more")]
    return SlackMessage(text=redact(message.text), blocks=tuple(blocks))


# --- state for the recovery notice


@dataclasses.dataclass(frozen=True)
class PreviousRun:
    verdict: str
    at: str | None = None
    failed_clouds: tuple[str, ...] = ()


def load_state(path: Path) -> PreviousRun | None:
    """The previous run's verdict, or ``None`` when unknown (missing or unreadable file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), str):
        return None
    failed = data.get("failed_clouds")
    return PreviousRun(
        verdict=data["verdict"],
        at=data.get("at") if isinstance(data.get("at"), str) else None,
        failed_clouds=tuple(str(c) for c in failed) if isinstance(failed, list) else (),
    )


def save_state(path: Path, run: RunResult, previous: PreviousRun | None) -> None:
    # "at" remembers when the fleet turned red, so a recovery can say for how long it was.
    red_since = previous.at if previous and previous.verdict != "passed" else iso(run.started_at)
    state = {
        "verdict": run.verdict,
        "at": red_since if run.verdict != "passed" else iso(run.started_at),
        "failed_clouds": [c.cloud for c in run.failed_clouds],
    }
    atomic_write(path, json.dumps(state, indent=2) + "\n")


# --- posting


class SlackConfigError(Exception):
    """Slack was asked for but cannot be used (no token); the message is one line."""


class SlackPostError(Exception):
    """Posting failed; ``unsent`` holds what was not posted, ``thread_ts`` the summary if it was."""

    def __init__(self, reason: str, unsent: Sequence[SlackMessage], thread_ts: str | None) -> None:
        super().__init__(reason)
        self.unsent = tuple(unsent)
        self.thread_ts = thread_ts


def resolve_token(environ: Mapping[str, str], token_file: Path | None = None) -> str:
    """The bot token: ``E2E_SLACK_TOKEN``, else ``token_file``, else ``E2E_SLACK_TOKEN_FILE``."""
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = token_file or (Path(environ[TOKEN_FILE_ENV]) if environ.get(TOKEN_FILE_ENV) else None)
    if path is None:
        raise SlackConfigError(f"no Slack token: set {TOKEN_ENV} or pass --slack-token-file")
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SlackConfigError(f"cannot read the Slack token file {path}: {exc.strerror}") from None
    if not token:
        raise SlackConfigError(f"the Slack token file {path} is empty")
    return token


class BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack-sdk's 429 handler, which sleeps for ``Retry-After``, but not for longer than a bound.

    Slack may answer ``Retry-After: 3600`` under a workspace-wide limit; a drain hook must not
    hang for an hour on it, so beyond ``max_wait`` the 429 is left to fail (and be saved).
    """

    def __init__(self, max_retry_count: int = 3, max_wait: float = 30.0) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        for name, values in response.headers.items():
            if name.lower() == "retry-after" and values:
                try:
                    return float(values[0]) <= self.max_wait
                except ValueError:
                    return True
        return True


def make_client(
    token: str,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
    rate_limit_retries: int = 3,
    max_retry_after: float = 30.0,
) -> WebClient:
    """A ``WebClient`` with a bounded per-request timeout and the bounded 429 handler.

    Connection errors are left to ``retry.slack_call`` (not also to slack-sdk's own handler) so
    the two retry layers do not multiply.
    """
    kwargs: dict[str, Any] = {}
    if base_url is not None:
        kwargs["base_url"] = base_url
    return WebClient(
        token=token,
        timeout=max(1, round(timeout)),
        retry_handlers=[BoundedRateLimitRetryHandler(rate_limit_retries, max_retry_after)],
        **kwargs,
    )


def describe_error(exc: BaseException) -> str:
    """One line for a failed Slack call, never echoing the request (which carries the token).

    Total over exceptions: slack-sdk lets ``json.loads`` and ``http.client`` errors through
    unwrapped, and a client bug may raise anything.
    """
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", "?")
        error = ""
        data = getattr(response, "data", None)
        if isinstance(data, Mapping):
            error = str(data.get("error") or "")
        api = str(getattr(response, "api_url", "")).rstrip("/").rsplit("/", 1)[-1] or "Slack API"
        return redact(f"HTTP {status} from {api}" + (f" ({clip(error, 120)})" if error else ""))
    if isinstance(exc, TimeoutError):
        return "no answer from Slack (timed out)"
    if isinstance(exc, ValueError | http.client.IncompleteRead):
        # A 200 cut short or garbled (often by a proxy): the post may well have gone through.
        # Only the exception's type: a decode error carries the whole body it choked on.
        return f"unreadable answer from Slack ({type(exc).__name__}); the message may be posted"
    if isinstance(exc, OSError | http.client.HTTPException):
        reason = getattr(exc, "reason", None) or exc
        # Redacted before it is clipped: a cut can leave half a URL no pattern recognises.
        return one_line(redact(f"cannot reach Slack: {reason}"), 200)
    return one_line(redact(f"the Slack client failed: {type(exc).__name__}: {exc}"), 200)


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

    def post(self, payload: SlackPayload) -> str:
        """Returns the summary's ``ts``; raises ``SlackPostError`` with what is left unposted.

        Any ``Exception`` of the client counts as a failed post, not only slack-sdk's own: a
        truncated or non-JSON answer surfaces as ``JSONDecodeError`` or ``IncompleteRead``.
        """
        try:
            ts = self._post(payload.summary, None)
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


# --- what the CLI calls


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
    doc = [
        {
            "channel": options.channel,
            "summary": p.summary.as_dict(),
            "thread": [r.as_dict() for r in p.replies],
        }
        for p in payloads
    ]
    out.write(json.dumps(redact_payload(doc), indent=2, ensure_ascii=False) + "\n")
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

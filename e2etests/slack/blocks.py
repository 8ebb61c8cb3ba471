"""Pure Block Kit builders: a run's summary message, one thread reply per failing cloud.

Every message stays inside Block Kit's limits whatever the fleet size, and every string in it
has been through ``redact``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from e2etests.history import PreviousRun
from e2etests.redact import clip, one_line, redact
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


def escape(text: str) -> str:
    """Slack mrkdwn treats ``& < >`` as control characters; everything else is literal."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def safe_text(text: str, limit: int) -> str:
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
        parts.append(f"node *{safe_text(run.node, 200)}*")
    if run.drained_at:
        parts.append(f"drained {iso(run.drained_at)}")
    parts.append(f"started {iso(run.started_at)}")
    parts.append(f"took {run.duration:.1f} s")
    if run.run_id:
        parts.append(f"run `{safe_text(run.run_id, 100)}`")
    return " · ".join(parts)


def _names(clouds: Sequence[CloudResult]) -> str:
    shown: list[str] = []
    used = 0
    for i, cloud in enumerate(clouds):
        name = f"`{safe_text(cloud.cloud, 200)}`"
        if used + len(name) > MAX_NAMES_CHARS:
            return ", ".join(shown) + f" and {len(clouds) - i} more"
        shown.append(name)
        used += len(name) + 2
    return ", ".join(shown)


def _failed_line(cloud: CloudResult) -> str:
    return f"• *{safe_text(cloud.cloud, 200)}* — {safe_text(cloud.culprit, MAX_CULPRIT_LINE_CHARS)}"


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
        lines = [f"• {safe_text(e, MAX_CULPRIT_LINE_CHARS)}" for e in run.harness_errors[:10]]
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
    return finish(SlackMessage(text=_fallback(run, recovered), blocks=tuple(blocks)))


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
        section(f"*{safe_text(cloud.cloud, 200)}* — {len(cloud.failed_checks)} failed")
    ]
    for check in cloud.failed_checks:
        if len(blocks) >= MAX_BLOCKS - 1:
            left = len(cloud.failed_checks) - (len(blocks) - 1)
            blocks.append(section(f"… and {left} more failed checks (see the JSON report)"))
            break
        culprit = safe_text(check.culprit or "", 600)
        head = f"*{safe_text(check.check, 200)}* ({check.outcome}): {culprit}"
        lines = [clip(escape(redact(line)), 500) for line in check.evidence]
        blocks.append(section(head + code_block(lines, MAX_SECTION_CHARS - len(head) - 1)))
    text = f"{cloud.cloud}: {cloud.culprit}"
    return finish(
        SlackMessage(text=clip(escape(redact(text)), MAX_FALLBACK_CHARS), blocks=tuple(blocks))
    )


def code_block(lines: Sequence[str], room: int) -> str:
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
    return finish(SlackMessage(text=text, blocks=tuple(blocks)))


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
        section(safe_text(line, MAX_SECTION_CHARS)),
    )
    return finish(SlackMessage(text=clip(escape(redact(line)), MAX_FALLBACK_CHARS), blocks=blocks))


def redact_payload(value: Any) -> Any:
    """Every string anywhere in an outgoing payload goes through ``redact``: the last gate."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_payload(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_payload(v) for v in value]
    return value


def finish(message: SlackMessage) -> SlackMessage:
    blocks = [redact_payload(b) for b in message.blocks]
    if len(blocks) > MAX_BLOCKS:
        # The builders stay under the limit; this guards future edits from a rejected post.
        blocks = [*blocks[: MAX_BLOCKS - 1], section(f"… and {len(blocks) - MAX_BLOCKS + 1} more")]
    return SlackMessage(text=redact(message.text), blocks=tuple(blocks))


def readable(payload: SlackPayload, *, max_replies: int = 5) -> list[str]:
    """The message as a person would read it in Slack: header, culprit, thread lines."""

    def lines(message: SlackMessage) -> list[str]:
        heads = [b["text"]["text"] for b in message.blocks if b.get("type") == "header"]
        body = [x for x in _unescape(message.text).splitlines() if x.strip()]
        return [*heads[:1], *(x for x in body if x not in heads)][:3]

    out = lines(payload.summary)
    for reply in payload.replies[:max_replies]:
        out.extend(f"  └ {line}" for line in lines(reply)[:2])
    if len(payload.replies) > max_replies:
        out.append(f"  └ … and {len(payload.replies) - max_replies} more replies in the thread")
    return out


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

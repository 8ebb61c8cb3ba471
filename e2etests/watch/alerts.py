"""What the watcher posts to Slack for a batch of transitions. Pure: events in, payloads out.

Only changes are posted: a check that turned red (culprit first, evidence in the thread), one
that recovered (with how long it was red), one that could not be measured for several rounds.
The fleet brake: when the transitions of one kind in one batch touch more than ``brake`` of
the watched clouds (and at least :data:`BRAKE_MIN_CLOUDS`), one message says so and tells the
reader to suspect the harness or its network first, instead of one message per cloud.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

from e2etests.redact import clip, redact
from e2etests.slack.blocks import (
    ICON,
    MAX_FALLBACK_CHARS,
    MAX_SECTION_CHARS,
    Block,
    SlackMessage,
    SlackPayload,
    code_block,
    context,
    escape,
    finish,
    header,
    pack_lines,
    safe_text,
    section,
)
from e2etests.watch.state import Event, EventKind

__all__ = ["BRAKE_MIN_CLOUDS", "DEFAULT_BRAKE", "AlertPolicy", "payloads_for"]

#: Share of the watched clouds above which one batch's transitions are one message.
DEFAULT_BRAKE = 0.3
#: A brake needs at least this many clouds: two of three clouds red is two messages.
BRAKE_MIN_CLOUDS = 3

_HEAD = {
    EventKind.TURNED_RED: (ICON["failed"], "RED"),
    EventKind.RECOVERED: (ICON["passed"], "RECOVERED"),
    EventKind.COULD_NOT_MEASURE: (ICON["error"], "COULD NOT MEASURE"),
}


@dataclasses.dataclass(frozen=True)
class AlertPolicy:
    clouds: int
    brake: float = DEFAULT_BRAKE


def payloads_for(events: Sequence[Event], policy: AlertPolicy) -> list[SlackPayload]:
    """The messages for ``events`` (one batch), in the order they happened, braked per kind."""
    by_kind: dict[EventKind, list[Event]] = collections.defaultdict(list)
    for event in sorted(events, key=lambda e: e.at):
        by_kind[event.kind].append(event)
    out: list[SlackPayload] = []
    for kind in (EventKind.TURNED_RED, EventKind.COULD_NOT_MEASURE, EventKind.RECOVERED):
        batch = by_kind.get(kind, [])
        clouds = {e.cloud for e in batch}
        if len(clouds) >= BRAKE_MIN_CLOUDS and len(clouds) > policy.brake * policy.clouds:
            out.append(_braked(kind, batch, policy))
        else:
            out += [_one(event) for event in batch]
    return out


def _one(event: Event) -> SlackPayload:
    icon, word = _HEAD[event.kind]
    where = f"{event.cloud} · {event.check}"
    if event.kind is EventKind.RECOVERED:
        line = f"{where} recovered after {_duration(event.seconds_red or 0)} red"
    elif event.kind is EventKind.COULD_NOT_MEASURE:
        line = f"{where} could not be measured for {event.rounds} rounds: {event.culprit or '?'}"
    else:
        line = f"{where}: {event.culprit or 'no detail'}"
    summary = SlackMessage(
        text=clip(escape(redact(f"{word} {line}")), MAX_FALLBACK_CHARS),
        blocks=(header(f"{icon} e2etests watch: {word} {where}"), _section(line)),
    )
    replies: tuple[SlackMessage, ...] = ()
    if event.kind is EventKind.TURNED_RED and event.evidence:
        lines = [clip(escape(redact(x)), 500) for x in event.evidence]
        body = code_block(lines, MAX_SECTION_CHARS - 40)
        replies = (
            SlackMessage(text=f"evidence for {where}", blocks=(section(f"*evidence*{body}"),)),
        )
    return SlackPayload(finish(summary), tuple(finish(r) for r in replies))


def _braked(kind: EventKind, batch: Sequence[Event], policy: AlertPolicy) -> SlackPayload:
    icon, word = _HEAD[kind]
    clouds = sorted({e.cloud for e in batch})
    title = f"{len(clouds)} of {policy.clouds} clouds {word} at once"
    advice = {
        EventKind.TURNED_RED: "Suspect the harness or its network before the clouds: so many "
        "clouds rarely break in the same round.",
        EventKind.COULD_NOT_MEASURE: "Suspect the harness's network or credentials first.",
        EventKind.RECOVERED: "The clouds (or the harness's network) are back.",
    }[kind]
    culprits = collections.Counter(e.culprit for e in batch if e.culprit)
    common = culprits.most_common(1)
    lines = [f"• {safe_text(e.cloud, 100)} · {safe_text(e.check, 60)}" for e in batch]
    blocks = [header(f"{icon} e2etests watch: {title}"), _section(advice)]
    if common:
        culprit, times = common[0]
        blocks.append(
            context(f"most common culprit ({times} clouds): {safe_text(culprit or '', 400)}")
        )
    blocks += pack_lines("", lines, max_blocks=10, more=lambda n: f"… and {n} more")
    text = f"{word}: {len(clouds)} of {policy.clouds} clouds at once ({', '.join(clouds[:10])})"
    fallback = clip(escape(redact(text)), MAX_FALLBACK_CHARS)
    return SlackPayload(finish(SlackMessage(text=fallback, blocks=tuple(blocks))))


def _section(text: str) -> Block:
    return section(safe_text(text, MAX_SECTION_CHARS))


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"

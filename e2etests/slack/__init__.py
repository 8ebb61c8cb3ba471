"""Slack reporting: one summary message per run and one thread reply per failing cloud.

The summary gives the verdict, node, clouds passed/failed, each failing cloud's culprit line and
the duration; each reply gives that cloud's evidence. ``blocks`` builds the messages (pure),
``transport`` makes the client and says in one line why a call failed, ``publish`` decides what
to post, posts it and keeps what could not be posted. Whether the previous run was red comes
from ``e2etests.history``.
"""

from __future__ import annotations

from e2etests.slack.blocks import (
    SlackMessage,
    build_payload,
    build_reply,
    build_summary,
    pack_lines,
)
from e2etests.slack.publish import SlackOptions, SlackPoster, SlackPostError, plan, publish
from e2etests.slack.transport import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    SlackConfigError,
    describe_error,
    make_client,
    resolve_token,
)

# The names code outside this package uses; anything else is imported from its module.
__all__ = [
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "SlackConfigError",
    "SlackMessage",
    "SlackOptions",
    "SlackPostError",
    "SlackPoster",
    "build_payload",
    "build_reply",
    "build_summary",
    "describe_error",
    "make_client",
    "pack_lines",
    "plan",
    "publish",
    "resolve_token",
]

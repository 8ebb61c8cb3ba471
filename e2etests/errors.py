"""Exit statuses and the errors that map onto them."""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """The wrapper's documented exit codes: upgrade scripts branch on these."""

    OK = 0
    CHECK_FAILED = 1
    USAGE_ERROR = 2
    HARNESS_ERROR = 3


class ConfigError(Exception):
    """Bad configuration; the message is one line naming the file and key at fault."""

"""Redaction of what reaches the terminal without going through a test report.

Two paths skip the reports that :mod:`e2etests.redacting` cleans: log records shown live
(``--log-cli-level``, or any handler an operator adds), and what tests print under ``-s``
(no capture). Log records are redacted where they are made, by a record factory that renders
the message, the traceback and the stack once and redacts them, so every handler and formatter
sees the clean text. Under ``-s``, ``sys.stdout`` and ``sys.stderr`` are wrapped in a stream
that redacts whole lines (a secret split over two ``write`` calls is still one line).

:func:`install` returns the function that undoes it: pytest runs in-process in tests, and
each session must leave logging and the streams as it found them.
"""

from __future__ import annotations

import io
import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from e2etests.redact import redact

__all__ = ["RedactingStream", "install"]


def _redacting_factory(
    inner: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself, unredacted args
            message = str(record.msg)
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_text = record.exc_text.rstrip("\n")
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    make.e2etests_redacting = True  # type: ignore[attr-defined]
    return make


class RedactingStream(io.TextIOBase):
    """A text stream that writes ``inner`` whole lines at a time, each one redacted."""

    def __init__(self, inner: TextIO) -> None:
        super().__init__()
        self.inner = inner
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            done, self._pending = self._pending.rsplit("\n", 1)
            self.inner.write(redact(done) + "\n")
        return len(text)

    def flush(self) -> None:
        if self._pending:
            # A partial line (a prompt, a progress dot) goes now: redacted as it stands.
            self.inner.write(redact(self._pending))
            self._pending = ""
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def writable(self) -> bool:
        return True


def install(*, streams: bool) -> Callable[[], None]:
    """Redact log records from now on, and ``sys.stdout``/``sys.stderr`` when ``streams``."""
    previous_factory = logging.getLogRecordFactory()
    if not getattr(previous_factory, "e2etests_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(previous_factory))
    previous_streams = (sys.stdout, sys.stderr)
    if streams:
        sys.stdout = RedactingStream(sys.stdout)
        sys.stderr = RedactingStream(sys.stderr)

    def undo() -> None:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, RedactingStream):
                stream.flush()
        if streams:
            sys.stdout, sys.stderr = previous_streams
        logging.setLogRecordFactory(previous_factory)

    return undo

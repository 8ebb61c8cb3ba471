"""Run every cleanup, whatever stops one of them: the one rule behind "no leaked VM"."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from e2etests.redact import describe, message


def run_all(callbacks: Iterable[Callable[[], None]]) -> tuple[list[str], BaseException | None]:
    """Call each of ``callbacks``; returns one line per failure and the first interrupt.

    A Ctrl-C or SIGTERM (KeyboardInterrupt) during one cleanup does not cut the others
    short: the caller re-raises the interrupt once every callback had its turn.
    """
    errors: list[str] = []
    interrupt: BaseException | None = None
    for callback in callbacks:
        try:
            callback()
        except Exception as exc:
            errors.append(message(exc))
        except BaseException as exc:  # KeyboardInterrupt (SIGTERM too), SystemExit
            interrupt = interrupt or exc
            errors.append(f"interrupted: {describe(exc)}")
    return errors, interrupt

"""Run one console script with several command lines in turn, importing it only once.

    VENV/bin/python forkrun.py SCRIPT '[["db_sync"], ["fernet_setup", ...]]'

A *-manage command spends 2.5-3.5 s of CPU importing its project before a second of real
work, and a fresh deploy runs four each of keystone-manage and nova-manage. This imports
the script's module once and forks a child per command line, so each child starts from
the state a fresh process has after the same imports. Stops at the first failure, with
that child's exit status.

Stdlib only: it runs in the services' venvs.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path


def entry_point(script: str) -> Callable[[], object]:
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        if ep.name == script:
            loaded: Callable[[], object] = ep.load()
            return loaded
    sys.exit(f"forkrun: no console script {script!r} in {sys.prefix}")


def child(script: str, main: Callable[[], object], argv: list[str]) -> int:
    # As the console-script wrapper in bin/ would have it.
    sys.argv = [str(Path(sys.prefix) / "bin" / script), *argv]
    try:
        result = main()
    except SystemExit as exc:
        result = exc.code
    except BaseException:
        logging.getLogger(__name__).exception("%s %s crashed", script, " ".join(argv))
        result = 1
    if isinstance(result, str):
        print(result, file=sys.stderr)
        result = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    return result if isinstance(result, int) else 0 if result is None else 1


def main() -> int:
    script, runs = sys.argv[1], json.loads(sys.argv[2])
    func = entry_point(script)
    for argv in runs:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            # No atexit handlers or finalizers of the parent's objects in the child.
            os._exit(child(script, func, argv))
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        if status != 0:
            print(f"forkrun: {script} {' '.join(argv)} exited with {status}", file=sys.stderr)
            return status if status > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

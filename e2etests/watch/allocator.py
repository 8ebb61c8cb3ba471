"""Which malloc the watcher runs on, and one word at start when a watch of days would creep.

Measured side by side on the test cloud (``bench/bench_watch.py memory``, 100 cloud entries
each, 30 min): on glibc's malloc the watcher's RSS grew about 25 kB a round after every cloud
had booted once, most of it in glibc's main heap, while the memory Python holds stayed flat; the
same watcher with jemalloc preloaded stayed flat. glibc tunables did not stop it (a fixed mmap
threshold, ``malloc_trim`` every 30 s, no fastbins, 2 or 64 arenas). So the watcher says at
start when it runs on glibc's malloc, and the Deployment in ``ci/k8s-watch.yaml`` preloads
jemalloc. The library cannot be swapped from inside a running process: it is the
environment's choice, ``LD_PRELOAD=libjemalloc.so.2``.
"""

from __future__ import annotations

import pathlib
import platform

__all__ = ["PRELOAD", "creep_note", "this_process_note"]

#: What to preload; a bare soname is found on the library path whatever the architecture.
PRELOAD = "libjemalloc.so.2"
#: Allocators that give a long-lived process's memory back (mapped into it by name).
RETURNING = ("libjemalloc", "libtcmalloc", "libmimalloc")


def mapped() -> str:
    """The text of ``/proc/self/maps``; empty where there is none (not Linux)."""
    try:
        return pathlib.Path("/proc/self/maps").read_text()
    except OSError:
        return ""


def creep_note(maps: str, libc: str) -> str | None:
    """A line for the log when a long watch on this allocator would creep, else None.

    ``maps`` is the process's memory map and ``libc`` the C library's name
    (``platform.libc_ver()[0]``); only glibc's malloc was measured to creep.
    """
    if libc != "glibc" or not maps:
        return None
    if any(name in maps for name in RETURNING):
        return None
    return (
        "note: running on glibc's malloc, whose heap fragments over days of watching (about 25 kB "
        f"a round with 100 clouds, measured); for a long watch, start it with "
        f"LD_PRELOAD={PRELOAD} (Debian: apt install libjemalloc2), as ci/k8s-watch.yaml does"
    )


def this_process_note() -> str | None:
    """:func:`creep_note` for the running process."""
    return creep_note(mapped(), platform.libc_ver()[0])

"""The watcher's word at start about the malloc it runs on, from hand-built memory maps."""

from __future__ import annotations

import pytest

from e2etests.watch.allocator import PRELOAD, creep_note

GLIBC_ONLY = (
    "55ab38edb000-55ab39d03000 rw-p 00000000 00:00 0      [heap]\n"
    "7fe29a000000-7fe29a022000 r--p 00000000 fe:00 12 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
)


def test_glibcs_malloc_is_named_with_the_preload_that_keeps_a_long_watch_flat() -> None:
    note = creep_note(GLIBC_ONLY, "glibc")
    assert note is not None
    assert "glibc's malloc" in note
    assert f"LD_PRELOAD={PRELOAD}" in note
    assert "\n" not in note  # one log line


@pytest.mark.parametrize(
    "library",
    [
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
        "/opt/lib/libmimalloc.so.2",
    ],
)
def test_nothing_is_said_when_an_allocator_that_gives_memory_back_is_mapped(
    library: str,
) -> None:
    maps = GLIBC_ONLY + f"7fe299c00000-7fe299c09000 r--p 00000000 fe:00 5595188 {library}\n"
    assert creep_note(maps, "glibc") is None


@pytest.mark.parametrize(("maps", "libc"), [(GLIBC_ONLY, "musl"), (GLIBC_ONLY, ""), ("", "glibc")])
def test_nothing_is_said_where_the_creep_was_not_measured_or_the_map_is_unknown(
    maps: str, libc: str
) -> None:
    assert creep_note(maps, libc) is None

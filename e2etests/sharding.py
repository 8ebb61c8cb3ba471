"""Splitting a fleet run into N shards (``--shard K/N``), one per machine or Indexed Job pod.

A cloud's shard depends on its own name and N only (a hash, not its place in a sorted list),
so adding or removing a cloud never moves another one to a different shard, and every shard
computes the same split without talking to the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from e2etests.config import CloudTarget
from e2etests.errors import ConfigError

__all__ = ["MAX_SHARDS", "Shard", "parse_shard", "shard_of", "sharded"]

#: More shards than this is a typo, not a fleet: 200 clouds already fit in a few processes.
MAX_SHARDS = 1000
_SHARD_RE = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``, both 1-based as operators write them (``2/4``)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, name: str) -> bool:
        return shard_of(name, self.count) == self.index

    def select(self, items: Sequence[T], name: Callable[[T], str]) -> list[T]:
        """The items whose ``name(item)`` falls in this shard, in their order."""
        return [item for item in items if self.holds(name(item))]


def shard_of(name: str, count: int) -> int:
    """The 1-based shard of the cloud called ``name`` among ``count``: stable across runs,
    machines and Python versions (sha256, not ``hash()``, which is salted per process)."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def parse_shard(value: str) -> Shard:
    """``--shard K/N``: 1 <= K <= N <= :data:`MAX_SHARDS`."""
    match = _SHARD_RE.fullmatch(value)
    if not match:
        raise argparse.ArgumentTypeError(f"expected K/N (shard K of N, e.g. 2/4), got {value!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"{value!r}: N must be 1 to {MAX_SHARDS}")
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"{value!r}: K must be 1 to N ({count})")
    return Shard(index, count)


def sharded(targets: list[CloudTarget], shard: Shard | None) -> list[CloudTarget]:
    """The selected clouds that fall in ``shard`` (all when None); a cloud's regions stay together.

    An empty shard is refused: a pod that checked nothing must not pass for one that checked.
    """
    if shard is None:
        return targets
    mine = shard.select(targets, lambda t: t.name)
    if not mine:
        raise ConfigError(
            f"--shard {shard}: none of the {len(targets)} selected clouds falls in this shard "
            "(use fewer shards than clouds)"
        )
    return mine

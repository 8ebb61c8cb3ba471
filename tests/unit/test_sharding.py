"""--shard K/N: a stable split of a fleet's clouds by the hash of each name."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys

import pytest

from e2etests.sharding import MAX_SHARDS, Shard, parse_shard, shard_of

NAMES = [f"cluster{i:03d}" for i in range(200)]


def test_every_cloud_falls_in_exactly_one_shard_and_shards_are_even() -> None:
    shards = [Shard(k, 4) for k in range(1, 5)]
    parts = [shard.select(NAMES, str) for shard in shards]
    assert sorted(n for part in parts for n in part) == sorted(NAMES)
    # sha256 is fixed, so this is a fact about these names, not a chance.
    assert all(30 <= len(part) <= 70 for part in parts), [len(p) for p in parts]


def test_adding_or_removing_clouds_moves_no_other_cloud() -> None:
    before = {n: shard_of(n, 4) for n in NAMES}
    grown = [*NAMES, "cluster-new-1", "cluster-new-2"][5:]
    after = {n: shard_of(n, 4) for n in grown}
    assert all(after[n] == before[n] for n in grown if n in before)


def test_the_split_is_the_same_in_every_process() -> None:
    # Not hash(): that is salted per process, and every shard must compute the same split.
    code = (
        "from e2etests.sharding import shard_of; print([shard_of(f'c{i}', 4) for i in range(50)])"
    )
    splits = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert splits == {str([shard_of(f"c{i}", 4) for i in range(50)]) + "\n"}
    digest = hashlib.sha256(b"cluster42").digest()
    assert shard_of("cluster42", 7) == int.from_bytes(digest[:8], "big") % 7 + 1


@pytest.mark.parametrize(("text", "shard"), [("1/1", Shard(1, 1)), (" 2 / 4 ", Shard(2, 4))])
def test_shards_parse_as_operators_write_them(text: str, shard: Shard) -> None:
    assert parse_shard(text) == shard
    assert str(shard) == text.replace(" ", "")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0/4", "K must be 1 to N (4)"),
        ("5/4", "K must be 1 to N (4)"),
        ("1/0", f"N must be 1 to {MAX_SHARDS}"),
        (f"1/{MAX_SHARDS + 1}", f"N must be 1 to {MAX_SHARDS}"),
        ("2", "expected K/N"),
        ("1/2/3", "expected K/N"),
        ("-1/4", "expected K/N"),
    ],
)
def test_a_bad_shard_is_one_line(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        parse_shard(text)

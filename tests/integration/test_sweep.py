"""A run killed with SIGKILL leaves its server; the sweeper removes it and nothing else."""

from __future__ import annotations

import io
import secrets
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from e2etests import sweep
from e2etests.lifecycle import MARK_KEY
from tests.conftest import Minicloud
from tests.integration.test_lifecycle import conn_a, servers_of_run, start_suite, wait_for

pytestmark = pytest.mark.integration

__all__ = ["conn_a"]  # a fixture, imported so this module can use it


@pytest.fixture
def foreign_servers(conn_a: Any) -> Iterator[list[Any]]:
    """Servers the harness did not make: one with our prefix but no mark, one unmarked."""
    tag = secrets.token_hex(3)
    image = next(iter(conn_a.image.images(name="e2e-image")))
    flavor = next(f for f in conn_a.compute.flavors() if f.name == "e2e.tiny")
    made = [
        conn_a.compute.create_server(
            name=name, image_id=image.id, flavor_id=flavor.id, networks="none", **extra
        )
        for name, extra in [
            (f"e2e-handmade-{tag}", {}),
            (f"ops-{tag}", {"metadata": {MARK_KEY: "copied-mark"}}),
        ]
    ]
    yield made
    for server in made:
        conn_a.compute.delete_server(server.id)
    for server in made:
        conn_a.compute.wait_for_delete(server, wait=60)


def test_sweeper_removes_what_a_killed_run_left_and_nothing_else(
    minicloud: Minicloud, conn_a: Any, foreign_servers: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = f"it-{secrets.token_hex(3)}"
    proc = start_suite(
        minicloud, run_id, "-k", "minicloud-a", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for("the lifecycle server", lambda: servers_of_run(conn_a, run_id), timeout=60)
        proc.send_signal(signal.SIGKILL)  # no finalizer runs: the server is left behind
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    (left,) = servers_of_run(conn_a, run_id)

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(minicloud.clouds_yaml))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    # Dry run, every age, every run: lists the leftover, never a foreign server.
    out = io.StringIO()
    assert sweep.main(["--clouds", "minicloud-a", "--older-than", "0", "--dry-run"], out=out) == 0
    listing = out.getvalue()
    assert f"would delete {left.id} {left.name} (run {run_id}" in listing
    for server in foreign_servers:
        assert server.id not in listing
    assert servers_of_run(conn_a, run_id) != []

    # The real sweep is narrowed to our run: other people's runs share this cloud.
    out = io.StringIO()
    code = sweep.main(["--clouds", "minicloud-a", "--older-than", "0", "--run-id", run_id], out=out)
    assert code == 0, out.getvalue()
    assert "minicloud-a: 1 leftover(s) deleted" in out.getvalue()
    assert servers_of_run(conn_a, run_id) == []
    for server in foreign_servers:
        assert conn_a.compute.get_server(server.id).id == server.id

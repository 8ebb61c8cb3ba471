"""Make the test cloud look like a cell of N compute hosts, for the fleet-scale benchmarks.

    python bench/simcell.py --hosts 500 [--deaf 5 --mode gone|frozen] [--ready FILE]

Runs until SIGINT or SIGTERM, then removes everything it made. Per simulated host ``sim-NNNN``:

- a ``nova-compute`` service record in Nova's cell database, its heartbeat kept fresh every
  ``REPORT_INTERVAL`` s (one UPDATE for all hosts), so ``openstack compute service list``
  shows it up, as a real one that still reaches its conductor would;
- the ``compute.sim-NNNN`` queue on the real broker, consumed by an oslo.messaging RPC server
  with the ping endpoint on, so ``oslo_rpc_server_ping`` is answered by real oslo.messaging.

A deaf host (``--deaf K``: the last K) keeps its fresh heartbeat: only the per-host checks can
see it. ``gone``: its queue exists with no consumer (the broker dropped it); ``frozen``: a
consumer that takes messages and never acknowledges or answers them (a wedged connection).

Everything goes through the real broker and the real Nova database and API; nothing here is
imported by the harness. Needs the test cloud (``python3 ci/minicloud up``) and the harness's
venv with the ``mq`` extra (oslo.messaging, kombu).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HOME = Path(os.environ.get("MINICLOUD_HOME", Path.home() / ".cache/e2etests-minicloud"))
PREFIX = "sim-"
#: Nova's default report_interval, which the test cloud keeps.
REPORT_INTERVAL = 10.0
#: Nova's service version in the test cloud's release: a lower one trips minimum-version checks.
SERVICE_VERSION = 74


def _kombu() -> Any:
    # kombu (oslo.messaging's AMQP library) ships no type hints.
    return importlib.import_module("kombu")


def host_name(index: int) -> str:
    return f"{PREFIX}{index:04d}"


def sql(statement: str) -> str:
    """One statement on Nova's cell database, as the test cloud's root over its socket."""
    proc = subprocess.run(
        ["mariadb", f"--socket={HOME / 'run/mysqld.sock'}", "-u", "root", "-N", "nova"],
        input=statement,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"simcell: SQL failed: {proc.stderr.strip()}")
    return proc.stdout


def forget_services() -> None:
    sql(f"DELETE FROM services WHERE host LIKE '{PREFIX}%';")  # noqa: S608 -- our own constant


def register_services(hosts: list[str]) -> None:
    forget_services()  # a killed run's records
    rows = ",".join(
        f"(UTC_TIMESTAMP(), UTC_TIMESTAMP(), '{h}', 'nova-compute', 'compute', 1, 0, 0, "
        f"UTC_TIMESTAMP(), 0, {SERVICE_VERSION}, '{uuid.uuid4()}')"
        for h in hosts
    )
    columns = (
        "created_at, updated_at, host, `binary`, topic, report_count, disabled, deleted, "
        "last_seen_up, forced_down, version, uuid"
    )
    # Every value is made here (host names, uuids, constants): nothing to inject.
    sql(f"INSERT INTO services ({columns}) VALUES {rows};")  # noqa: S608


def heartbeat(stop: threading.Event) -> None:
    while not stop.wait(REPORT_INTERVAL):
        fresh = "updated_at = UTC_TIMESTAMP(), last_seen_up = UTC_TIMESTAMP()"
        sql(f"UPDATE services SET {fresh} WHERE host LIKE '{PREFIX}%';")  # noqa: S608


def transport_url() -> str:
    return (HOME / "transport-url").read_text().strip()


def amqp_url() -> str:
    """The same broker and vhost, in kombu's scheme."""
    return "amqp://" + transport_url().split("://", 1)[1]


def serve(hosts: list[str]) -> list[Any]:
    """One real oslo.messaging RPC server per host, ping endpoint on."""
    import oslo_messaging as om
    from oslo_config import cfg

    # A config file, since the option only exists once the first RPC server registers it.
    conf = HOME / "simcell.conf"
    conf.write_text("[DEFAULT]\nrpc_ping_enabled = true\n")
    cfg.CONF([], project="simcell", default_config_files=[str(conf)], default_config_dirs=[])
    transport = om.get_rpc_transport(cfg.CONF, url=transport_url())
    servers = []
    for host in hosts:
        target = om.Target(topic="compute", server=host, exchange="nova")
        server = om.get_rpc_server(transport, target, [], executor="threading")
        server.start()
        servers.append(server)
    return servers


def wait_consumed(hosts: list[str], timeout: float = 300.0) -> None:
    """Until every host's queue has its consumer: an RPC server's start() does not wait."""
    creds = json.loads((HOME / "rabbit.json").read_text())
    token = base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()
    query = urllib.request.Request(
        f"{creds['url']}/api/consumers/%2F?columns=queue.name",
        headers={"Authorization": f"Basic {token}"},
    )
    wanted = {f"compute.{h}" for h in hosts}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(query, timeout=30) as answer:
            if wanted <= {c["queue"]["name"] for c in json.load(answer)}:
                return
        time.sleep(0.5)
    raise SystemExit(f"simcell: the hosts' queues had no consumer after {timeout:g} s")


def deafen(hosts: list[str], mode: str) -> Any:
    """Each host's queue, without a consumer (gone) or with one that never acks (frozen)."""
    kombu = _kombu()
    conn = kombu.Connection(amqp_url())
    channel = conn.channel()
    exchange = kombu.Exchange("nova", type="topic", durable=False)
    queues = [
        kombu.Queue(f"compute.{h}", exchange, routing_key=f"compute.{h}", durable=False)
        for h in hosts
    ]
    for queue in queues:
        queue(channel).declare()
    if mode == "frozen":
        channel.basic_qos(prefetch_size=0, prefetch_count=1, a_global=False)
        consumer = kombu.Consumer(channel, queues, callbacks=[lambda body, message: None])
        consumer.consume()  # taken, never acknowledged nor answered
    return conn


def drop_queues(hosts: list[str]) -> None:
    """The simulated hosts' queues: oslo.messaging's are not auto-deleted."""
    kombu = _kombu()
    with kombu.Connection(amqp_url()) as conn:
        channel = conn.channel()
        for host in hosts:
            kombu.Queue(f"compute.{host}")(channel).delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--deaf", type=int, default=0, help="how many hosts are deaf (the last)")
    parser.add_argument("--mode", choices=["gone", "frozen"], default="gone")
    parser.add_argument("--ready", type=Path, help="file written once every host is served")
    args = parser.parse_args(argv)
    if not 1 <= args.hosts <= 2000 or not 0 <= args.deaf <= args.hosts:
        parser.error("--hosts must be 1 to 2000 and --deaf 0 to --hosts")
    # oslo.messaging and kombu warn about every channel closed at shutdown: noise here.
    logging.basicConfig(level=logging.ERROR)
    hosts = [host_name(i) for i in range(1, args.hosts + 1)]
    healthy, deaf = hosts[: args.hosts - args.deaf], hosts[args.hosts - args.deaf :]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    servers: list[Any] = []
    link = None
    try:
        servers = serve(healthy)
        wait_consumed(healthy)
        link = deafen(deaf, args.mode) if deaf else None
        if deaf and args.mode == "frozen":
            wait_consumed(deaf)
        register_services(hosts)
        beat = threading.Thread(target=heartbeat, args=(stop,), daemon=True)
        beat.start()
        took = time.monotonic() - started
        print(f"simcell: {len(hosts)} hosts ({len(deaf)} deaf, {args.mode}) up in {took:.1f} s")
        if args.ready:
            args.ready.write_text(" ".join(deaf) + "\n")
        while not stop.wait(1.0):
            pass  # a signal handler sets it
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        forget_services()
        for server in servers:
            server.stop()
        for server in servers:
            server.wait()
        if link is not None:
            link.release()
        drop_queues(hosts)
        if args.ready:
            args.ready.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""minicloud: a real single-node OpenStack for testing the harness.

python3 ci/minicloud up | down | status | logs SERVICE [-n N]
python3 ci/minicloud fault broker-restart [--outage SECONDS]
python3 ci/minicloud fault broker-moved|wedged|heal SERVICE
    SERVICE: nova-scheduler, nova-conductor, nova-compute (the first host, mc-compute1),
    nova-compute@HOST (mc-compute1, mc-compute2) or neutron-dhcp-agent
python3 ci/minicloud fault stop|start SERVICE
python3 ci/minicloud fault disable-compute|enable-compute [HOST]   (every host by default)
"""

from __future__ import annotations

import argparse
import fcntl
import socket
import sys
import time
from collections import deque

import cloud
import procs
from configs import PROXIED
from layout import COMPUTES, Layout, MinicloudError


def proxy_command(lay: Layout, command: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        try:
            sock.connect(str(lay.proxy_control))
        except OSError as exc:
            raise MinicloudError("the AMQP fault proxy is not running; run `up` first") from exc
        sock.sendall(command.encode() + b"\n")
        return sock.makefile().readline().strip()


def proxied(target: str) -> str:
    """The proxy listener of ``target``: a service name, or ``nova-compute@HOST``."""
    by_host = {f"nova-compute@{host}": name for name, host in COMPUTES.items()}
    name = by_host.get(target, target)
    if name not in PROXIED:
        valid = [*PROXIED, *by_host]
        raise MinicloudError(f"unknown service {target!r}; valid: {', '.join(valid)}")
    return name


def fault(lay: Layout, args: argparse.Namespace) -> None:
    names = cloud.service_names(lay)
    kind, target = args.kind, args.service
    if kind in ("broker-moved", "wedged", "heal"):
        print(proxy_command(lay, f"{kind} {proxied(target)}"))
    elif kind in ("stop", "start"):
        if target not in names:
            raise MinicloudError(f"unknown service {target!r}; valid: {', '.join(names)}")
        if kind == "stop":
            procs.stop(lay, target)
        elif procs.read_pid(lay, target) is None:
            cloud.start_one(lay, target)
        print(f"{kind} {target}: done")
    elif kind == "broker-restart":
        procs.stop(lay, "rabbitmq")
        time.sleep(args.outage)
        cloud.start_one(lay, "rabbitmq")
        print(f"broker restarted after an outage of {args.outage:g} s")
    else:  # disable-compute / enable-compute
        if target and target not in COMPUTES.values():
            valid = ", ".join(COMPUTES.values())
            raise MinicloudError(f"unknown compute host {target!r}; valid: {valid}")
        cloud.set_compute(lay, enabled=kind == "enable-compute", host=target or None)
        print(f"{kind}: done")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="minicloud", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="bring the test cloud up (idempotent)")
    sub.add_parser("down", help="stop every process of the test cloud")
    sub.add_parser("status", help="each service and its state")
    sub.add_parser("wait-healthy", help="wait until every nova service consumes and reports again")
    logs = sub.add_parser("logs", help="the tail of one service's log")
    logs.add_argument("service")
    logs.add_argument("-n", type=int, default=50)
    f = sub.add_parser("fault", help="inject or heal a fault")
    f.add_argument(
        "kind",
        choices=[
            "broker-restart",
            "broker-moved",
            "wedged",
            "heal",
            "stop",
            "start",
            "disable-compute",
            "enable-compute",
        ],
    )
    f.add_argument("service", nargs="?", default="")
    f.add_argument("--outage", type=float, default=0.0, help="seconds the broker stays down")
    args = parser.parse_args(argv)
    lay = Layout.default()
    lay.home.mkdir(parents=True, exist_ok=True)
    try:
        # One command at a time: parallel test workers all call `up`, and a fault
        # must not interleave with a start.
        lock = (lay.home / ".lock").open("w")
        if args.command != "status" and args.command != "logs":
            fcntl.flock(lock, fcntl.LOCK_EX)
        if args.command == "up":
            cloud.up(lay)
        elif args.command == "wait-healthy":
            cloud.wait_healthy(lay)
        elif args.command == "down":
            cloud.down(lay)
        elif args.command == "status":
            return cloud.status(lay)
        elif args.command == "logs":
            names = [*cloud.service_names(lay), "setup"]
            if args.service not in names:
                raise MinicloudError(f"unknown service {args.service!r}; valid: {', '.join(names)}")
            with lay.log(args.service).open(errors="replace") as log:
                sys.stdout.writelines(deque(log, maxlen=args.n))
        else:
            fault(lay, args)
    except MinicloudError as exc:
        print(f"minicloud: error: {exc}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(f"minicloud: error: {exc.filename} not found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A TCP proxy between individual nova services and RabbitMQ that can fake a lost broker.

Each nova service under test reaches the broker through its own listening port, so a
fault hits exactly one service.  Modes, applied to the connections open at that moment:

* ``broker-moved``: the broker side is closed (RabbitMQ drops the service's consumers)
  while the service's socket stays open and silent, as when a RabbitMQ pod moved and
  the client never noticed;
* ``wedged``: both sockets stay open but no byte flows: the broker still counts a
  consumer, and its deliveries pile up unacknowledged;
* ``heal``: the frozen connections are closed, so the service reconnects.

Connections opened after a fault pass through normally: nova-compute's state reports
go out on fresh connections, which is why the real incident looked healthy.

Stdlib only: it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass, field

MODES = ("broker-moved", "wedged")


@dataclass(eq=False)
class Link:
    name: str
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    frozen: bool = False

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class Proxy:
    upstream_host: str
    upstream_port: int
    links: dict[str, set[Link]] = field(default_factory=dict)
    faults: dict[str, str] = field(default_factory=dict)

    async def serve(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), timeout=5
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        link = Link(name, writer, up_writer)
        self.links.setdefault(name, set()).add(link)
        try:
            await asyncio.gather(
                self._pump(link, reader, writer=up_writer),
                self._pump(link, up_reader, writer=writer),
            )
        finally:
            self.links[name].discard(link)
            link.close()

    async def _pump(
        self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                data = await reader.read(65536)
            except (OSError, asyncio.IncompleteReadError):
                data = b""
            if not data:
                break
            if link.frozen:
                continue  # swallowed: the peer hears nothing
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                break
        if not link.frozen:
            link.close()
        elif writer is link.upstream:
            # The client side of a frozen link ended: nothing left to hold open.
            link.close()

    def apply(self, mode: str, name: str) -> str:
        links = self.links.get(name, set())
        if mode == "heal":
            for link in list(links):
                link.close()
            self.faults.pop(name, None)
            return f"healed {name}: closed {len(links)} frozen connection(s)"
        for link in links:
            link.frozen = True
            if mode == "broker-moved":
                with contextlib.suppress(Exception):
                    link.upstream.close()
        self.faults[name] = mode
        return f"{mode} {name}: froze {len(links)} connection(s)"

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), timeout=5)).decode().split()
            if line == ["status"]:
                reply = json.dumps(
                    {
                        "faults": self.faults,
                        "connections": {n: len(ls) for n, ls in sorted(self.links.items())},
                    }
                )
            elif len(line) == 2 and line[0] in (*MODES, "heal"):
                reply = self.apply(line[0], line[1])
            else:
                reply = f"error: unknown command {' '.join(line)!r}"
            writer.write(reply.encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()


async def run(args: argparse.Namespace) -> None:
    proxy = Proxy(args.upstream_host, args.upstream_port)
    servers = []
    for spec in args.listen:
        name, _, port = spec.partition("=")

        async def handler(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, name: str = name
        ) -> None:
            await proxy.serve(name, r, w)

        servers.append(await asyncio.start_server(handler, "127.0.0.1", int(port)))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.control)
    servers.append(await asyncio.start_unix_server(proxy.control, args.control))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("amqproxy ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream-host", default="127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--listen", action="append", default=[], metavar="NAME=PORT")
    parser.add_argument("--control", required=True, help="path of the control unix socket")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

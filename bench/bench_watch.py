"""The watcher's numbers on the test cloud (run by hand, not in CI).

    export OS_CLIENT_CONFIG_FILE=~/.cache/e2etests-minicloud/clouds.yaml
    .venv/bin/python bench/bench_watch.py cost [--rounds 10]
    .venv/bin/python bench/bench_watch.py listener [--rounds 12]
    .venv/bin/python bench/bench_watch.py growth [--warm 50] [--rounds 300] [--copies 1,10] \
        [--boots] [--untraced]
    .venv/bin/python bench/bench_watch.py red [--repeat 3] [--interval 10]
    .venv/bin/python bench/bench_watch.py soak [--minutes 20] [--restart-every 120]
    .venv/bin/python bench/bench_watch.py --interval 30 memory [--copies 200] [--minutes 30] \
        [--variant NAME=VALUE]

``cost``: the cheap round of one cloud, as the watcher runs it (one reading of the services
shared by the round's checks, the broker read once against the previous round's sample, the
ping swept on a transport kept open) and, side by side in the same run, as a one-shot run makes the
same observations (every check reads for itself, two samples 3 s apart, a child per ping).
Rounds are ``--interval`` apart, and the CPU the helpers spend between them is charged to the
rounds. Printed per round: HTTP requests (every request, the management API's included), the
harness's CPU and the ping processes' CPU.

``listener``: the ping keeper's own CPU per ``--interval`` with one sweep of the first cloud's
RPC servers in it, side by side in one run: the keeper as the watcher runs it, and the same
keeper with oslo's reply listener left as oslo ships it (it polls again 1 ms after each reply,
doubling up to 5 s). Both are sent the same sweeps at the same moments.

``growth``: the first cloud's cheap rounds in one process, back to back (the consumer check
compares with the previous round's sample, its gap cut to 0.05 s), under tracemalloc: the
Python memory still held after ``--rounds`` rounds that was not held after ``--warm``, per
round, the process's RSS before and after, and the lines that allocated most of the growth.
``--copies 1,10`` runs one child per count, with that many entries (copies of the cloud, each
its own connection and probe) taking their rounds in turn, and compares: growth that scales
with the entries is kept per entry, growth that does not is a cache filling once. Run it again
with a larger ``--warm`` to see whether the growth per round falls (filling) or holds (a leak).
``--boots``: the same with a canary boot (create, verify, delete) as the round. ``--untraced``:
no tracemalloc (its tables grow with what it traces), the process's RSS read 10 times through the
rounds, and the growth per round in the first and the second half.

``red``: ``e2etests watch`` in a child; once its gate is open, nova-compute's broker moves
(``fault broker-moved nova-compute``) and the gate is asked every 0.25 s until it answers 503
naming a ``compute.`` queue. Then heal, and the gate must open again. The median over the
repeats is compared with 2 x interval + 10 s, and the anchors' defaults are printed beside it.

``memory``: a watch of ``--copies`` cloud entries (copies of the test clouds, written to a
clouds.yaml of their own) for ``--minutes``; the resident memory of the watcher and of its
ping server, sampled every round. Printed: RSS after the first full round, at the end, the
growth, and the rounds observed (target: <= 200 MB, <= 10 MB growth over 1000 rounds), and the
least-squares slope once every cloud has booted. ``--variant NAME=VALUE`` runs another watcher
beside it with that environment variable set (``MALLOC_ARENA_MAX=2``, say), on entries of its
own, sampled at the same moments.

``soak``: a watch of every test cloud for ``--minutes`` with a broker restart (3 s outage)
every ``--restart-every`` seconds. Printed: red transitions (target 0), could-not-measure
notices, and after SIGTERM the servers the watcher left (target 0).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import requests.adapters

from e2etests import config
from e2etests.cloud import Cloud
from e2etests.lifecycle import run_prefix
from e2etests.watch import loop, runner

ROOT = pathlib.Path(__file__).resolve().parent.parent
MINICLOUD = [sys.executable, str(ROOT / "ci" / "minicloud")]


# -- cost ---------------------------------------------------------------------------------


class Counted:
    """Every HTTP request of this process: openstacksdk's and the management API's."""

    def __init__(self) -> None:
        self.calls = itertools.count()
        sdk = requests.adapters.HTTPAdapter.send
        stdlib = urllib.request.OpenerDirector.open
        counter = self.calls

        def send(self: requests.adapters.HTTPAdapter, *args: Any, **kwargs: Any) -> Any:
            next(counter)  # atomic under the GIL, unlike += from threads
            return sdk(self, *args, **kwargs)

        def open_(self: urllib.request.OpenerDirector, *args: Any, **kwargs: Any) -> Any:
            next(counter)
            return stdlib(self, *args, **kwargs)

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
        urllib.request.OpenerDirector.open = open_  # type: ignore[method-assign]

    def now(self) -> int:
        return next(self.calls)  # each look costs one: subtracted by the caller


def _proc_cpu(pid: int) -> float:
    """CPU seconds of a live process and of the children it reaped (its sweeps)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _cheap_rounds(
    clouds: list[str], run_id: str, interval: float, *, boot: bool = False
) -> tuple[runner.CloudRunner, loop.Plan, Callable[[], None]]:
    """The watcher's runner for ``clouds``, the first one's plan, and one round: each cloud's
    cheap checks in turn (with ``boot``, its canary boot instead), each check passing."""
    targets = config.load_targets(clouds)
    checks = runner.CloudRunner(targets, run_id=run_id, interval=interval)
    plan = loop.plan_for(targets[0])
    stop = threading.Event()

    def one_round() -> None:
        for entry in clouds:
            for check in (plan.boot,) if boot else plan.cheap:
                outcome = checks.run(entry, check, drained_at=None, stop=stop)
                if outcome.status.value != "passed":
                    raise SystemExit(f"{entry} {check}: {outcome.status.value}: {outcome.culprit}")

    return checks, plan, one_round


def _cost(
    counted: Counted, cloud: str, rounds: int, interval: float, *, watcher_mode: bool
) -> dict[str, float]:
    checks, plan, one_round = _cheap_rounds([cloud], "bench-watch", interval)
    stop = threading.Event()

    if not watcher_mode:
        # The probe as a one-shot run builds it: nothing shared, two samples, a child per ping.
        checks.run(cloud, plan.cheap[0], drained_at=None, stop=stop)
        probe = checks._kept[cloud].probe
        assert probe is not None
        probe.share_for = probe.carry_for = 0.0
        probe.pinger = None
    one_round()  # tokens, version documents, the server's start: paid once per watch
    time.sleep(interval)
    one_round()
    helpers = checks._pinger.pids
    before = (counted.now(), time.process_time(), _children_cpu())
    server_before = sum(_proc_cpu(pid) for pid in helpers)
    for _ in range(rounds):
        # The watcher's rounds are an interval apart. The pause is charged: what the kept
        # transports' threads do meanwhile (heartbeats, the reply listener) is the round's.
        time.sleep(interval)
        one_round()
    requests_, cpu, children = counted.now(), time.process_time(), _children_cpu()
    server = sum(_proc_cpu(pid) for pid in helpers) - server_before
    checks.close()
    return {
        "requests": (requests_ - before[0] - 1) / rounds,
        "cpu_ms": 1000 * (cpu - before[1]) / rounds,
        "ping_cpu_ms": 1000 * (children - before[2] + server) / rounds,
    }


def cost(ns: argparse.Namespace) -> None:
    counted = Counted()
    for cloud in ns.clouds:
        watch = _cost(counted, cloud, ns.rounds, ns.interval, watcher_mode=True)
        once = _cost(counted, cloud, ns.rounds, ns.interval, watcher_mode=False)
        print(f"{cloud}: a cheap round (heartbeats, consumers, RPC ping), {ns.rounds} rounds each")
        for name, row in (("watcher", watch), ("one-shot", once)):
            total = row["cpu_ms"] + row["ping_cpu_ms"]
            print(
                f"  {name:9} {row['requests']:5.1f} HTTP requests  harness CPU "
                f"{row['cpu_ms']:6.1f} ms  ping processes {row['ping_cpu_ms']:6.1f} ms  "
                f"total {total:6.1f} ms"
            )
        ratio = (watch["cpu_ms"] + watch["ping_cpu_ms"]) / (once["cpu_ms"] + once["ping_cpu_ms"])
        print(
            f"  watcher/one-shot: requests {watch['requests'] / once['requests']:.2f}x, "
            f"CPU {ratio:.2f}x  (targets: <= 6 requests, <= 20 ms CPU per cloud and round)"
        )


# -- listener -----------------------------------------------------------------------------

#: The keeper, as the harness starts it; ``{quiet}`` chooses whether oslo's listener is tuned.
KEEPER = """import sys
from e2etests.mq import pingkeeper
if not {quiet}:
    pingkeeper.quiet_reply_listener = lambda: None
pingkeeper.serve(sys.stdin, sys.stdout)
"""


def listener(ns: argparse.Namespace) -> None:
    from e2etests.checks.mq import probe_for

    cloud = Cloud(config.load_targets([ns.clouds[0]])[0])
    probe = probe_for(cloud, None)
    if probe is None or probe.settings.transport_url is None:
        raise SystemExit(f"{cloud.id}: no transport URL in its e2etests.mq block")
    targets = [dataclasses.asdict(t) for t in probe.ping_targets(probe.services())]
    url = probe.settings.transport_url.reveal()
    keepers = {
        name: subprocess.Popen(
            [sys.executable, "-c", KEEPER.format(quiet=quiet)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name, quiet in (("as the watcher runs it", True), ("oslo's listener as shipped", False))
    }

    def sweep_all(i: int) -> None:
        for proc in keepers.values():
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"id": i, "url": url, "timeout": 5.0, "targets": targets}))
            proc.stdin.write("\n")
            proc.stdin.flush()
        for name, proc in keepers.items():
            assert proc.stdout is not None
            answer = json.loads(proc.stdout.readline())
            if not all(r.get("ok") for r in answer.get("results", [{}])):
                raise SystemExit(f"keeper {name}: a ping failed: {answer}")

    sweep_all(0)  # the transports are made: paid once per watch
    time.sleep(ns.interval)
    before = {name: _proc_cpu(p.pid) for name, p in keepers.items()}
    for i in range(1, ns.rounds + 1):
        sweep_all(i)
        time.sleep(ns.interval)
    used = {n: 1000 * (_proc_cpu(p.pid) - before[n]) / ns.rounds for n, p in keepers.items()}
    for proc in keepers.values():
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    print(
        f"{cloud.id}: ping keeper CPU per {ns.interval:g} s with one sweep of {len(targets)} "
        f"RPC servers, {ns.rounds} rounds (read in 10 ms ticks)"
    )
    for name, ms in used.items():
        print(f"  {name:28} {ms:6.1f} ms")
    tuned, shipped = used.values()
    print(f"  ratio {tuned / shipped:.2f}x")


# -- growth -------------------------------------------------------------------------------


def growth(ns: argparse.Namespace) -> None:
    """Each ``--copies`` count in a child process of its own, one after the other, then the
    counts side by side: a cache that fills once per process holds about as much whatever the
    count; memory kept per cloud entry grows with it."""
    if ns.child:
        print(json.dumps(_growth(ns)))
        return
    source = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not source:
        raise SystemExit("set OS_CLIENT_CONFIG_FILE to the test cloud's clouds.yaml")
    out = pathlib.Path(ns.out)
    runs: dict[int, dict[str, Any]] = {}
    for count in ns.copies:
        fleet = _copies(pathlib.Path(source), count, out, f"growth{count}", only=ns.clouds[0])
        argv = [sys.executable, __file__, "--clouds", ns.clouds[0], "--out", str(out)]
        argv += ["--interval", f"{ns.interval:g}", "growth", "--child"]
        argv += ["--warm", str(ns.warm), "--rounds", str(ns.rounds), "--copies", str(count)]
        argv += ["--boots"] if ns.boots else []
        argv += ["--untraced"] if ns.untraced else []
        env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(fleet)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"growth with {count} entries failed: {done.stderr.strip()[-2000:]}")
        runs[count] = json.loads(done.stdout.strip().splitlines()[-1])
    what = "canary boot" if ns.boots else "cheap round"
    print(
        f"growth: copies of {ns.clouds[0]}, each entry's {what} in turn; {ns.rounds} rounds "
        f"after {ns.warm}, back to back (target: <= 10 MB over 1000 rounds with 200 entries)"
    )
    for count, run in runs.items():
        if "curve" in run:
            _rss_curve(count, run, ns.warm)
            continue
        print(
            f"  {count:4d} entries: {run['seconds']:5.0f} s; Python memory held "
            f"{run['traced'] / 1024:+8.1f} KiB ({run['traced'] / ns.rounds:+7.0f} B per round, "
            f"{run['traced'] / ns.rounds / count:+6.0f} B per entry and round); RSS "
            f"{run['rss_before'] / 1024:.1f} -> {run['rss_after'] / 1024:.1f} MB "
            f"({(run['rss_after'] - run['rss_before']) / ns.rounds:+.1f} KiB per round)"
        )
        for line in run["top"]:
            print(f"      {line}")
    if len(runs) > 1 and not ns.untraced:
        low, high = min(runs), max(runs)
        per_round = {c: runs[c]["traced"] / ns.rounds for c in (low, high)}
        ratio = per_round[high] / per_round[low] if per_round[low] else float("nan")
        print(
            f"  held per round, {high} entries / {low}: {ratio:.2f}x for {high / low:g}x the "
            f"entries (about {high / low:g}x: kept per entry; about 1x: a cache filling once)"
        )


def _rss_curve(count: int, run: dict[str, Any], warm: int) -> None:
    curve, step = run["curve"], run["step"]
    half = len(curve) // 2
    early = (curve[half] - curve[0]) / (half * step)
    late = (curve[-1] - curve[half]) / ((len(curve) - 1 - half) * step)
    print(
        f"  {count:4d} entries, untraced: {run['seconds']:5.0f} s; RSS {curve[0] / 1024:.1f} -> "
        f"{curve[-1] / 1024:.1f} MB; per round {early:+.2f} KiB in the first half, "
        f"{late:+.2f} KiB in the second ({late / count:+.3f} KiB per entry and round)"
    )
    marks = "  ".join(f"{1 + warm + i * step}: {kib / 1024:.1f}" for i, kib in enumerate(curve))
    print(f"      RSS (MB) after round  {marks}")


def _growth(ns: argparse.Namespace) -> dict[str, Any]:
    import gc
    import linecache
    import tracemalloc

    import yaml

    path = os.environ["OS_CLIENT_CONFIG_FILE"]
    entries = sorted(yaml.safe_load(pathlib.Path(path).read_text())["clouds"])
    checks, _, one_round = _cheap_rounds(entries, "bench-growth", ns.interval, boot=ns.boots)

    def rounds(count: int) -> None:
        for _ in range(count):
            one_round()
            time.sleep(0.1)

    rounds(1)
    for entry in entries:
        probe = checks._kept[entry].probe
        assert probe is not None
        probe.sample_gap = 0.05  # back to back, each round still compares with the one before
    if ns.untraced:
        # The tracer's own tables grow with what it sees: RSS alone is read without it.
        rounds(ns.warm)
        started = time.monotonic()
        curve = [_rss_kib(os.getpid())]
        step = max(1, ns.rounds // 10)
        for done in range(0, ns.rounds, step):
            rounds(min(step, ns.rounds - done))
            curve.append(_rss_kib(os.getpid()))
        checks.close()
        return {"seconds": time.monotonic() - started, "step": step, "curve": curve}
    tracemalloc.start(10)
    ours = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    ours.append(tracemalloc.Filter(False, linecache.__file__))
    rounds(ns.warm)
    gc.collect()
    before = tracemalloc.take_snapshot().filter_traces(ours)
    rss_before = _rss_kib(os.getpid())
    started = time.monotonic()
    rounds(ns.rounds)
    gc.collect()
    after = tracemalloc.take_snapshot().filter_traces(ours)
    rss_after = _rss_kib(os.getpid())
    seconds = time.monotonic() - started
    checks.close()
    top = []
    for diff in after.compare_to(before, "lineno")[:8]:
        frame = diff.traceback[0]
        where = frame.filename.split("site-packages/")[-1].replace(f"{ROOT}/", "")
        size, count = diff.size_diff / 1024, diff.count_diff
        top.append(f"{size:+7.1f} KiB {count:+6d} blocks  {where}:{frame.lineno}")
    return {
        "seconds": seconds,
        "traced": sum(d.size_diff for d in after.compare_to(before, "filename")),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "top": top,
    }


# -- a watcher in a child -----------------------------------------------------------------


class Watch:
    """``e2etests watch`` in a child process, its log in a file, its gate asked over HTTP."""

    def __init__(
        self, log: pathlib.Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "e2etests", "watch", "--listen", "127.0.0.1:0", *args],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
        self.url = self._url()

    def _url(self) -> str:
        for _ in range(600):
            found = re.search(r"serving (http://\S+)", self.log.read_text())
            if found:
                return found.group(1)
            if self.proc.poll() is not None:
                raise SystemExit(f"the watcher exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise SystemExit("the watcher never said where it serves")

    def gate(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"{self.url}/gate", timeout=5) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def boots(self) -> int:
        """Canary boots the watcher timed (its boot histogram's counts)."""
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        counts = re.findall(r"^e2etests_watch_boot_seconds_count\{[^}]*\} (\S+)$", text, re.M)
        return int(sum(float(c) for c in counts))

    def said(self, word: str) -> list[str]:
        return [
            line
            for line in self.log.read_text().splitlines()
            if line.startswith(f"e2etests watch: {word} ")
        ]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=60)
        self.out.close()


@contextlib.contextmanager
def watching(
    log: pathlib.Path, args: list[str], env: dict[str, str] | None = None
) -> Iterator[Watch]:
    watch = Watch(log, args, env)
    try:
        yield watch
    finally:
        watch.stop()


def wait_for(what: str, seconds: float, done: Callable[[], bool], every: float = 0.25) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if done():
            return time.monotonic() - started
        time.sleep(every)
    raise SystemExit(f"{what}: not within {seconds:.0f} s")


def fault(*args: str) -> None:
    subprocess.run([*MINICLOUD, "fault", *args], check=True, capture_output=True, cwd=ROOT)


def _red_on_compute(watch: Watch) -> bool:
    code, doc = watch.gate()
    return code == 503 and any(
        "compute." in reason and c["verdict"] == "red"
        for c in doc["clouds"]
        for reason in c["reasons"]
    )


def red(ns: argparse.Namespace) -> None:
    log = pathlib.Path(ns.out) / "watch-red.log"
    took: list[float] = []
    with watching(
        log, ["--interval", f"{ns.interval:g}", "--boot-every", f"{ns.boot_every:g}"]
    ) as watch:
        try:
            for i in range(ns.repeat):
                wait_for("the gate opens", 300, lambda: watch.gate()[0] == 200, every=1.0)
                time.sleep(ns.interval * (i + 1) / (ns.repeat + 1))  # land at varied moments
                fault("broker-moved", "nova-compute")
                started = time.monotonic()
                wait_for("the gate turns red on compute.", 180, lambda: _red_on_compute(watch))
                took.append(time.monotonic() - started)
                print(f"  run {i + 1}: /gate 503 naming compute. {took[-1]:.1f} s after the fault")
                fault("heal", "nova-compute")
        finally:
            fault("heal", "nova-compute")
    target = 2 * ns.interval + 10
    median = statistics.median(took)
    print(
        f"time to red at --interval {ns.interval:g}: median {median:.1f} s over {len(took)} "
        f"(min {min(took):.1f}, max {max(took):.1f}); target <= {target:.0f} s; "
        f"{median / target:.2f}x the target"
    )
    print(
        "  anchors at their defaults: kuberhealthy >= 900 s, Flagger 300 s, "
        "openstack-exporter never (a deaf consumer looks healthy)"
    )


# -- soak ---------------------------------------------------------------------------------


def _left(clouds: list[str]) -> dict[str, list[str]]:
    prefix = run_prefix(loop.WATCH_RUN_ID)
    left: dict[str, list[str]] = {}
    for target in config.load_targets(clouds):
        cloud = Cloud(target)
        try:
            names = [s.name for s in cloud.connect().compute.servers() if s.name.startswith(prefix)]
        finally:
            cloud.close()
        left[target.id] = names
    return left


def soak(ns: argparse.Namespace) -> None:
    log = pathlib.Path(ns.out) / "watch-soak.log"
    restarts = 0
    started = time.monotonic()
    with watching(
        log, ["--interval", f"{ns.interval:g}", "--boot-every", f"{ns.boot_every:g}"]
    ) as watch:
        wait_for("the gate opens", 300, lambda: watch.gate()[0] == 200, every=1.0)
        print(f"  gate open after {time.monotonic() - started:.0f} s; soaking {ns.minutes:g} min")
        end = time.monotonic() + ns.minutes * 60
        next_restart = time.monotonic() + ns.restart_every
        while time.monotonic() < end:
            if time.monotonic() >= next_restart:
                fault("broker-restart", "--outage", "3")
                restarts += 1
                next_restart += ns.restart_every
            time.sleep(1.0)
        reds, unmeasured = watch.said("RED"), watch.said("COULD NOT MEASURE")
        boots = watch.boots()
    left = _left(ns.clouds)
    leaked = sum(len(v) for v in left.values())
    print(
        f"soak: {ns.minutes:g} min at --interval {ns.interval:g}, {restarts} broker restarts "
        f"(3 s outage each), {boots} canary boots: {len(reds)} red transitions (target 0), "
        f"{len(unmeasured)} could-not-measure notices, {leaked} servers left after SIGTERM "
        "(target 0)"
    )
    for line in reds + unmeasured:
        print(f"  {line}")
    for cloud, names in left.items():
        if names:
            print(f"  left on {cloud}: {', '.join(names)}")


# -- memory -------------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    """Proportional set size: shared pages split among their sharers, so a tree's sum is its
    real footprint (RSS would count a forked sweep's pages, shared with its server, twice)."""
    try:
        text = pathlib.Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0  # gone since it was listed (a sweep ends in milliseconds)
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the ping server, a sweep in flight)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in pathlib.Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def _copies(
    source: pathlib.Path, count: int, out: pathlib.Path, prefix: str = "fleet", only: str = ""
) -> pathlib.Path:
    """A clouds.yaml of ``count`` entries, ``fleet-000``.., each a copy of one of ``source``'s
    clouds in turn (of ``only``, if given); the rest of ``source`` is kept."""
    import yaml

    data = yaml.safe_load(source.read_text())
    names = [only] if only else sorted(data["clouds"])
    data["clouds"] = {
        f"{prefix}-{i:03d}": data["clouds"][names[i % len(names)]] for i in range(count)
    }
    path = out / f"clouds-{count}{'' if prefix == 'fleet' else '-' + prefix}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def memory(ns: argparse.Namespace) -> None:
    source = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if not source:
        raise SystemExit("set OS_CLIENT_CONFIG_FILE to the test cloud's clouds.yaml")
    out = pathlib.Path(ns.out)
    # One watcher in the bench's own environment, and one per --variant beside it. Each has
    # entries of its own name: watchers sharing entries would sweep each other's canaries.
    preload = os.environ.get("LD_PRELOAD")
    first = "as started" + (f" (LD_PRELOAD={preload})" if preload else " (the system's malloc)")
    variants: list[tuple[str, dict[str, str]]] = [(first, {})]
    for assignment in ns.variant:
        name, _, value = assignment.partition("=")
        variants.append((assignment, {name: value}))
    args = ["--interval", f"{ns.interval:g}", "--boot-every", f"{ns.boot_every:g}"]
    samples: dict[str, list[tuple[float, int, int]]] = {v: [] for v, _ in variants}
    with contextlib.ExitStack() as stack:
        watches = {}
        for i, (label, extra) in enumerate(variants):
            prefix = "fleet" if i == 0 else f"fleet{i}"
            fleet = _copies(pathlib.Path(source), ns.copies, out, prefix)
            env = {**os.environ, **extra, "OS_CLIENT_CONFIG_FILE": str(fleet)}
            log = out / f"watch-memory-{ns.copies}{'' if i == 0 else '-' + prefix}.log"
            watches[label] = stack.enter_context(watching(log, args, env))
        started = time.monotonic()
        end = started + ns.minutes * 60
        while time.monotonic() < end:
            time.sleep(ns.interval)
            for label, watch in watches.items():
                if watch.proc.poll() is None:
                    tree = sum(_pss_kib(p) for p in _tree(watch.proc.pid))
                    rss = _rss_kib(watch.proc.pid)
                    samples[label].append((time.monotonic() - started, rss, tree))
            dead = [label for label, w in watches.items() if w.proc.poll() is not None]
            if dead:
                print(f"  the watcher {', '.join(dead)} exited: its samples end here")
                break
        unmeasured = {label: len(w.said("COULD NOT MEASURE")) for label, w in watches.items()}
    print(
        f"memory: {ns.copies} clouds per watcher at --interval {ns.interval:g} for "
        f"{ns.minutes:g} min (target <= 200 MB, <= 10 MB growth over 1000 rounds)"
    )
    for label, rows in samples.items():
        _memory_report(label, rows, unmeasured[label], ns)


def _kb_per_round(rows: list[tuple[float, int, int]], interval: float) -> float:
    """The least-squares slope of the watcher's RSS, in kB per round."""
    slope = statistics.linear_regression([r[0] for r in rows], [r[1] for r in rows])
    return slope.slope * interval * 1.024  # KiB per second -> kB per round


def _memory_report(
    label: str, rows: list[tuple[float, int, int]], unmeasured: int, ns: argparse.Namespace
) -> None:
    if len(rows) < 3:
        print(f"  {label}: too few samples")
        return
    first, last = rows[1], rows[-1]  # the first sample is before the first full round
    peak = max(r[2] for r in rows)
    rounds = int((last[0] - first[0]) / ns.interval)
    print(
        f"  {label}: watcher RSS {first[1] / 1024:.1f} -> {last[1] / 1024:.1f} MB "
        f"({(last[1] - first[1]) / 1024:+.1f} MB over {rounds} rounds); with its ping server "
        f"(PSS summed) {first[2] / 1024:.1f} -> {last[2] / 1024:.1f} MB, peak {peak / 1024:.1f} "
        f"MB; could-not-measure notices: {unmeasured}"
    )
    # Every cloud has booted once by one --boot-every: what grows after that is per round.
    settled = [r for r in rows if r[0] >= ns.boot_every + ns.interval]
    if len(settled) >= 3:
        per_round_kb = _kb_per_round(settled, ns.interval)
        print(
            f"    after every cloud's first boot ({len(settled)} samples from "
            f"{settled[0][0]:.0f} s): RSS {settled[0][1] / 1024:.1f} -> "
            f"{settled[-1][1] / 1024:.1f} MB, least-squares slope {per_round_kb:+.1f} kB per "
            f"round: {per_round_kb:+.1f} MB over 1000 rounds if it held (a projection)"
        )
        # A cache filling slows down; a leak holds its pace. Each half's own slope says which.
        half = len(settled) // 2
        if half >= 3:
            early, late = (
                _kb_per_round(part, ns.interval) for part in (settled[:half], settled[half:])
            )
            print(
                f"    slope in the first half {early:+.1f} kB per round, in the second half "
                f"{late:+.1f} kB per round"
            )
    for t, own, tree_kib in rows[:: max(1, len(rows) // 8)]:
        print(f"    {t:6.0f} s  watcher {own / 1024:6.1f} MB  tree {tree_kib / 1024:6.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--clouds", type=lambda v: v.split(","), default=["minicloud-a", "minicloud-b"]
    )
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--boot-every", type=float, default=120.0)
    parser.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("cost").add_argument("--rounds", type=int, default=10)
    sub.add_parser("listener").add_argument("--rounds", type=int, default=12)
    g = sub.add_parser("growth")
    g.add_argument("--warm", type=int, default=50)
    g.add_argument("--rounds", type=int, default=300)
    g.add_argument("--copies", type=lambda v: [int(c) for c in v.split(",")], default=[1])
    g.add_argument("--boots", action="store_true", help="canary boots, not cheap rounds")
    g.add_argument("--untraced", action="store_true", help="RSS alone, without tracemalloc")
    g.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    sub.add_parser("red").add_argument("--repeat", type=int, default=3)
    s = sub.add_parser("soak")
    s.add_argument("--minutes", type=float, default=20.0)
    s.add_argument("--restart-every", type=float, default=120.0)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    m = sub.add_parser("memory")
    m.add_argument("--copies", type=int, default=200)
    m.add_argument("--minutes", type=float, default=30.0)
    m.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also run a watcher with this environment variable set, beside the bench's own",
    )
    ns = parser.parse_args()
    pathlib.Path(ns.out).mkdir(parents=True, exist_ok=True)
    commands = {
        "cost": cost,
        "listener": listener,
        "growth": growth,
        "red": red,
        "soak": soak,
        "memory": memory,
    }
    commands[ns.what](ns)


if __name__ == "__main__":
    main()

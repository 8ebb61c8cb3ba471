"""Rolling node upgrade gated by the e2etests post-drain suites (Fabric 2/3).

For each node, in order: ``kubectl drain`` -> upgrade -> wait for Ready ->
``e2etests after-drain`` -> ``kubectl uncordon``, the last step only when the
harness exits 0. Any other outcome stops the roll with the node left cordoned,
so a broken cloud never gets a second node taken away from it.

    pip install fabric e2etests
    fab -f ci/fabfile.py roll --nodes node-a,node-b \\
        --upgrade 'sudo apt-get install -y kubelet=1.31.4-1.1 && sudo systemctl restart kubelet'

kubectl and e2etests run on this machine; the upgrade command runs on the node
over SSH (``--upgrade-on local`` runs it here instead, e.g. for a cloud
provider's CLI). ``{node}`` in the upgrade command is replaced by the node name.

Exit status: 0 every node rolled; 1, 2 or 3 as returned by ``e2etests
after-drain`` for the node the roll stopped at; 4 kubectl or the upgrade failed.
"""

from __future__ import annotations

import importlib
import re
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

# Exit statuses of `e2etests after-drain`, mirrored from e2etests.errors.ExitStatus
# so this file can be copied to a machine that only has fabric installed.
OK = 0
CHECK_FAILED = 1
USAGE_ERROR = 2
HARNESS_ERROR = 3
# Ours: kubectl or the upgrade command failed; distinct from the harness's codes.
ROLL_STEP_FAILED = 4

# GNU timeout's statuses when it had to stop (124) or kill (128 + 9) the command.
_TIMED_OUT = (124, 137)
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class Result(Protocol):
    """The part of invoke's ``Result`` used here."""

    @property
    def exited(self) -> int: ...


class Runner(Protocol):
    """The part of invoke's ``Context`` / fabric's ``Connection`` used here."""

    def run(self, command: str, *, warn: bool = ...) -> Result: ...


_F = TypeVar("_F", bound=Callable[..., object])


def _task(**options: object) -> Callable[[_F], _F]:
    # fabric is imported lazily so the module stays importable (and testable)
    # where only the harness is installed; `fab` itself always has it.
    try:
        fabric = importlib.import_module("fabric")
    except ImportError:
        return lambda fn: fn
    decorator: Callable[[_F], _F] = fabric.task(**options)
    return decorator


@dataclass(frozen=True)
class RollPlan:
    nodes: tuple[str, ...]
    upgrade: str
    upgrade_on_node: bool = True
    clouds: tuple[str, ...] = ()
    report_dir: str = ""
    e2etests: str = "e2etests"
    drain_timeout: str = "15m"
    upgrade_timeout: int = 3600
    ready_timeout: str = "10m"
    check_timeout: int = 1800
    #: an `e2etests watch` base URL: it judges each drain, and no node is drained while
    #: its gate is closed (a cloud broke between drains)
    watcher: str = ""


def _split(spec: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[,\s]+", spec) if part)


def parse_nodes(spec: str) -> tuple[str, ...]:
    """Split ``"a,b c"`` into node names; raise ValueError with one line on bad input."""
    nodes = _split(spec)
    if not nodes:
        raise ValueError("--nodes is empty: give a comma-separated list of node names")
    for node in nodes:
        if not _NODE_NAME.fullmatch(node):
            raise ValueError(f"--nodes: {node!r} is not a valid Kubernetes node name")
    duplicates = sorted({n for n in nodes if nodes.count(n) > 1})
    if duplicates:
        raise ValueError(f"--nodes lists {', '.join(duplicates)} more than once")
    return nodes


def drain_command(node: str, timeout: str) -> str:
    return shlex.join(
        [
            "kubectl",
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            f"--timeout={timeout}",
        ]
    )


def upgrade_command(plan: RollPlan, node: str) -> str:
    # str.replace, not str.format: upgrade commands often contain ${VAR}.
    script = plan.upgrade.replace("{node}", shlex.quote(node))
    return shlex.join(["timeout", "--kill-after=30", str(plan.upgrade_timeout), "sh", "-c", script])


def run_id_for(node: str, drained_at: str) -> str:
    """The run id of the check after draining ``node``: known here, so its leftovers are too."""
    stamp = "".join(ch for ch in drained_at if ch.isdigit())[:14]
    return f"drain-{stamp}-{node.split('.')[0]}"[:40].rstrip("-")


def sweep_command(plan: RollPlan, run_id: str) -> str:
    """Delete what the check run ``run_id`` left (it may have been killed), at any age."""
    argv = ["timeout", "300", plan.e2etests, "sweep", "--run-id", run_id, "--older-than", "0s"]
    return shlex.join(argv)


def after_drain_command(plan: RollPlan, node: str, drained_at: str) -> str:
    argv = [
        "timeout",
        # After the SIGTERM the harness deletes what it made: room for a delete_timeout.
        "--kill-after=90",
        str(plan.check_timeout),
        plan.e2etests,
        "after-drain",
        "--node",
        node,
        "--drained-at",
        drained_at,
        "--run-id",
        run_id_for(node, drained_at),
    ]
    if plan.clouds:
        argv += ["--clouds", *plan.clouds]
    if plan.report_dir:
        # One directory per node, so a later node does not overwrite the evidence.
        argv += ["--report-dir", f"{plan.report_dir.rstrip('/')}/{node}"]
    return shlex.join(argv)


def gate_now_command(plan: RollPlan) -> str:
    return shlex.join(["timeout", "60", plan.e2etests, "gate", "--watcher", plan.watcher])


def gate_command(plan: RollPlan, node: str, drained_at: str) -> str:
    argv = ["timeout", "--kill-after=10", str(plan.check_timeout + 30), plan.e2etests, "gate"]
    argv += ["--watcher", plan.watcher, "--node", node, "--drained-at", drained_at]
    return shlex.join([*argv, "--timeout", str(plan.check_timeout)])


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _say(line: str) -> None:
    print(f"roll: {line}", flush=True)


def _stop(line: str) -> None:
    print(f"roll: {line}", file=sys.stderr, flush=True)


def roll_nodes(
    plan: RollPlan,
    local: Runner,
    on_node: Callable[[str], Runner],
    now: Callable[[], str] = _utc_now,
) -> int:
    """Roll ``plan.nodes`` one at a time; return the roll's exit status.

    ``local`` runs kubectl and e2etests; ``on_node(name)`` gives a runner on
    that node for the upgrade command (unless ``plan.upgrade_on_node`` is false).
    """
    for index, node in enumerate(plan.nodes):
        pending = plan.nodes[index + 1 :]
        left = f" Not rolled yet: {', '.join(pending)}." if pending else ""

        if plan.watcher:
            closed = local.run(gate_now_command(plan), warn=True).exited
            if closed != OK:
                _stop(
                    f"the watcher's gate is not open (exit {closed}): a cloud is red or not "
                    f"judged; {node} not drained. Roll stopped.{left}"
                )
                return closed if closed in (CHECK_FAILED, USAGE_ERROR) else HARNESS_ERROR

        _say(f"draining {node}")
        if local.run(drain_command(node, plan.drain_timeout), warn=True).exited != 0:
            _stop(f"kubectl drain {node} failed; {node} may be cordoned. Roll stopped.{left}")
            return ROLL_STEP_FAILED
        # After the drain returned: the harness only accepts evidence newer than
        # this, i.e. produced after the pods left the node.
        drained_at = now()

        _say(f"upgrading {node}")
        runner = on_node(node) if plan.upgrade_on_node else local
        upgraded = runner.run(upgrade_command(plan, node), warn=True).exited
        if upgraded != 0:
            _stop(
                f"upgrade command on {node} exited {upgraded}; {node} left cordoned. "
                f"Roll stopped.{left}"
            )
            return ROLL_STEP_FAILED

        # The upgrade may restart kubelet or reboot the node.
        ready = shlex.join(
            [
                "kubectl",
                "wait",
                "--for=condition=Ready",
                f"node/{node}",
                f"--timeout={plan.ready_timeout}",
            ]
        )
        if local.run(ready, warn=True).exited != 0:
            _stop(f"{node} did not become Ready; left cordoned. Roll stopped.{left}")
            return ROLL_STEP_FAILED

        _say(f"checking clouds after draining {node} at {drained_at}")
        if plan.watcher:  # its canaries are its own to delete: nothing of this roll to sweep
            status = local.run(gate_command(plan, node, drained_at), warn=True).exited
        else:
            status = local.run(after_drain_command(plan, node, drained_at), warn=True).exited
            run_id = run_id_for(node, drained_at)
            if local.run(sweep_command(plan, run_id), warn=True).exited != 0:
                _say(f"sweep of run {run_id} failed; run it by hand")
        if status in _TIMED_OUT:
            _stop(f"e2etests after-drain timed out after {plan.check_timeout}s")
            status = HARNESS_ERROR
        elif status not in (OK, CHECK_FAILED, USAGE_ERROR, HARNESS_ERROR):
            _stop(f"e2etests after-drain exited {status}, outside its 0-3 contract")
            status = HARNESS_ERROR

        if status == CHECK_FAILED:
            _stop(
                f"a check FAILED after draining {node}: {node} left cordoned, roll stopped. "
                f"Fix the cloud, then `kubectl uncordon {node}` and re-run for the rest.{left}"
            )
            return CHECK_FAILED
        if status == USAGE_ERROR:
            _stop(
                f"e2etests rejected its usage or configuration (exit 2): nothing was checked. "
                f"{node} left cordoned, roll stopped.{left}"
            )
            return USAGE_ERROR
        if status == HARNESS_ERROR:
            _stop(
                f"the harness could not run (exit 3): {node} was not judged. "
                f"{node} left cordoned, roll stopped.{left}"
            )
            return HARNESS_ERROR

        if local.run(shlex.join(["kubectl", "uncordon", node]), warn=True).exited != 0:
            _stop(f"checks passed but kubectl uncordon {node} failed. Roll stopped.{left}")
            return ROLL_STEP_FAILED
        _say(f"{node} passed and is uncordoned")
    _say(f"all {len(plan.nodes)} node(s) rolled")
    return OK


@_task(
    # Long options only: an automatic -h for --check-timeout would read as help.
    auto_shortflags=False,
    help={
        "nodes": "comma-separated node names, rolled in this order",
        "upgrade": "shell command that upgrades a node; {node} is replaced by its name",
        "upgrade-on": "'node' (over SSH, default) or 'local'",
        "ssh-user": "SSH user for --upgrade-on node (default: your SSH config)",
        "clouds": "cloud name globs passed to e2etests --clouds (default: all)",
        "report-dir": "write each node's reports to DIR/<node>",
        "e2etests": "e2etests executable (default: e2etests)",
        "drain-timeout": "kubectl drain --timeout (default: 15m)",
        "upgrade-timeout": "seconds the upgrade command may take (default: 3600)",
        "ready-timeout": "how long to wait for the node to be Ready (default: 10m)",
        "check-timeout": "seconds e2etests after-drain may take (default: 1800)",
        "watcher": "an `e2etests watch` URL: it judges each drain, and gates each next one",
    },
)
def roll(
    c: Runner,
    nodes: str,
    upgrade: str,
    upgrade_on: str = "node",
    ssh_user: str = "",
    clouds: str = "",
    report_dir: str = "",
    e2etests: str = "e2etests",
    drain_timeout: str = "15m",
    upgrade_timeout: int = 3600,
    ready_timeout: str = "10m",
    check_timeout: int = 1800,
    watcher: str = "",
) -> None:
    """Drain, upgrade, check and uncordon each node; stop at the first failure."""
    try:
        node_names = parse_nodes(nodes)
    except ValueError as exc:
        _stop(str(exc))
        raise SystemExit(USAGE_ERROR) from None
    if upgrade_on not in ("node", "local"):
        _stop(f"--upgrade-on must be 'node' or 'local', not {upgrade_on!r}")
        raise SystemExit(USAGE_ERROR)
    if not upgrade.strip():
        _stop("--upgrade is empty: give the command that upgrades a node")
        raise SystemExit(USAGE_ERROR)

    plan = RollPlan(
        nodes=node_names,
        upgrade=upgrade,
        upgrade_on_node=upgrade_on == "node",
        clouds=_split(clouds),
        report_dir=report_dir,
        e2etests=e2etests,
        drain_timeout=drain_timeout,
        upgrade_timeout=upgrade_timeout,
        ready_timeout=ready_timeout,
        check_timeout=check_timeout,
        watcher=watcher,
    )

    def on_node(node: str) -> Runner:
        fabric = importlib.import_module("fabric")
        conn: Runner = fabric.Connection(
            node, user=ssh_user or None, config=getattr(c, "config", None)
        )
        return conn

    status = roll_nodes(plan, c, on_node)
    if status != OK:
        raise SystemExit(status)

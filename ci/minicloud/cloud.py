"""Bring the test cloud up from nothing, restart it on existing data, stop it, report on it."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import configs
import installer
import procs
from configs import NETWORK_HOST, PORTS, PROXIED, url
from layout import COMPUTE_HOST, COMPUTES, HERE, Layout, MinicloudError, PortBusy

SECRET_NAMES = (
    "admin",
    "db",
    "rabbit",
    "rabbit_monitor",
    "nova",
    "placement",
    "glance",
    "neutron",
    "e2e-a",
    "e2e-b",
)
TEST_CLOUDS = {"minicloud-a": "e2e-a", "minicloud-b": "e2e-b"}
DATABASES = ("keystone", "placement", "glance", "nova_api", "nova", "nova_cell0", "neutron")
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
REPORT_INTERVAL = 10  # nova's default, which the test cloud keeps: seconds between heartbeats


def log(message: str) -> None:
    print(f"minicloud: {message}", flush=True)


# What `up` reports its time on; bench/bench_minicloud_start.py reads the line.
PHASES = ("packages", "venvs", "schemas", "bootstrap", "services")


class Split:
    """Where `up` spends its time.

    `phase` charges the wall time `up` itself waits on, a nested phase pausing the one
    around it, so the phases add up to the total. `alongside` times work that runs in
    another thread meanwhile, which only costs `up` what it waits for it at the end.
    """

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PHASES, 0.0)
        self.alongside_spent: dict[str, float] = {}
        self._current: str | None = None
        self._since = time.monotonic()
        self._lock = threading.Lock()

    def _charge(self) -> None:
        now = time.monotonic()
        if self._current is not None:
            self.spent[self._current] += now - self._since
        self._since = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        outer = self._current
        self._charge()
        self._current = name
        try:
            yield
        finally:
            self._charge()
            self._current = outer

    @contextlib.contextmanager
    def alongside(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                spent = self.alongside_spent.get(name, 0.0) + time.monotonic() - started
                self.alongside_spent[name] = spent

    def line(self, total: float) -> str:
        parts = [f"{name} {spent:.1f} s" for name, spent in self.spent.items()]
        text = ", ".join([*parts, f"other {total - sum(self.spent.values()):.1f} s"])
        if self.alongside_spent:
            aside = ", ".join(f"{n} {s:.1f} s" for n, s in self.alongside_spent.items())
            text += f"; alongside: {aside}"
        return text


# Start order: a stage starts once the one before it is ready, and `down` stops them in
# reverse, so no service outlives what it depends on (nor waits on it being gone).
STAGES = ("infra", "api", "workers")


@dataclass
class Service:
    name: str
    stage: str
    argv: Callable[[], Sequence[str | Path]]
    port: int | None = None
    ready: Callable[[], bool] | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 60.0
    #: Services of the same stage that must be ready before this one starts.
    after: tuple[str, ...] = ()


def load_secrets(lay: Layout) -> dict[str, str]:
    try:
        stored: dict[str, str] = json.loads(lay.secrets_file.read_text())
    except (OSError, ValueError):
        stored = {}
    missing = [name for name in SECRET_NAMES if name not in stored]
    if missing:
        stored.update({name: pysecrets.token_urlsafe(18) for name in missing})
        lay.home.mkdir(parents=True, exist_ok=True)
        lay.secrets_file.write_text(json.dumps(stored, indent=1))
        lay.secrets_file.chmod(0o600)
    return stored


def rabbit_env(lay: Layout) -> dict[str, str]:
    base = lay.data / "rabbitmq"
    return {
        "HOME": str(base),  # the Erlang cookie lives here, apart from any system node
        "RABBITMQ_NODENAME": "rabbit@localhost",
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(lay.logs),
        "RABBITMQ_CONFIG_FILE": str(lay.etc / "rabbitmq/rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(lay.etc / "rabbitmq/enabled_plugins"),
        "RABBITMQ_PID_FILE": str(lay.run / "rabbitmq.beam.pid"),
        "RABBITMQ_DIST_PORT": str(PORTS["rabbitmq-dist"]),
        "ERL_EPMD_PORT": str(PORTS["epmd"]),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }


def _broker_auth(secret: str) -> str:
    return "Basic " + base64.b64encode(f"openstack:{secret}".encode()).decode()


def _rabbit_ready(secret: str) -> Callable[[], bool]:
    overview = url("rabbitmq-management", "/api/overview")
    auth = _broker_auth(secret)
    return lambda: procs.port_open(PORTS["rabbitmq"]) and procs.http_ok(overview, auth, strict=True)


def _consuming(secret: str, queue: str) -> Callable[[], bool]:
    """Whether the queue has a consumer (0 while it is undeclared)."""
    api = url("rabbitmq-management", f"/api/queues/%2F/{queue}")
    auth = _broker_auth(secret)
    return lambda: procs.consumers(api, auth) > 0


def _uwsgi(lay: Layout, venv: str, port: str, module: str, *extra: str) -> Callable[[], list[str]]:
    def argv() -> list[str]:
        return [
            str(lay.venv(venv) / "bin/uwsgi"),
            "--master",
            "--die-on-term",
            "--enable-threads",
            "--lazy-apps",
            "--need-app",
            "--processes",
            "1",
            "--threads",
            "4",
            "--buffer-size",
            "65535",
            "--disable-logging",
            # keystoneauth's reused connections get reset by uwsgi's http-socket
            "--add-header",
            "Connection: close",
            "--http-socket",
            f"127.0.0.1:{PORTS[port]}",
            "--wsgi",
            module,
            *extra,
        ]

    return argv


def services(lay: Layout, secrets: dict[str, str]) -> list[Service]:
    """Every process of the test cloud, in start order."""
    osv = lay.venv("openstack")

    def nova(name: str) -> Callable[[], list[str]]:
        binary = "nova-compute" if name in COMPUTES else name
        return lambda: [
            str(osv / "bin" / binary),
            "--config-file",
            str(lay.etc / "nova/nova.conf"),
            "--config-file",
            str(lay.etc / f"nova/{name}.conf"),
        ]

    def neutron(binary: str, conf: str) -> Callable[[], list[str]]:
        etc = lay.etc / "neutron"
        return lambda: [
            str(lay.venv("neutron") / "bin" / binary),
            "--config-file",
            str(etc / "neutron.conf"),
            "--config-file",
            str(etc / conf),
        ]

    def api(port: str) -> Callable[[], bool]:
        return lambda: procs.http_ok(url(port, "/"))

    # Keystone first: a fresh deploy creates the catalog, users and projects as soon as it
    # answers, while the other APIs start.
    behind_keystone = ("keystone",)

    def consuming(queue: str) -> Callable[[], bool]:
        # A nova service consumes its queue once init_host is done. Until then a restarted
        # nova-compute still shows "up" (its last heartbeat is seconds old), yet errors out
        # any boot scheduled to it while it starts.
        return _consuming(secrets["rabbit"], queue)

    return [
        Service(
            "epmd",
            "infra",
            lambda: ["epmd", "-port", str(PORTS["epmd"]), "-address", "127.0.0.1"],
            PORTS["epmd"],
            lambda: procs.port_open(PORTS["epmd"]),
            timeout=10,
        ),
        Service(
            "mariadb",
            "infra",
            lambda: [
                shutil.which("mariadbd") or "mariadbd",
                "--no-defaults",
                f"--datadir={lay.data / 'mariadb'}",
                f"--socket={lay.run / 'mysqld.sock'}",
                f"--port={PORTS['mariadb']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={lay.run / 'mariadbd.pidfile'}",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--max-connections=1000",
                "--innodb-buffer-pool-size=128M",
                # a throwaway database: durability costs half the schema-sync time
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
            ],
            PORTS["mariadb"],
            lambda: procs.port_open(PORTS["mariadb"]),
            timeout=60,
        ),
        Service(
            "rabbitmq",
            "infra",
            lambda: [str(RABBIT_BIN / "rabbitmq-server")],
            PORTS["rabbitmq"],
            _rabbit_ready(secrets["rabbit"]),
            env=rabbit_env(lay),
            timeout=90,
        ),
        Service(
            "amqproxy",
            "infra",
            lambda: [
                sys.executable,
                str(HERE / "amqproxy.py"),
                "--upstream-port",
                str(PORTS["rabbitmq"]),
                "--control",
                str(lay.proxy_control),
                *[f"--listen={s}={PORTS['amqp-' + s]}" for s in PROXIED],
            ],
            PORTS["amqp-nova-compute"],
            lambda: lay.proxy_control.exists(),
            timeout=10,
        ),
        Service(
            "keystone",
            "api",
            _uwsgi(lay, "openstack", "keystone", "keystone.wsgi.api:application"),
            PORTS["keystone"],
            api("keystone"),
            env={"OS_KEYSTONE_CONFIG_DIR": str(lay.etc / "keystone")},
        ),
        Service(
            "placement",
            "api",
            _uwsgi(lay, "openstack", "placement", "placement.wsgi.api:application"),
            PORTS["placement"],
            api("placement"),
            env={"OS_PLACEMENT_CONFIG_DIR": str(lay.etc / "placement")},
            after=behind_keystone,
        ),
        Service(
            "glance",
            "api",
            _uwsgi(
                lay,
                "openstack",
                "glance",
                "glance.wsgi.api:application",
                "--http-chunked-input",
                "--http-auto-chunked",
            ),
            PORTS["glance"],
            api("glance"),
            env={"OS_GLANCE_CONFIG_DIR": str(lay.etc / "glance")},
            after=behind_keystone,
        ),
        Service(
            "nova-api",
            "api",
            _uwsgi(lay, "openstack", "nova-api", "nova.wsgi.osapi_compute:application"),
            PORTS["nova-api"],
            api("nova-api"),
            env={"OS_NOVA_CONFIG_DIR": str(lay.etc / "nova")},
            after=behind_keystone,
        ),
        Service(
            "neutron",
            "api",
            _uwsgi(lay, "neutron", "neutron", "neutron.wsgi.api:application"),
            PORTS["neutron"],
            api("neutron"),
            env={"OS_NEUTRON_CONFIG_DIR": str(lay.etc / "neutron")},
            timeout=90,
            after=behind_keystone,
        ),
        Service(
            "neutron-rpc-server",
            "workers",
            neutron("neutron-rpc-server", "plugins/ml2/ml2_conf.ini"),
            None,
            consuming("q-reports-plugin"),
            timeout=90,
        ),
        Service(
            "neutron-dhcp-agent",
            "workers",
            neutron("neutron-dhcp-agent", "dhcp_agent.ini"),
            None,
            consuming(f"dhcp_agent.{NETWORK_HOST}"),
            timeout=90,
            # Its first state report needs the server's q-reports-plugin consumer.
            after=("neutron-rpc-server",),
        ),
        Service("nova-conductor", "workers", nova("nova-conductor"), None, consuming("conductor")),
        Service("nova-scheduler", "workers", nova("nova-scheduler"), None, consuming("scheduler")),
        *(
            Service(
                name,
                "workers",
                nova(name),
                None,
                consuming(f"compute.{host}"),
                timeout=90,
                # Once the conductor consumes: a nova-compute that starts first waits out a
                # 10 s RPC timeout before it retries.
                after=("nova-conductor", "nova-scheduler"),
            )
            for name, host in COMPUTES.items()
        ),
    ]


def service_names(lay: Layout) -> list[str]:
    return [s.name for s in services(lay, dict.fromkeys(SECRET_NAMES, ""))]


# --- installation -----------------------------------------------------------------------


def ensure_packages() -> None:
    missing = []
    if not (RABBIT_BIN / "rabbitmq-server").exists():
        missing.append("rabbitmq-server")
    if not all(shutil.which(b) for b in ("mariadbd", "mariadb-install-db", "mariadb")):
        missing.append("mariadb-server")
    if (
        subprocess.run(
            [sys.executable, "-c", "import ensurepip, venv"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        missing.append("python3-venv")
    if not missing:
        return
    if os.geteuid() != 0:
        raise MinicloudError(
            f"missing Debian packages {', '.join(missing)}; run as root to install"
        )
    log(f"installing {' '.join(missing)} from Debian")
    # Keep the system-wide services stopped: the test cloud runs private instances.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
            proc = subprocess.run(
                argv, capture_output=True, text=True, env=env, check=False, timeout=600
            )
            if proc.returncode != 0:
                last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
                raise MinicloudError(f"{' '.join(argv[:2])} failed: {last[0]}")
    finally:
        if ours:
            policy.unlink(missing_ok=True)
        # The package scripts call rabbitmqctl, which leaves a system epmd on the default
        # port even with the service kept stopped: not ours to keep running.
        env.pop("ERL_EPMD_PORT", None)
        subprocess.run(["epmd", "-kill"], capture_output=True, env=env, check=False, timeout=10)


# --- deploy -------------------------------------------------------------------------------


def _start(lay: Layout, batch: list[Service]) -> None:
    for svc in batch:
        if svc.port is not None and not procs.port_free(svc.port):
            raise PortBusy(f"port {svc.port} needed by {svc.name} is already in use on 127.0.0.1")
        procs.start(lay, svc.name, svc.argv(), svc.env)
    for svc in batch:
        if svc.ready is not None:
            procs.wait_for(lay, svc.name, svc.ready, svc.timeout)


def stage_of(svcs: Sequence[Service], stage: str) -> list[Service]:
    if stage not in STAGES:
        raise MinicloudError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")
    return [s for s in svcs if s.stage == stage]


def waves(members: Sequence[Service]) -> list[list[Service]]:
    """One stage's services in start order: each wave once the one before it is ready."""
    ready: set[str] = set()
    pending = list(members)
    out: list[list[Service]] = []
    while pending:
        wave = [s for s in pending if ready.issuperset(s.after)]
        if not wave:
            raise MinicloudError(
                f"services {', '.join(s.name for s in pending)} wait on one another or on "
                "a service outside their stage"
            )
        out.append(wave)
        ready.update(s.name for s in wave)
        pending = [s for s in pending if s.name not in ready]
    return out


def start_stage(
    lay: Layout,
    svcs: Sequence[Service],
    stage: str,
    on_ready: Mapping[str, Callable[[], None]] | None = None,
) -> None:
    """Start a stage wave by wave.

    `on_ready[name]` runs once that service is ready, in a thread alongside the stage's
    later waves; the stage is done when they are ready and it has returned.
    """
    todo = on_ready or {}
    with ThreadPoolExecutor(max(1, len(todo))) as pool:
        hooks = []
        for wave in waves(stage_of(svcs, stage)):
            _start(lay, wave)
            hooks += [pool.submit(todo[s.name]) for s in wave if s.name in todo]
        for hook in hooks:
            hook.result()


def stop_stage(lay: Layout, svcs: Sequence[Service], stage: str) -> None:
    names = [s.name for s in stage_of(svcs, stage)]
    # All at once: each stop may wait out its SIGKILL bound, and they do not depend on
    # one another within a stage.
    with ThreadPoolExecutor(max(1, len(names))) as pool:
        list(pool.map(lambda n: procs.stop(lay, n), names))


def _sql(lay: Layout, statement: str) -> None:
    procs.run(
        lay,
        "mariadb setup",
        ["mariadb", f"--socket={lay.run / 'mysqld.sock'}", "-uroot", "-e", statement],
    )


def _schemas(lay: Layout, secrets: dict[str, str]) -> None:
    """Create every schema; the services' migrations are independent, so run them at once."""
    nova_conf = ["--config-file", str(lay.etc / "nova/nova.conf")]
    keystone_env = {"OS_KEYSTONE_CONFIG_DIR": str(lay.etc / "keystone")}
    kconf = ["--config-file", str(lay.etc / "keystone/keystone.conf")]
    owner = ["--keystone-user", "root", "--keystone-group", "root"]
    # Per project: its venv, its manage command and that command's runs, in order.
    chains: dict[str, tuple[str, str, list[list[str]]]] = {
        "keystone": (
            "openstack",
            "keystone-manage",
            [
                [*kconf, "db_sync"],
                [*kconf, "fernet_setup", *owner],
                [*kconf, "credential_setup", *owner],
                [
                    *kconf,
                    "bootstrap",
                    "--bootstrap-password",
                    secrets["admin"],
                    "--bootstrap-admin-url",
                    url("keystone", "/v3"),
                    "--bootstrap-internal-url",
                    url("keystone", "/v3"),
                    "--bootstrap-public-url",
                    url("keystone", "/v3"),
                    "--bootstrap-region-id",
                    configs.REGION,
                ],
            ],
        ),
        "placement": (
            "openstack",
            "placement-manage",
            [["--config-file", str(lay.etc / "placement/placement.conf"), "db", "sync"]],
        ),
        "glance": (
            "openstack",
            "glance-manage",
            [["--config-file", str(lay.etc / "glance/glance-api.conf"), "db_sync"]],
        ),
        "nova": (
            "openstack",
            "nova-manage",
            [
                [*nova_conf, "api_db", "sync"],
                [
                    *nova_conf,
                    "cell_v2",
                    "map_cell0",
                    "--database_connection",
                    configs.db_url(secrets, "nova_cell0"),
                ],
                [*nova_conf, "cell_v2", "create_cell", "--name", "cell1"],
                [*nova_conf, "db", "sync"],
            ],
        ),
        "neutron": (
            "neutron",
            "neutron-db-manage",
            [
                [
                    "--config-file",
                    str(lay.etc / "neutron/neutron.conf"),
                    "--config-file",
                    str(lay.etc / "neutron/plugins/ml2/ml2_conf.ini"),
                    "upgrade",
                    "heads",
                ]
            ],
        ),
    }

    def chain(name: str) -> None:
        venv, script, runs = chains[name]
        if len(runs) == 1:
            argv: list[str | Path] = [lay.venv(venv) / "bin" / script, *runs[0]]
        else:
            argv = [lay.venv(venv) / "bin/python", HERE / "forkrun.py", script, json.dumps(runs)]
        procs.run(lay, f"{name} schema", argv, env=keystone_env)

    with ThreadPoolExecutor(len(chains)) as pool:
        for future in [pool.submit(chain, name) for name in chains]:
            future.result()


def _bootstrap(lay: Layout, phase: str, *extra: str, timeout: float = 300) -> None:
    procs.run(
        lay,
        f"bootstrap {phase}",
        [
            lay.venv("openstack") / "bin/python",
            HERE / "bootstrap.py",
            phase,
            "--home",
            lay.home,
            *extra,
        ],
        timeout=timeout,
    )


def write_clouds_yaml(lay: Layout, secrets: dict[str, str]) -> None:
    """clouds.yaml for the test clouds, plus the files the harness reads secrets from."""
    for name, value in (
        ("rabbit-password", secrets["rabbit_monitor"]),
        ("transport-url", configs.transport_url(secrets)),
    ):
        path = lay.home / name
        path.write_text(value + "\n")
        path.chmod(0o600)
    rabbit_json = lay.home / "rabbit.json"
    rabbit_json.write_text(
        json.dumps(
            {
                "url": url("rabbitmq-management"),
                "vhost": "/",
                "username": "openstack",
                "password": secrets["rabbit"],
            }
        )
    )
    rabbit_json.chmod(0o600)
    clouds = {}
    for cloud, user in TEST_CLOUDS.items():
        clouds[cloud] = {
            "auth": {
                "auth_url": url("keystone", "/v3"),
                "username": user,
                "password": secrets[user],
                "project_name": user,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": configs.REGION,
            "identity_api_version": 3,
            "compute_api_version": "2.95",
            "e2etests": {
                "flavor": "e2e.tiny",
                # the fake driver boots in seconds: a minute is plenty, and keeps red runs short
                "boot_timeout": 60,
                "image": "e2e-image",
                "network": "e2e-net",
                "mq": {
                    "rabbitmq": {
                        "url": url("rabbitmq-management"),
                        "vhost": "/",
                        "username": "e2e-monitor",
                        "password_file": str(lay.home / "rabbit-password"),
                        "verify": True,
                        # Neutron shares nova's vhost here; the DHCP agent's queue is checked.
                        "neutron_vhost": "/",
                    },
                    "transport_url_file": str(lay.home / "transport-url"),
                },
            },
        }
    lines = ["# Written by ci/minicloud: the test clouds of the embedded OpenStack.", "clouds:"]

    def emit(value: object, indent: int) -> None:
        assert isinstance(value, dict)
        for key, item in value.items():
            if isinstance(item, dict):
                lines.append(f"{'  ' * indent}{key}:")
                emit(item, indent + 1)
            else:  # JSON scalars are valid YAML and quote what needs quoting
                lines.append(f"{'  ' * indent}{key}: {json.dumps(item)}")

    emit(clouds, 1)
    lay.clouds_yaml.write_text("\n".join(lines) + "\n")
    lay.clouds_yaml.chmod(0o600)


# Bump when a deploy-time setting changes (a hash stored with each user, say): a cloud
# bootstrapped under another format is then deployed afresh instead of restarted.
DEPLOY_FORMAT = "2"


def _deployed_current(lay: Layout) -> bool:
    try:
        return lay.bootstrapped.read_text().strip() == DEPLOY_FORMAT
    except FileNotFoundError:
        return False


def running(lay: Layout) -> dict[str, int | None]:
    return {name: procs.read_pid(lay, name) for name in service_names(lay)}


def up(lay: Layout) -> None:
    started = time.monotonic()
    pids = running(lay)
    if _deployed_current(lay) and all(pids.values()) and procs.http_ok(url("keystone", "/v3")):
        write_clouds_yaml(lay, load_secrets(lay))  # cheap, and follows changes to its format
        log(f"already up ({len(pids)} processes); clouds.yaml: {lay.clouds_yaml}")
        return
    split = Split()
    if any(pids.values()):
        log("partly running: restarting everything")
        down(lay, quiet=True)
    with split.phase("packages"):
        ensure_packages()
    with ThreadPoolExecutor(1) as pool:
        # The infra stage needs no venv: it starts while they are built.
        venvs = pool.submit(_timed, split, "venvs", lambda: installer.ensure_venvs(lay, log))
        try:
            _deploy(lay, split, venvs)
        except (PortBusy, installer.InstallFailed):
            raise
        except MinicloudError as exc:
            if not _deployed_current(lay):
                raise
            # Data left by a killed run can be beyond a restart (a torn database, say); it
            # is a test cloud, so start it over rather than make the caller clean up by hand.
            log(f"restart on existing data failed ({exc}); deploying from scratch")
            lay.bootstrapped.unlink()
            _deploy(lay, split, venvs)
    total = time.monotonic() - started
    log(f"time split: {split.line(total)}")
    log(f"up in {total:.0f} s; clouds.yaml: {lay.clouds_yaml}")


def _timed(split: Split, name: str, work: Callable[[], None]) -> None:
    with split.alongside(name):
        work()


def _deploy(lay: Layout, split: Split, venvs: Future[None]) -> None:
    try:
        secrets = load_secrets(lay)
        fresh = not _deployed_current(lay)
        if fresh:
            # A half-made earlier attempt is not worth repairing.
            hosts = [f"nova-{h}" for h in COMPUTES.values() if h != COMPUTE_HOST]
            for sub in ("mariadb", "rabbitmq", "keystone", "nova", "glance", *hosts):
                shutil.rmtree(lay.data / sub, ignore_errors=True)
        configs.write_all(lay, secrets)
        if fresh:
            with split.phase("schemas"):
                procs.run(
                    lay,
                    "mariadb-install-db",
                    [
                        "mariadb-install-db",
                        "--no-defaults",
                        f"--datadir={lay.data / 'mariadb'}",
                        "--user=root",
                        "--auth-root-authentication-method=socket",
                        "--skip-test-db",
                    ],
                )
        svcs = services(lay, secrets)
        with split.phase("services"):
            start_stage(lay, svcs, "infra")
        with split.phase("venvs"):
            venvs.result()
        configs.write_paste_configs(lay)
        if fresh:
            log("creating databases and schemas")
            with split.phase("schemas"):
                _sql(
                    lay,
                    "".join(f"CREATE DATABASE IF NOT EXISTS {db};" for db in DATABASES)
                    + f"CREATE USER IF NOT EXISTS 'openstack'@'%' IDENTIFIED BY '{secrets['db']}';"
                    "GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'%';",
                )
                _schemas(lay, secrets)

        # Alongside the services that start after them: nothing those need at start-up
        # is made here, only what requests will need.
        def identity() -> None:
            log("creating users, projects and the catalog")
            with split.alongside("bootstrap"):
                _bootstrap(lay, "identity")

        def resources() -> None:
            log("creating the flavor, image and network")
            with split.alongside("bootstrap"):
                _bootstrap(lay, "resources")

        with split.phase("services"):
            start_stage(lay, svcs, "api", on_ready={"keystone": identity} if fresh else None)
        write_clouds_yaml(lay, secrets)
        with split.phase("services"), ThreadPoolExecutor(1) as pool:
            made = pool.submit(resources) if fresh else None
            start_stage(lay, svcs, "workers")
            if made is not None:
                made.result()
        log("waiting for nova-compute to report up and its hypervisor to be mapped")
        with split.phase("services"):
            _bootstrap(lay, "wait-compute", timeout=180)
        lay.bootstrapped.write_text(DEPLOY_FORMAT + "\n")
    except (MinicloudError, KeyboardInterrupt):
        down(lay, quiet=True)
        raise


def wait_healthy(lay: Layout, timeout: float = 150) -> None:
    """Until every nova RPC queue has a consumer and every nova-compute reports up again."""
    secret = load_secrets(lay)["rabbit"]
    deadline = time.monotonic() + timeout
    queues = ("conductor", "scheduler", *(f"compute.{h}" for h in COMPUTES.values()))
    for queue in (*queues, f"dhcp_agent.{NETWORK_HOST}"):
        consumed = _consuming(secret, queue)
        procs.wait_for(lay, "rabbitmq", consumed, max(1.0, deadline - time.monotonic()))
    # "up" holds for a minute on the last heartbeat, while a report lost to a broker
    # restart (sent before the conductor's queue is back) waits out a 60 s RPC timeout:
    # only a heartbeat younger than two report intervals shows that reports get through.
    _bootstrap(
        lay,
        "wait-compute",
        "--reported-within",
        str(2 * REPORT_INTERVAL),
        timeout=max(1.0, deadline - time.monotonic()),
    )


def down(lay: Layout, quiet: bool = False) -> None:
    svcs = services(lay, dict.fromkeys(SECRET_NAMES, ""))
    for stage in reversed(STAGES):
        stop_stage(lay, svcs, stage)
    lay.proxy_control.unlink(missing_ok=True)
    if not quiet:
        log("down: no test-cloud process left")


def start_one(lay: Layout, name: str) -> None:
    table = {s.name: s for s in services(lay, load_secrets(lay))}
    _start(lay, [table[name]])


def set_compute(lay: Layout, enabled: bool, host: str | None = None) -> None:
    """Enable or disable one compute host in Nova, or all of them (a fault control)."""
    extra = ("--host", host) if host else ()
    _bootstrap(lay, "enable" if enabled else "disable", *extra, timeout=60)


def status(lay: Layout) -> int:
    pids = running(lay)
    width = max(map(len, pids))
    for name, pid in pids.items():
        print(f"{name:<{width}}  {'running pid ' + str(pid) if pid else 'stopped'}")
    return 0 if all(pids.values()) else 1

"""Where the test cloud keeps its venvs, data, configs, logs and pid files."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# The host name every nova service registers under: the compute queue is compute.<host>.
COMPUTE_HOST = "mc-compute1"
# Each compute host's process name; the first runs beside conductor and scheduler under
# the default host name. Two hosts, so a fault can leave one deaf while boots land on the
# other, as with one deaf hypervisor among a hundred.
COMPUTES = {"nova-compute": COMPUTE_HOST, "nova-compute2": "mc-compute2"}


class MinicloudError(Exception):
    """One line for the operator: what failed and which log to read."""


class PortBusy(MinicloudError):
    """A port the test cloud needs is taken by someone else: never worth a redeploy."""


@dataclass(frozen=True)
class Layout:
    home: Path

    @classmethod
    def default(cls) -> Layout:
        env = os.environ.get("MINICLOUD_HOME")
        return cls(Path(env) if env else Path.home() / ".cache" / "e2etests-minicloud")

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def etc(self) -> Path:
        return self.home / "etc"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def clouds_yaml(self) -> Path:
        return self.home / "clouds.yaml"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def bootstrapped(self) -> Path:
        return self.data / "bootstrapped"

    @property
    def proxy_control(self) -> Path:
        """The AMQP fault proxy's control socket."""
        return self.run / "amqproxy.sock"

    @property
    def tools(self) -> Path:
        """Installers fetched for building the venvs (uv)."""
        return self.home / "tools"

    def venv(self, name: str) -> Path:
        return self.home / "venvs" / name

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def pidfile(self, service: str) -> Path:
        return self.run / f"{service}.pid"


def requirements(name: str) -> tuple[Path, str]:
    """The locked requirements of a venv and a digest that says when to rebuild it.

    ``requirements-NAME.txt`` pins the services; ``requirements-NAME.lock`` is its full
    resolution (every dependency ``==``), so that a release made after the lock cannot change
    what the venv holds: a new cryptography beside an old pyOpenSSL broke every service's
    import on 2026-12-06. Regenerate the lock with the command at its top.
    """
    path = HERE / f"requirements-{name}.lock"
    digest = hashlib.sha256(path.read_bytes())
    if name == "neutron":
        for extra in sorted((HERE / "ml2").iterdir()):
            if extra.is_file():
                digest.update(extra.read_bytes())
    return path, digest.hexdigest()

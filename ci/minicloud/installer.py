"""The services' venvs: built by uv when it can be had, else by pip, from the same pins.

uv installs the lock files (``requirements-NAME.lock``: every dependency pinned) in seconds
where pip takes minutes. It is given pip's own index configuration, so both fetch from the
same place on a machine whose pip is pointed at local mirrors.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from layout import HERE, Layout, MinicloudError, requirements

#: Where Debian's python3-venv keeps the wheels ensurepip installs (not in ensurepip itself).
DEBIAN_WHEELS = Path("/usr/share/python-wheels")

VENVS = ("openstack", "neutron")
# Pinned so that a new uv release cannot change what the venvs resolve to.
UV_VERSION = "0.13.9"
# Set to "pip" to build with pip even when uv is available (to compare the two).
INSTALLER_ENV = "MINICLOUD_INSTALLER"

Step = Sequence[str | Path]


class InstallFailed(MinicloudError):
    """A venv could not be built: never cured by deploying the cloud again."""


@dataclass(frozen=True)
class UvOptions:
    args: tuple[str, ...]
    env: Mapping[str, str]


def pip_config_to_uv(listing: str) -> UvOptions:
    """uv's options for what `pip config list` printed, for the settings that pick versions.

    pip takes a setting from its environment variable, else from the config files'
    [install] section, else from [global]; list settings are whitespace-separated.
    """
    rank = {"global": 0, "install": 1, ":env:": 2}
    found: dict[str, tuple[int, str]] = {}
    for line in listing.splitlines():
        key, sep, raw = line.partition("=")
        section, dot, name = key.rpartition(".")
        if not (sep and dot) or section not in rank:
            continue
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            continue
        name = name.replace("_", "-")
        if not isinstance(value, str) or found.get(name, (-1, ""))[0] > rank[section]:
            continue
        found[name] = (rank[section], value)
    conf = {name: value for name, (_, value) in found.items()}

    args: list[str] = []
    for pip_name, uv_flag in (
        ("index-url", "--index-url"),
        ("extra-index-url", "--extra-index-url"),
        ("find-links", "--find-links"),
        ("constraint", "--constraint"),
        ("trusted-host", "--allow-insecure-host"),
        ("only-binary", "--only-binary"),
        ("no-binary", "--no-binary"),
    ):
        for item in conf.get(pip_name, "").split():
            args += [uv_flag, item]
    if _truthy(conf.get("no-index", "")):
        args.append("--no-index")
    if _truthy(conf.get("pre", "")):
        args += ["--prerelease", "allow"]
    # pip takes the newest version found on any index; uv by default stops at the first
    # index that has the package, which would pick a local mirror's older releases.
    args += ["--index-strategy", "unsafe-best-match"]

    env: dict[str, str] = {}
    if "cert" in conf:
        env["SSL_CERT_FILE"] = conf["cert"]
    if "client-cert" in conf:
        env["SSL_CLIENT_CERT"] = conf["client-cert"]
    timeout = conf.get("default-timeout") or conf.get("timeout")
    if timeout:
        with contextlib.suppress(ValueError):
            env["UV_HTTP_TIMEOUT"] = str(max(1, round(float(timeout))))
    if "proxy" in conf:
        env["HTTP_PROXY"] = env["HTTPS_PROXY"] = conf["proxy"]
    return UvOptions(tuple(args), env)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _pip_config_listing() -> str:
    # The interpreter the venvs are made from sees the same config files and variables
    # as the pip inside them would.
    proc = subprocess.run(
        [*system_pip(), "config", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else ""


def _has_pip() -> bool:
    return importlib.util.find_spec("pip") is not None


def system_pip() -> list[str]:
    """pip for the interpreter the venvs are made from: its own, or, on a new Debian machine
    (python3-pip is not installed; python3-venv is), the pip wheel python3-venv ships, run
    from the wheel itself."""
    if not _has_pip():
        bundled = _bundled_folder()
        for folder in ([bundled] if bundled else []) + [DEBIAN_WHEELS]:
            wheels = sorted(folder.glob("pip-*.whl"))
            if wheels:
                return [sys.executable, str(wheels[-1] / "pip")]
    return [sys.executable, "-m", "pip"]  # without any pip, it fails with its own message


def _uv_version(binary: Path) -> str | None:
    try:
        proc = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    words = proc.stdout.split()
    return words[1] if proc.returncode == 0 and len(words) > 1 else None


def find_uv(lay: Layout) -> tuple[Path | None, str]:
    """The pinned uv, fetched from the package index if need be; else None and why not."""
    fetched = lay.tools / f"uv-{UV_VERSION}" / "uv"
    if _uv_version(fetched) == UV_VERSION:
        return fetched, ""
    on_path = shutil.which("uv")
    if on_path and _uv_version(Path(on_path)) == UV_VERSION:
        return Path(on_path), ""
    fetched.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=fetched.parent) as tmp:
        # pip fetches it, so it comes from wherever pip is configured to look.
        proc = subprocess.run(
            [
                *system_pip(),
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "--dest",
                tmp,
                f"uv=={UV_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return None, f"pip download uv=={UV_VERSION} failed: {last[0]}"
        wheels = sorted(Path(tmp).glob("uv-*.whl"))
        member = f"uv-{UV_VERSION}.data/scripts/uv"
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src:
                staged = Path(tmp) / "uv"
                with staged.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        except (IndexError, KeyError, OSError, zipfile.BadZipFile) as exc:
            return None, f"no uv binary in the downloaded wheel ({exc})"
        staged.chmod(0o755)
        if _uv_version(staged) != UV_VERSION:
            return None, "the downloaded uv does not run on this machine"
        os.replace(staged, fetched)
    return fetched, ""


def _bundled_folder() -> Path | None:
    """ensurepip's own folder of wheels (absent on Debian); None without ensurepip."""
    try:
        # Not at the top: without python3-venv it is missing until ensure_packages ran.
        import ensurepip
    except ImportError:
        return None
    return Path(ensurepip.__file__).parent / "_bundled"


def _seed_wheels() -> list[Path]:
    """The pip and setuptools wheels `python3 -m venv` would install (absent on Debian)."""
    folder = _bundled_folder()
    return sorted(folder.glob("*.whl")) if folder else []


def _uv_steps(uv: Path, opts: UvOptions, venv: Path, targets: list[str]) -> list[Step]:
    # No uv.toml of the machine's or the work tree's: pip's settings alone pick versions,
    # as they do when pip builds the venvs.
    install: list[str | Path] = [uv, "pip", "install", "--no-config", "--python"]
    install += [venv / "bin/python"]
    seed = _seed_wheels()
    if not seed:
        return [[sys.executable, "-m", "venv", venv], [*install, *opts.args, *targets]]
    # The same pip and setuptools as a venv made by pip, in their own step so that a
    # requirement may still upgrade them, as it would under pip; by name, so that they
    # are recorded as installed from an index, as ensurepip's are.
    pins = []
    for wheel in seed:
        name, version = wheel.name.split("-")[:2]
        pins.append(f"{name}=={version}")
    return [
        [sys.executable, "-m", "venv", "--without-pip", venv],
        [*install, "--no-index", "--find-links", seed[0].parent, *pins],
        [*install, *opts.args, *targets],
    ]


def _pip_steps(venv: Path, targets: list[str]) -> list[Step]:
    pip: list[str | Path] = [venv / "bin/pip", "install", "-q", "--disable-pip-version-check"]
    pip += targets
    return [[sys.executable, "-m", "venv", venv], pip]


def _run_steps(steps: list[Step], log: Path, env: Mapping[str, str]) -> bool:
    with log.open("wb") as out:
        for argv in steps:
            out.write(f"### {' '.join(str(a) for a in argv[:4])} ...\n".encode())
            out.flush()
            try:
                proc = subprocess.run(
                    [str(a) for a in argv],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                    timeout=900,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                out.write(b"### timed out after 900 s\n")
                return False
            if proc.returncode != 0:
                return False
    return True


def ensure_venvs(lay: Layout, log: Callable[[str], None]) -> None:
    """Build the service venvs in parallel; reuse them while their pins are unchanged."""
    todo: list[tuple[str, Path, Path, str]] = []
    for name in VENVS:
        reqs, digest = requirements(name)
        # Resolved: the venv's scripts carry its path in their shebangs.
        venv = lay.venv(name).resolve()
        stamp = venv / ".minicloud-requirements"
        if not (stamp.exists() and stamp.read_text() == digest):
            todo.append((name, reqs, venv, digest))
    if not todo:
        return
    uv: Path | None = None
    if os.environ.get(INSTALLER_ENV, "uv") != "pip":
        uv, why = find_uv(lay)
        if uv is None:
            log(f"uv unavailable ({why}); installing the venvs with pip")
    opts = pip_config_to_uv(_pip_config_listing()) if uv else UvOptions((), {})
    # Never a uv-managed Python: the venvs are made from this interpreter.
    env = {"UV_PYTHON_DOWNLOADS": "never", **opts.env} if uv else {}
    lay.logs.mkdir(parents=True, exist_ok=True)

    def build(name: str, reqs: Path, venv: Path, digest: str) -> str | None:
        tool = "uv" if uv else "pip"
        log(f"creating the {name} venv in {venv} with {tool}")
        shutil.rmtree(venv, ignore_errors=True)
        targets = ["-r", str(reqs), *([str(HERE / "ml2")] if name == "neutron" else [])]
        steps = _pip_steps(venv, targets) if uv is None else _uv_steps(uv, opts, venv, targets)
        ok = _run_steps(steps, lay.log(f"venv-{name}"), env)
        if name == "neutron":
            # Building the ML2 driver leaves these in the source tree.
            shutil.rmtree(HERE / "ml2/build", ignore_errors=True)
            for info in (HERE / "ml2").glob("*.egg-info"):
                shutil.rmtree(info, ignore_errors=True)
        if not ok:
            return f"{tool} install for the {name} venv failed; see {lay.log('venv-' + name)}"
        (venv / ".minicloud-requirements").write_text(digest)
        return None

    with ThreadPoolExecutor(len(todo)) as pool:
        errors = [e for e in pool.map(lambda job: build(*job), todo) if e]
    if errors:
        raise InstallFailed(errors[0])

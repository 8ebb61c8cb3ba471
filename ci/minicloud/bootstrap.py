"""Admin-side setup of the test cloud through openstacksdk (runs in the services' venv).

Phases: ``identity`` (service users, catalog, test projects), ``resources`` (flavor,
image, network), ``wait-compute`` (compute up and mapped), ``set-compute`` (disable or
enable the compute service, a fault control).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from configs import REGION, url  # noqa: E402
from layout import COMPUTES  # noqa: E402

SERVICES = {  # catalog entries: service name -> (type, url)
    "nova": ("compute", url("nova-api", "/v2.1")),
    "placement": ("placement", url("placement")),
    "glance": ("image", url("glance")),
    "neutron": ("network", url("neutron")),
}


def connect(home: Path) -> Any:
    secrets = json.loads((home / "secrets.json").read_text())
    return openstack.connect(
        auth_url=url("keystone", "/v3"),
        username="admin",
        password=secrets["admin"],
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=REGION,
        compute_api_version="2.95",
        identity_api_version="3",
    )


def until(what: str, check: Callable[[], bool], timeout: float, log: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except openstack.exceptions.SDKException:
            pass  # not ready yet
        time.sleep(1)
    sys.exit(f"{what} not reached within {timeout:.0f} s; see {log}")


def identity(conn: Any, home: Path) -> None:
    secrets = json.loads((home / "secrets.json").read_text())
    ident = conn.identity
    roles = {r.name: r for r in ident.roles()}
    for name in ("service", "member", "reader"):
        if name not in roles:
            roles[name] = ident.create_role(name=name)
    domain = ident.find_domain("default")
    service_project = ident.find_project("service") or ident.create_project(
        name="service", domain_id=domain.id
    )
    for user_name in SERVICES:
        user = ident.find_user(user_name) or ident.create_user(
            name=user_name, password=secrets[user_name], domain_id=domain.id
        )
        for role in ("admin", "service"):
            ident.assign_project_role_to_user(service_project, user, roles[role])
    region = ident.get_region(REGION)
    for name, (stype, endpoint) in SERVICES.items():
        svc = ident.find_service(name) or ident.create_service(name=name, type=stype)
        for interface in ("public", "internal"):
            ident.create_endpoint(
                service_id=svc.id, interface=interface, url=endpoint, region_id=region.id
            )
    # Two test clouds: separate projects and users on this one control plane.  They are
    # admins of their projects so the harness can read service lists and hypervisors.
    for name in ("e2e-a", "e2e-b"):
        project = ident.find_project(name) or ident.create_project(name=name, domain_id=domain.id)
        user = ident.find_user(name) or ident.create_user(
            name=name, password=secrets[name], domain_id=domain.id, default_project_id=project.id
        )
        for role in ("admin", "member", "reader"):
            ident.assign_project_role_to_user(project, user, roles[role])


def resources(conn: Any, home: Path) -> None:
    warm_neutron(conn)
    if not conn.compute.find_flavor("e2e.tiny"):
        conn.compute.create_flavor(name="e2e.tiny", vcpus=1, ram=64, disk=1, is_public=True)
    if not conn.image.find_image("e2e-image"):
        image = conn.image.create_image(
            name="e2e-image",
            disk_format="raw",
            container_format="bare",
            visibility="public",
            data=os.urandom(1 << 20),
        )
        until(
            "image active",
            lambda: conn.image.get_image(image.id).status == "active",
            60,
            str(home / "logs/glance.log"),
        )
    if not conn.network.find_network("e2e-net"):
        net = conn.network.create_network(
            name="e2e-net", is_shared=True, provider_network_type="local"
        )
        conn.network.create_subnet(
            network_id=net.id,
            name="e2e-subnet",
            ip_version=4,
            cidr="10.20.0.0/24",
            enable_dhcp=False,
        )


def warm_neutron(conn: Any) -> None:
    # neutron-api alone answers its first GET /v2.0/ports with HTTP 500 unless some other
    # query ran first; Nova lists ports on every server show.
    until(
        "neutron answering",
        lambda: list(conn.network.networks()) is not None,
        60,
        "logs/neutron.log",
    )


def reported_within(service: Any, seconds: float) -> bool:
    # A service record not yet reported to has no updated_at, though Nova calls it up (from
    # its created_at): it has not reported at all.
    if service.updated_at is None:
        return False
    # Nova writes the heartbeat in UTC without a zone, from this same machine's clock.
    last = dt.datetime.fromisoformat(str(service.updated_at)).replace(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC) - last <= dt.timedelta(seconds=seconds)


def wait_compute(conn: Any, home: Path, recent: float | None = None) -> None:
    """Until every nova-compute is up (and, given `recent`, reported that recently) and mapped."""
    log = str(home / "logs/nova-compute.log")
    hosts = set(COMPUTES.values())
    warm_neutron(conn)

    def computes_up() -> bool:
        up = {
            s.host
            for s in conn.compute.services(binary="nova-compute")
            if s.state == "up" and (recent is None or reported_within(s, recent))
        }
        return hosts <= up

    until(f"nova-compute up on {', '.join(sorted(hosts))}", computes_up, 120, log)
    venv = Path(sys.executable).parent
    subprocess.run(
        [
            str(venv / "nova-manage"),
            "--config-file",
            str(home / "etc/nova/nova.conf"),
            "cell_v2",
            "discover_hosts",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    until(
        "every hypervisor mapped",
        lambda: hosts <= {h.name for h in conn.compute.hypervisors()},
        60,
        log,
    )
    until(
        "every resource provider in placement",
        lambda: hosts <= {rp.name for rp in conn.placement.resource_providers()},
        60,
        log,
    )


def set_compute(conn: Any, enable: bool, host: str | None = None) -> None:
    for svc in conn.compute.services(binary="nova-compute"):
        if host is not None and svc.host != host:
            continue
        if enable:
            conn.compute.enable_service(svc)
        else:
            conn.compute.disable_service(svc, disabled_reason="minicloud fault control")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "phase", choices=["identity", "resources", "wait-compute", "enable", "disable"]
    )
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument(
        "--reported-within", type=float, help="wait-compute: the heartbeat's greatest age"
    )
    parser.add_argument("--host", help="enable, disable: only this compute host")
    args = parser.parse_args()
    conn = connect(args.home)
    if args.phase == "identity":
        identity(conn, args.home)
    elif args.phase == "resources":
        resources(conn, args.home)
    elif args.phase == "wait-compute":
        wait_compute(conn, args.home, args.reported_within)
    else:
        set_compute(conn, args.phase == "enable", args.host)


if __name__ == "__main__":
    main()

"""Every config file of the test cloud, as text built from its layout and secrets."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from layout import COMPUTE_HOST, COMPUTES, Layout

REGION = "RegionOne"

# Below the kernel's ephemeral range (32768+), so an outgoing connection never holds one.
PORTS = {
    "epmd": 24369,
    "rabbitmq": 25672,
    "rabbitmq-management": 25673,
    "rabbitmq-dist": 25674,
    "mariadb": 23306,
    "keystone": 25000,
    "placement": 28778,
    "glance": 29292,
    "nova-api": 28774,
    "neutron": 29696,
    # one proxy port per nova service, so a broker fault can hit exactly one of them
    "amqp-nova-compute": 25681,
    "amqp-nova-scheduler": 25682,
    "amqp-nova-conductor": 25683,
    "amqp-nova-compute2": 25684,
    "amqp-neutron-dhcp-agent": 25685,
}
NOVA_PROXIED = ("nova-compute", "nova-compute2", "nova-scheduler", "nova-conductor")
PROXIED = (*NOVA_PROXIED, "neutron-dhcp-agent")
# The DHCP agent's host: a network node of its own, so messages never mix it up with nova's.
NETWORK_HOST = "mc-network1"


def url(service: str, path: str = "") -> str:
    return f"http://127.0.0.1:{PORTS[service]}{path}"


def db_url(secrets: dict[str, str], name: str) -> str:
    return (
        f"mysql+pymysql://openstack:{secrets['db']}@127.0.0.1:{PORTS['mariadb']}/{name}"
        "?charset=utf8mb4"
    )


def transport_url(secrets: dict[str, str], port: int | None = None) -> str:
    return f"rabbit://openstack:{secrets['rabbit']}@127.0.0.1:{port or PORTS['rabbitmq']}/"


def _ini(sections: dict[str, dict[str, object]]) -> str:
    out = []
    for name, values in sections.items():
        out.append(f"[{name}]")
        out.extend(f"{key} = {value}" for key, value in values.items())
        out.append("")
    return "\n".join(out)


def _auth(secrets: dict[str, str], user: str) -> dict[str, object]:
    return {
        "auth_url": url("keystone"),
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": secrets[user],
        "region_name": REGION,
    }


def _authtoken(secrets: dict[str, str], user: str) -> dict[str, object]:
    return {"www_authenticate_uri": url("keystone"), **_auth(secrets, user)}


def rabbit_password_hash(password: str) -> str:
    """RabbitMQ's default hashing: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def write_all(lay: Layout, secrets: dict[str, str]) -> None:
    """Write every config but the paste files; cheap, deterministic but for RabbitMQ's salt."""
    etc, data, run = lay.etc, lay.data, lay.run
    files: dict[Path, str] = {}

    files[etc / "rabbitmq/rabbitmq.conf"] = "\n".join(
        [
            f"listeners.tcp.default = 127.0.0.1:{PORTS['rabbitmq']}",
            "management.tcp.ip = 127.0.0.1",
            f"management.tcp.port = {PORTS['rabbitmq-management']}",
            f"load_definitions = {etc / 'rabbitmq/definitions.json'}",
            "log.console = true",
            "log.console.level = warning",
            "log.file = false",
            "",
        ]
    )
    files[etc / "rabbitmq/enabled_plugins"] = "[rabbitmq_management].\n"
    files[etc / "rabbitmq/definitions.json"] = json.dumps(
        {
            "users": [
                {
                    "name": "openstack",
                    "password_hash": rabbit_password_hash(secrets["rabbit"]),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["administrator"],
                },
                {
                    "name": "e2e-monitor",
                    "password_hash": rabbit_password_hash(secrets["rabbit_monitor"]),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["monitoring"],
                },
            ],
            "vhosts": [{"name": "/"}],
            "permissions": [
                {"user": "openstack", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
                {"user": "e2e-monitor", "vhost": "/", "configure": "", "write": "", "read": ""},
            ],
        },
        indent=1,
    )

    files[etc / "keystone/keystone.conf"] = _ini(
        {
            "DEFAULT": {"debug": False},
            "database": {"connection": db_url(secrets, "keystone")},
            "token": {"provider": "fernet"},
            # bcrypt's default 12 rounds cost 0.25 s of CPU per password login, a third of
            # keystone's CPU in a 20-boot burst on two cores. Applies to users created after.
            "identity": {"password_hash_rounds": 4},
            "fernet_tokens": {"key_repository": data / "keystone/fernet-keys"},
            "credential": {"key_repository": data / "keystone/credential-keys"},
        }
    )
    files[etc / "placement/placement.conf"] = _ini(
        {
            "placement_database": {"connection": db_url(secrets, "placement")},
            "api": {"auth_strategy": "keystone"},
            "keystone_authtoken": _authtoken(secrets, "placement"),
        }
    )
    files[etc / "glance/glance-api.conf"] = _ini(
        {
            "DEFAULT": {"enabled_backends": "file:file", "workers": 1},
            "database": {"connection": db_url(secrets, "glance")},
            "glance_store": {"default_backend": "file"},
            "file": {"filesystem_store_datadir": data / "glance/images"},
            "os_glance_staging_store": {"filesystem_store_datadir": data / "glance/staging"},
            "os_glance_tasks_store": {"filesystem_store_datadir": data / "glance/tasks"},
            "keystone_authtoken": _authtoken(secrets, "glance"),
            "paste_deploy": {"flavor": "keystone"},
            "oslo_concurrency": {"lock_path": data / "glance/lock"},
        }
    )
    nova_common: dict[str, dict[str, object]] = {
        "DEFAULT": {
            "transport_url": transport_url(secrets),
            "host": COMPUTE_HOST,
            "my_ip": "127.0.0.1",
            "state_path": data / "nova",
            "compute_driver": "fake.FakeDriverWithoutFakeNodes",
            # lets a monitor ping each RPC server (oslo.messaging's PingEndpoint)
            "rpc_ping_enabled": True,
            "debug": False,
        },
        "wsgi": {"api_paste_config": etc / "nova/api-paste.ini"},
        "api": {"auth_strategy": "keystone"},
        "api_database": {"connection": db_url(secrets, "nova_api")},
        "database": {"connection": db_url(secrets, "nova")},
        "keystone_authtoken": _authtoken(secrets, "nova"),
        "service_user": {"send_service_user_token": True, **_auth(secrets, "nova")},
        "placement": _auth(secrets, "nova"),
        "neutron": _auth(secrets, "nova"),
        "glance": {"region_name": REGION},
        "vnc": {"enabled": False},
        "oslo_messaging_notifications": {"driver": "noop"},
        "oslo_concurrency": {"lock_path": data / "nova/lock"},
        "conductor": {"workers": 1},
        "scheduler": {"workers": 1},
        # fleet benchmarks point 20 "clouds" at one project; the default allows 10 servers
        "quota": {"instances": 100, "cores": 200, "ram": 1 << 20},
    }
    files[etc / "nova/nova.conf"] = _ini(nova_common)
    for service in NOVA_PROXIED:
        # Reaching the broker through the proxy, with heartbeats off: once the proxy
        # freezes the link, the service never notices on its own, like the incident.
        own: dict[str, object] = {"transport_url": transport_url(secrets, PORTS[f"amqp-{service}"])}
        host = COMPUTES.get(service, COMPUTE_HOST)
        if host != COMPUTE_HOST:
            # A host of its own needs a state_path of its own: nova keeps the compute
            # node's uuid there, and two hosts sharing one would claim the same node.
            own |= {"host": host, "state_path": data / f"nova-{host}"}
        files[etc / f"nova/{service}.conf"] = _ini(
            {"DEFAULT": own, "oslo_messaging_rabbit": {"heartbeat_timeout_threshold": 0}}
        )
    files[etc / "neutron/neutron.conf"] = _ini(
        {
            "DEFAULT": {
                "core_plugin": "ml2",
                "api_paste_config": etc / "neutron/api-paste.ini",
                "service_plugins": "",
                "auth_strategy": "keystone",
                "transport_url": transport_url(secrets),
                "api_workers": 1,
                # Read by neutron-rpc-server alone (the API under uwsgi starts no RPC
                # worker): one process consumes q-plugin and the agents' state reports.
                "rpc_workers": 1,
                "rpc_state_report_workers": 0,
                "notify_nova_on_port_status_changes": False,
                "notify_nova_on_port_data_changes": False,
                "debug": False,
            },
            "database": {"connection": db_url(secrets, "neutron")},
            "keystone_authtoken": _authtoken(secrets, "neutron"),
            "nova": _auth(secrets, "nova"),
            "oslo_concurrency": {"lock_path": data / "neutron/lock"},
            "oslo_messaging_notifications": {"driver": "noop"},
        }
    )
    # A real agent that reports its state and consumes dhcp_agent.<host>, through its own
    # proxy port with heartbeats off, so broker-moved and wedged reach it as they reach nova.
    # Every subnet has DHCP off, so it never needs dnsmasq, namespaces or root.
    files[etc / "neutron/dhcp_agent.ini"] = _ini(
        {
            "DEFAULT": {
                "host": NETWORK_HOST,
                "transport_url": transport_url(secrets, PORTS["amqp-neutron-dhcp-agent"]),
                "interface_driver": "neutron.agent.linux.interface.NullDriver",
                "state_path": data / "neutron",
                "rpc_ping_enabled": True,
                "debug": False,
            },
            # Nova's report_interval, so both heartbeats fit the same grace window.
            "agent": {"report_interval": 10},
            "oslo_concurrency": {"lock_path": data / "neutron/lock"},
            "oslo_messaging_rabbit": {"heartbeat_timeout_threshold": 0},
        }
    )
    files[etc / "neutron/plugins/ml2/ml2_conf.ini"] = _ini(
        {
            "ml2": {
                "type_drivers": "local,flat",
                "tenant_network_types": "local",
                "mechanism_drivers": "minicloud",
                "extension_drivers": "port_security",
            },
            "ml2_type_flat": {"flat_networks": "*"},
            "securitygroup": {"firewall_driver": "noop"},
        }
    )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json" and path.exists():
            continue  # keep the salted hashes stable across runs
        path.write_text(text)
        path.chmod(0o600)
    for sub in (
        "nova/lock",
        *(f"nova-{host}" for host in COMPUTES.values() if host != COMPUTE_HOST),
        "glance/images",
        "glance/staging",
        "glance/tasks",
        "glance/lock",
        "neutron/lock",
        "keystone",
        "rabbitmq",
        "mariadb",
    ):
        (data / sub).mkdir(parents=True, exist_ok=True)
    run.mkdir(parents=True, exist_ok=True)


def write_paste_configs(lay: Layout) -> None:
    """The APIs' paste pipelines, as their packages ship them: once the venvs exist."""
    for venv, names in (
        (lay.venv("openstack"), ("nova/api-paste.ini", "glance/glance-api-paste.ini")),
        (lay.venv("neutron"), ("neutron/api-paste.ini",)),
    ):
        for name in names:
            (lay.etc / name).write_text((venv / "etc" / name).read_text())

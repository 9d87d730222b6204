"""A real Neutron API server on 127.0.0.1, with its own PostgreSQL, for tests and demo.

Debian's ``neutron-server`` with no Keystone (``auth_strategy = noauth``: every request
is admin), ML2 with flat + vxlan type drivers, the router service plugin and
``transport_url = fake:/`` (no broker, no agents, no dataplane). The database is a
private PostgreSQL instance (Debian's binaries, run as the ``postgres`` user, on a free
loopback port, socket in the lab directory) migrated with the real
``neutron-db-manage upgrade heads``. SQLite is not an option (LAB-NOTES: failed
migrations, ``database is locked`` under load).

``start(d)`` returns facts: ``url`` (the API root), ``cloud`` (openstacksdk connection
arguments), ``db_url``, the PIDs; ``stop(d)`` ends only those PIDs. ``start_ovs_agents``
keeps Open vSwitch agents reporting on the compute hosts, so the lab Nova's ports bind. The directory must be
reachable by the ``postgres`` user: it defaults under /var/tmp.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from lab import pgsql, procs

PG_BIN = pgsql.PG_BIN
FACTS = procs.FACTS
DB_PASSWORD = "lab-only-neutron-db"  # a throwaway database on loopback
HERE = os.path.dirname(os.path.abspath(__file__))
L3_HOSTS = ("alice", "bob", "charlie")


class LabError(RuntimeError):
    pass


def closed_port():
    """A loopback port nothing listens on (for the unreachable-Neutron case)."""
    return procs.free_port()


def _neutron_conf(d, api_port, db_url):
    return f"""[DEFAULT]
bind_host = 127.0.0.1
bind_port = {api_port}
auth_strategy = noauth
core_plugin = ml2
service_plugins = router
transport_url = fake:/
# The API in neutron-server's own process, where the L3 agents' stand-in answers.
api_workers = 0
rpc_workers = 0
rpc_response_timeout = 10
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
router_auto_schedule = false
allow_automatic_l3agent_failover = false
api_paste_config = /etc/neutron/api-paste.ini
state_path = {d}/state
log_dir = {d}/log
use_stderr = false

[database]
connection = {db_url}

[oslo_concurrency]
lock_path = {d}/lock

[quotas]
quota_network = -1
quota_subnet = -1
quota_port = -1
quota_router = -1
quota_floatingip = -1
quota_security_group = -1
quota_security_group_rule = -1

[agent]
report_interval = 30

[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
# Binds a port on a host whose Open vSwitch agent reports (start_ovs_agents): the
# ports Nova creates for its servers. Elsewhere a binding fails, as with no agent.
mechanism_drivers = openvswitch
extension_drivers = port_security

[ml2_type_flat]
flat_networks = public,spare

[ml2_type_vxlan]
vni_ranges = 1:1000
"""


def _wait(predicate, timeout, what):
    if not procs.until(predicate, timeout):
        raise LabError(f"{what} did not come up within {timeout} s")


def _api_ready(url):
    try:
        with urllib.request.urlopen(url + "v2.0/networks", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start(d=None, l3_hosts=L3_HOSTS, timeout=90):
    """Start PostgreSQL and neutron-server in ``d``; return the facts. ``l3_hosts`` are
    the hosts whose L3 agent the lab can register (``report_l3_agents``)."""
    d = os.path.abspath(d or os.path.join("/var/tmp", f"hastack-neutron-{os.getpid()}"))
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)  # the postgres user works in here
    parent = pgsql.unreachable_parent(d)
    if parent:
        raise LabError(f"the postgres user cannot reach {d}: {parent} is not searchable by others")
    for sub in ("state", "log", "lock"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    facts = {"dir": d, "pids": {}}
    pgdata, sock_dir = os.path.join(d, "pgdata"), os.path.join(d, "pgsock")
    pgsql.own_dirs(pgdata, sock_dir)
    pg_port = procs.free_port()
    try:
        pgsql.init(pgdata)
        pg_pid = pgsql.launch(pgdata, sock_dir, pg_port, os.path.join(d, "log", "postgres.log"))
        facts["pids"]["postgres"] = pg_pid
        _write(d, facts)
        _wait(lambda: pgsql.ready(sock_dir, pg_port), 30, "PostgreSQL")
        psql = [
            os.path.join(PG_BIN, "psql"),
            "-h",
            sock_dir,
            "-p",
            str(pg_port),
            "-U",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
        ]
        pgsql.as_postgres(psql + [f"CREATE USER neutron PASSWORD '{DB_PASSWORD}'"])
        pgsql.as_postgres(psql + ["CREATE DATABASE neutron OWNER neutron"])
        db_url = f"postgresql+psycopg2://neutron:{DB_PASSWORD}@127.0.0.1:{pg_port}/neutron"
        api_port = procs.free_port()
        conf = os.path.join(d, "neutron.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(_neutron_conf(d, api_port, db_url))
        started = time.monotonic()
        subprocess.run(
            ["neutron-db-manage", "--config-file", conf, "upgrade", "heads"],
            check=True,
            capture_output=True,
            text=True,
        )
        facts["migrate_seconds"] = round(time.monotonic() - started, 1)
        facts["l3_hosts"] = list(l3_hosts)
        _launch_server(d, conf, facts)
        url = f"http://127.0.0.1:{api_port}/"
        facts.update(
            url=url,
            conf=conf,
            db_url=db_url,
            pg_port=pg_port,
            pg_socket_dir=sock_dir,
            cloud={"auth_type": "none", "network_endpoint_override": url},
        )
        _write(d, facts)
        _wait(lambda: _api_ready(url), timeout, "neutron-server")
    except (subprocess.CalledProcessError, LabError) as err:
        detail = getattr(err, "stderr", "") or ""
        stop(d)
        raise LabError(f"the Neutron lab did not start: {err} {detail[-2000:]}") from err
    return facts


def _launch_server(d, conf, facts):
    with open(os.path.join(d, "log", "neutron-server.stdout"), "a", encoding="utf-8") as log:
        # Debian's neutron-server, plus the L3 agents' RPC endpoint (lab/neutron_server.py).
        server = subprocess.Popen(  # pylint: disable=consider-using-with
            ["/usr/bin/python3", os.path.join(HERE, "neutron_server.py"), "--config-file", conf],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, HASTACK_LAB_L3_HOSTS=",".join(facts["l3_hosts"])),
        )
    facts["pids"]["neutron-server"] = server.pid


def stop_server(facts):
    """A Neutron outage: neutron-server (and its workers) ended; the database stays."""
    pid = facts["pids"]["neutron-server"]
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    procs.until(lambda: not procs.alive(pid), 15, 0.05)


def start_server(facts, timeout=90):
    """neutron-server back after ``stop_server`` (same port, same database)."""
    _launch_server(facts["dir"], facts["conf"], facts)
    _write(facts["dir"], facts)
    _wait(lambda: _api_ready(facts["url"]), timeout, "neutron-server")


def _write(d, facts):
    with open(os.path.join(d, FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh)


def stop(d):
    """Stop the agents' reporter (killed), neutron-server, then PostgreSQL: only the
    PIDs this lab started (and neutron-server's API workers, in its session)."""
    d = os.path.abspath(d)
    facts = procs.read_facts(d)
    if facts is None:
        return
    for name in ("ovs-agents", "neutron-server", "postgres"):
        pid = facts["pids"].get(name)
        if not pid:
            continue
        try:
            # Each was started in its own session: its group is the server and its workers.
            # The agents' reporter has nothing to finish, and neutron's imports make it
            # sit out SIGTERM for the whole timeout: it is killed.
            sig = {"postgres": signal.SIGINT, "ovs-agents": signal.SIGKILL}.get(
                name, signal.SIGTERM
            )
            os.killpg(pid, sig)
        except ProcessLookupError:
            continue
        procs.until(lambda p=pid: not procs.alive(p), 15, 0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.remove(os.path.join(d, FACTS))


def workshop_topology(conn, ports=()):
    """The workshop's network through the API: ``ext_net`` (router:external, flat on
    ``public``, 192.168.144.0/24), ``admin-net`` 10.5.5.0/24, ``admin-router`` with its
    gateway on ext_net and an interface on admin-net, and one ``compute:nova`` port per
    ``(name, host)`` in ``ports`` standing in for a VM. Returns {name: resource}."""
    made = {}
    made["ext_net"] = conn.network.create_network(
        name="ext_net",
        is_router_external=True,
        provider_network_type="flat",
        provider_physical_network="public",
    )
    made["ext_subnet"] = conn.network.create_subnet(
        network_id=made["ext_net"].id,
        name="ext_subnet",
        cidr="192.168.144.0/24",
        ip_version=4,
        enable_dhcp=False,
    )
    made["admin-net"] = conn.network.create_network(name="admin-net")
    made["admin-subnet"] = conn.network.create_subnet(
        network_id=made["admin-net"].id, name="admin-subnet", cidr="10.5.5.0/24", ip_version=4
    )
    made["admin-router"] = conn.network.create_router(
        name="admin-router", external_gateway_info={"network_id": made["ext_net"].id}
    )
    conn.network.add_interface_to_router(made["admin-router"], subnet=made["admin-subnet"].id)
    for name, host in ports:
        made[name] = vm_port(conn, made["admin-net"], name, host)
    return made


def report_l3_agents(facts, *hosts, heartbeat=False):
    """Register an L3 agent on each host the way Neutron does on an agent's state report
    (lab/neutron_agent_report.py runs Neutron's own handler); with ``heartbeat`` a
    running agent's periodic report (no start flag)."""
    script = os.path.join(HERE, "neutron_agent_report.py")
    subprocess.run(
        [
            "/usr/bin/python3",
            script,
            *(["--heartbeat"] if heartbeat else []),
            facts["conf"],
            *hosts,
        ],
        check=True,
        capture_output=True,
        text=True,
    )


def start_ovs_agents(facts, *hosts, every=20):
    """Open vSwitch agents on ``hosts``, reporting every ``every`` seconds (Neutron's
    own handler, lab/neutron_agent_report.py) until ``stop``: ML2 binds a port only on a
    host whose agent is alive, and the lab Nova's servers get such ports."""
    with open(os.path.join(facts["dir"], "log", "ovs-agents.log"), "a", encoding="utf-8") as log:
        reporter = subprocess.Popen(  # pylint: disable=consider-using-with
            [
                "/usr/bin/python3",
                os.path.join(HERE, "neutron_agent_report.py"),
                "--ovs",
                "--every",
                str(every),
                facts["conf"],
                *hosts,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    facts["pids"]["ovs-agents"] = reporter.pid
    _write(facts["dir"], facts)
    if not procs.until(lambda: _ovs_agents_alive(facts, hosts), 60, 0.5):
        raise LabError(f"the Open vSwitch agents of {', '.join(hosts)} did not report in 60 s")


def _ovs_agents_alive(facts, hosts):
    try:
        url = facts["url"] + "v2.0/agents?agent_type=Open+vSwitch+agent"
        with urllib.request.urlopen(url, timeout=5) as resp:
            agents = json.load(resp)["agents"]
    except OSError:
        return False
    return set(hosts) <= {a["host"] for a in agents if a["alive"]}


def age_agent(facts, host, seconds=3600):
    """Make the L3 agent on ``host`` look dead: its last heartbeat ``seconds`` ago (what
    Neutron sees when an agent stops reporting)."""
    pgsql.as_postgres(
        [
            os.path.join(PG_BIN, "psql"),
            "-h",
            facts["pg_socket_dir"],
            "-p",
            str(facts["pg_port"]),
            "-U",
            "postgres",
            "-d",
            "neutron",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            f"UPDATE agents SET heartbeat_timestamp = heartbeat_timestamp - interval '{int(seconds)} "
            f"seconds' WHERE host = '{host}' AND agent_type = 'L3 agent'",
        ]
    )


def vm_port(conn, network, name, host, device_id=None):
    """A port as Nova makes one for a VM (``compute:nova``, bound to ``host``)."""
    return vm_ports(conn, network, [name], host, device_id)[0]


def vm_ports(conn, network, names, host, device_id=None):
    """One such port per name, in one bulk request (Neutron writes them all in one
    transaction: 60 one at a time took about 20 s here); the ports, in order. A given
    ``device_id`` is every port's."""
    import uuid  # pylint: disable=import-outside-toplevel

    if not names:
        return []  # openstacksdk refuses an empty bulk request

    return list(
        conn.network.create_ports(
            [
                {
                    "network_id": network.id,
                    "name": name,
                    "device_owner": "compute:nova",
                    "device_id": device_id or str(uuid.uuid4()),
                    "binding_host_id": host,
                }
                for name in names
            ]
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2] if len(sys.argv) > 2 else None), indent=2))
    else:
        stop(sys.argv[2])

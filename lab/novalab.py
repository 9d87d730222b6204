"""A real Nova on 127.0.0.1 with the fake driver, for tests, demo and benchmarks.

Debian 12's packages, run with Debian's ``/usr/bin/python3``: placement-api (uwsgi),
nova-api (``auth_strategy = noauth2`` plus lab/nova_token.py, no Keystone),
nova-conductor, nova-scheduler and one nova-compute per host name, each with its own
config file (``host=<name>``) and ``compute_driver = fake.FakeDriver``, run by
lab/nova_compute.py (the ``nova-compute`` package would pull libvirt and qemu). The
image service is Debian's real glance-api (file store in the lab directory, no
Keystone: the ``unauthenticated-context`` paste flavor). RabbitMQ is a private node
(its own epmd, node name, ports, directories); PostgreSQL a private instance
(lab/pgsql.py) with the nova_api, nova, nova_cell0, placement and glance databases,
migrated by the real ``nova-manage``, ``placement-manage`` and ``glance-manage``.

Neutron: Nova asks a real neutron-server about its servers' ports. ``start(d,
neutron_url=...)`` points it at one already running (the lab Neutron of the caller,
lab/neutronlab.py, noauth: Nova's ``admin_token`` is accepted as is), where Nova
creates and binds its servers' ports (neutronlab.start_ovs_agents on the compute
hosts); without one, the lab starts its own lab Neutron in ``d/neutron`` (about 10 s
and 650 MB more) and ``stop`` ends it.

Migrating takes most of a cold start, so the migrated database cluster is kept once
per package version under /var/tmp (``hastack-nova-pgdata-*``) and copied into the
next lab (cell mappings are URL templates, so they do not carry the old ports).

``start(d)`` returns the facts (see ``start``); ``stop(d)`` ends only the PIDs the lab
recorded. The directory must be reachable by the ``postgres`` and ``rabbitmq`` users:
it defaults under /var/tmp.
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from lab import neutronlab, pgsql, procs

FACTS = procs.FACTS
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = "/usr/bin/python3"  # Debian's: it has nova (the python3 on PATH may not)
DB_PASSWORD = "lab-only-nova-db"  # a throwaway database on loopback
TOKEN = "admin:admin"  # noauth2: user admin, project admin
PROJECT = "admin"  # the project of every server (Nova takes only its project's ports)
DATABASES = ("nova_api", "nova", "nova_cell0", "placement", "glance")
TEMPLATE_ROOT = "/var/tmp"
PACKAGES = ("python3-nova", "python3-placement", "python3-glance", "postgresql-15")
COMPUTES = ("host1", "host2", "host3")


class LabError(RuntimeError):
    pass


# --- configuration files -------------------------------------------------------------


def _nova_db_conf(f):
    """The databases, for the control services only: a compute that sees them tries
    them (and logs "No DB access allowed in nova-compute")."""
    db = f"postgresql+psycopg2://nova:{DB_PASSWORD}@127.0.0.1:{f['pg_port']}"
    return f"""[database]
connection = {db}/nova

[api_database]
connection = {db}/nova_api
"""


def _nova_conf(f):
    return f"""[DEFAULT]
host = controller
my_ip = 127.0.0.1
transport_url = {f["transport_url"]}
enabled_apis = osapi_compute
osapi_compute_listen = 127.0.0.1
osapi_compute_listen_port = {f["api_port"]}
osapi_compute_workers = 1
state_path = {f["dir"]}/state
use_stderr = false
compute_driver = fake.FakeDriver
# Host discovery and service state on the lab's time scale (LAB-NOTES).
periodic_fuzzy_delay = 0
graceful_shutdown_timeout = 5
report_interval = 2
service_down_time = 10
heal_instance_info_cache_interval = 0

[api]
auth_strategy = noauth2

[wsgi]
api_paste_config = {f["dir"]}/nova-api-paste.ini

[conductor]
workers = 1

[scheduler]
workers = 1
discover_hosts_in_cells_interval = 5

[filter_scheduler]
# Fake hosts weigh the same: spread servers instead of filling the first host.
host_subset_size = 3
shuffle_best_same_weighed_hosts = true

[placement]
auth_type = admin_token
endpoint = {f["placement_url"]}
token = {TOKEN}

[neutron]
auth_type = admin_token
endpoint = {f["neutron_url"]}
endpoint_override = {f["neutron_url"]}
token = {TOKEN}

[glance]
api_servers = {f["image_url"]}

[quota]
# Defaults stop at 10 servers, and the quota API needs Keystone.
instances = -1
cores = -1
ram = -1

[oslo_concurrency]
lock_path = {f["dir"]}/lock

[oslo_messaging_notifications]
driver = noop
"""


def _placement_conf(f):
    return f"""[DEFAULT]
use_stderr = true

[api]
auth_strategy = noauth2

[placement_database]
connection = postgresql+psycopg2://nova:{DB_PASSWORD}@127.0.0.1:{f["pg_port"]}/placement
"""


def _glance_conf(f):
    g = os.path.join(f["dir"], "glance")
    return f"""[DEFAULT]
bind_host = 127.0.0.1
bind_port = {f["image_port"]}
workers = 1
use_stderr = false
log_file = {f["dir"]}/log/glance-api.log
enabled_backends = file:file

[database]
connection = postgresql+psycopg2://nova:{DB_PASSWORD}@127.0.0.1:{f["pg_port"]}/glance

[glance_store]
default_backend = file

[file]
filesystem_store_datadir = {g}/images

[os_glance_staging_store]
filesystem_store_datadir = {g}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {g}/tasks

[paste_deploy]
# No Keystone: the "unauthenticated-context" pipeline (every request is admin).
flavor =
config_file = /etc/glance/glance-api-paste.ini

[oslo_concurrency]
lock_path = {f["dir"]}/lock

[oslo_policy]
# Every request here carries an admin context without roles: the pre-RBAC rules.
enforce_new_defaults = false
enforce_scope = false
"""


def _api_paste(d):
    """Debian's api-paste.ini with lab/nova_token.py right after ``noauth2``."""
    with open("/etc/nova/api-paste.ini", encoding="utf-8") as fh:
        text = fh.read()
    lines = []
    for line in text.splitlines():
        if line.startswith("noauth2 =") and " noauth2 " in line:
            line = line.replace(" noauth2 ", " noauth2 labtoken ")
        lines.append(line)
    lines += ["", "[filter:labtoken]", "paste.filter_factory = lab.nova_token:filter_factory", ""]
    path = os.path.join(d, "nova-api-paste.ini")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    return path


def compute_conf(facts, host, path=None, **overrides):
    """Write the config file that makes a nova-compute ``host`` (with the lab's
    nova.conf before it); ``overrides`` are more ``[DEFAULT]`` options (e.g. another
    ``state_path`` for a fresh node). Returns its path."""
    d = facts["dir"]
    state = overrides.pop("state_path", os.path.join(d, "computes", host))
    opts = {
        "host": host,
        "state_path": state,
        "instances_path": os.path.join(state, "instances"),
        "log_file": os.path.join(d, "log", f"nova-compute-{host}.log"),
        **overrides,
    }
    os.makedirs(opts["instances_path"], exist_ok=True)
    path = path or os.path.join(d, f"compute-{host}.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("[DEFAULT]\n" + "".join(f"{k} = {v}\n" for k, v in opts.items()))
    return path


def compute_argv(facts, host, conf=None):
    """The exact command that runs nova-compute as ``host`` (``conf``: its compute
    config, by default the one ``compute_conf`` writes)."""
    conf = conf or os.path.join(facts["dir"], f"compute-{host}.conf")
    return [
        PY,
        os.path.join(HERE, "nova_compute.py"),
        "--config-file",
        facts["nova_conf"],
        "--config-file",
        conf,
    ]


# --- processes -----------------------------------------------------------------------


def _write(facts):
    with open(os.path.join(facts["dir"], FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh, indent=2)


def _launch(facts, name, argv, user=None, env=None):
    """Start ``argv`` in its own session (its group is what stop() signals); log
    to log/<name>.out."""
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    with open(os.path.join(facts["dir"], "log", f"{name}.out"), "a", encoding="utf-8") as log:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=facts["dir"],
            env=dict(os.environ, **(env or {})),
        )
    facts["pids"][name] = proc.pid
    _write(facts)
    return proc.pid


def _end(pid, sig=signal.SIGTERM, timeout=15):
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    procs.until(lambda: not procs.alive(pid), timeout, 0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    procs.until(lambda: not procs.alive(pid), 5, 0.05)


def _run(argv, what, **kwargs):
    res = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if res.returncode:
        raise LabError(f"{what} failed ({res.returncode}): {(res.stderr or res.stdout)[-2000:]}")
    return res


def _wait(predicate, timeout, what, facts=None, name=None):
    def check():
        if facts and name and not procs.alive(facts["pids"][name]):
            raise LabError(f"{what} exited; see {facts['dir']}/log/")
        return predicate()

    if not procs.until(check, timeout, 0.25):
        raise LabError(f"{what} did not come up within {timeout} s; see logs in the lab dir")


def _http(url, method="GET", body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("X-Auth-Token", TOKEN)
    if isinstance(body, dict):
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
        return json.loads(raw) if raw else None


def _up(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500
    except OSError:
        return False


def _amqp_up(port):
    """RabbitMQ answers an AMQP 0-9-1 header with connection.start (a method frame)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            return sock.recv(1) == b"\x01"
    except OSError:
        return False


def _start_rabbitmq(facts):
    d = facts["dir"]
    rdir = os.path.join(d, "rabbitmq")
    for sub in ("", "mnesia", "log"):
        os.makedirs(os.path.join(rdir, sub), exist_ok=True)
        shutil.chown(os.path.join(rdir, sub), "rabbitmq", "rabbitmq")
    conf = os.path.join(rdir, "rabbitmq.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(f"listeners.tcp.1 = 127.0.0.1:{facts['amqp_port']}\n")
    with open(os.path.join(rdir, "enabled_plugins"), "w", encoding="utf-8") as fh:
        fh.write("[].\n")
    env = {
        # epmd is ours (recorded by PID): the node finds it on this port and does not
        # start one of its own that would outlive the lab.
        "ERL_EPMD_PORT": str(facts["epmd_port"]),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "HOME": rdir,  # its .erlang.cookie
        "RABBITMQ_CONF_ENV_FILE": "/dev/null",
        "RABBITMQ_NODENAME": facts["rabbit_node"],
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(facts["amqp_port"]),
        "RABBITMQ_DIST_PORT": str(facts["dist_port"]),
        "RABBITMQ_CONFIG_FILE": conf[: -len(".conf")],
        "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(rdir, "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": os.path.join(rdir, "mnesia"),
        "RABBITMQ_LOG_BASE": os.path.join(rdir, "log"),
        "RABBITMQ_PID_FILE": os.path.join(rdir, "rabbitmq.pid"),
        # Else the distribution port binds 0.0.0.0.
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    _launch(
        facts,
        "epmd",
        ["/usr/bin/epmd", "-port", str(facts["epmd_port"]), "-address", "127.0.0.1"],
        user="rabbitmq",
    )
    _launch(facts, "rabbitmq", ["/usr/lib/rabbitmq/bin/rabbitmq-server"], "rabbitmq", env)


def _template_dir():
    """Where the migrated cluster for these package versions is kept."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package}=${Version}\n", *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
    )
    key = hashlib.sha256((res.stdout + str(DATABASES)).encode()).hexdigest()[:12]
    return os.path.join(TEMPLATE_ROOT, f"hastack-nova-pgdata-{key}")


def _start_postgres(facts, pgdata, sock_dir):
    pid = pgsql.launch(
        pgdata, sock_dir, facts["pg_port"], os.path.join(facts["dir"], "log", "postgres.log")
    )
    facts["pids"]["postgres"] = pid
    _write(facts)
    _wait(lambda: pgsql.ready(sock_dir, facts["pg_port"]), 30, "PostgreSQL", facts, "postgres")


def _migrate(facts):
    """Create and migrate the databases with the projects' own tools."""
    sock, port = facts["pg_socket_dir"], facts["pg_port"]
    pgsql.psql(sock, port, f"CREATE USER nova PASSWORD '{DB_PASSWORD}'")
    for db in DATABASES:
        pgsql.psql(sock, port, f"CREATE DATABASE {db} OWNER nova")
    manage = [PY, "/usr/bin/nova-manage", *_nova_config_args(facts)]
    # Templates: a cell mapping takes host and port from the reader's own config, so
    # the copied database works whatever ports the next lab gets.
    tpl = "{scheme}://{username}:{password}@{hostname}:{port}/"

    def nova():
        _run(manage + ["api_db", "sync"], "nova-manage api_db sync")
        _run(
            manage + ["cell_v2", "map_cell0", "--database_connection", tpl + "nova_cell0"],
            "nova-manage cell_v2 map_cell0",
        )
        _run(
            manage
            + [
                "cell_v2",
                "create_cell",
                "--name",
                "cell1",
                "--database_connection",
                tpl + "nova",
                "--transport-url",
                tpl + "{path}",
            ],
            "nova-manage cell_v2 create_cell",
        )
        _run(manage + ["db", "sync"], "nova-manage db sync")

    def placement():
        _run(
            [PY, "/usr/bin/placement-manage", "--config-file", facts["placement_conf"]]
            + ["db", "sync"],
            "placement-manage db sync",
        )

    def glance():
        _run(
            [PY, "/usr/bin/glance-manage", "--config-file", facts["glance_conf"], "db_sync"],
            "glance-manage db_sync",
        )

    with ThreadPoolExecutor(3) as pool:
        for job in [pool.submit(fn) for fn in (nova, placement, glance)]:
            job.result()


def _prepare_database(facts):
    """A migrated cluster in the lab: a copy of the kept one, or migrate and keep it."""
    d = facts["dir"]
    pgdata, sock_dir = os.path.join(d, "pgdata"), facts["pg_socket_dir"]
    template = _template_dir()
    pgsql.own_dirs(sock_dir)
    started = time.monotonic()
    if os.path.isdir(template):
        _run(["cp", "-a", template, pgdata], "copying the migrated database")
        _start_postgres(facts, pgdata, sock_dir)
        facts["database"] = "copied"
    else:
        pgsql.own_dirs(pgdata)
        pgsql.init(pgdata)
        _start_postgres(facts, pgdata, sock_dir)
        _migrate(facts)
        # Keep a clean copy (a stopped cluster) for the next lab; rename is atomic, so a
        # concurrent lab either finds the whole template or none.
        pgsql.stop(facts["pids"].pop("postgres"))
        partial = f"{template}.{os.getpid()}.tmp"
        _run(["cp", "-a", pgdata, partial], "keeping the migrated database")
        try:
            os.rename(partial, template)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
        _start_postgres(facts, pgdata, sock_dir)
        facts["database"] = "migrated"
    facts["database_seconds"] = round(time.monotonic() - started, 1)


def _service_env():
    # nova-api loads lab/nova_token.py from its paste file.
    return {"PYTHONPATH": REPO}


def _nova_config_args(facts):
    return ["--config-file", facts["nova_conf"], "--config-file", facts["nova_db_conf"]]


def _nova_service(facts, name, binary):
    _launch(
        facts,
        name,
        [
            PY,
            binary,
            *_nova_config_args(facts),
            "--log-file",
            os.path.join(facts["dir"], "log", f"{name}.log"),
        ],
        env=_service_env(),
    )


def start_compute(facts, host, conf=None, timeout=60, wait=True):
    """Start nova-compute as ``host`` (its config from ``compute_conf`` unless ``conf``)
    and, with ``wait``, return once it serves RPC: its service record has been written
    twice since (on start, before the RPC server, then by the first state report)."""
    if conf is None:
        conf = compute_conf(facts, host)
    before, seen = _service_updated(facts, host), set()
    name = f"nova-compute-{host}"
    _launch(facts, name, compute_argv(facts, host, conf), env=_service_env())

    def reported_twice():
        stamp = _service_updated(facts, host)
        if stamp not in (None, before):
            seen.add(stamp)
        return len(seen) >= 2

    if wait:
        _wait(reported_twice, timeout, f"nova-compute {host}", facts, name)


def stop_compute(facts, host, kill=False):
    """End ``host``'s nova-compute: SIGTERM (graceful) or, with ``kill``, SIGKILL (a
    dead node: the service stays "up" until ``service_down_time`` passes)."""
    pid = facts["pids"].pop(f"nova-compute-{host}", None)
    if pid:
        _end(pid, signal.SIGKILL if kill else signal.SIGTERM)
    _write(facts)


def _services(facts, binary="nova-compute"):
    try:
        return _http(facts["compute_url"] + f"/os-services?binary={binary}")["services"]
    except OSError:
        return []


def _service_updated(facts, host):
    for svc in _services(facts):
        if svc["host"] == host:
            return svc["updated_at"]
    return None


def _hosts_ready(facts, hosts):
    """Every host's service up, its resource provider in placement, and the host mapped
    to the cell (the scheduler's discovery): only then can a server be placed on it."""
    up = {s["host"] for s in _services(facts) if s["state"] == "up"}
    if not set(hosts) <= up:
        return False
    try:
        rps = _http(facts["placement_url"] + "/resource_providers")["resource_providers"]
    except OSError:
        return False
    if not set(hosts) <= {rp["name"] for rp in rps}:
        return False
    res = pgsql.psql(
        facts["pg_socket_dir"],
        facts["pg_port"],
        "SELECT host FROM host_mappings",
        db="nova_api",
    )
    return set(hosts) <= set(res.stdout.split())


def wait_hosts(facts, hosts=None, timeout=90):
    """Block until ``hosts`` (default: the lab's computes) can take servers."""
    hosts = list(hosts or facts["computes"])
    _wait(lambda: _hosts_ready(facts, hosts), timeout, f"computes {hosts}")


def _image(facts):
    """Upload a small raw image (the fake driver never reads it)."""
    url = facts["image_url"]
    image = _http(
        url + "/v2/images",
        "POST",
        {
            "name": "cirros-lab",
            "disk_format": "raw",
            "container_format": "bare",
        },
    )
    _http(
        url + f"/v2/images/{image['id']}/file",
        "PUT",
        b"\0" * (1024 * 1024),
        {"Content-Type": "application/octet-stream"},
    )
    return image["id"]


def _flavor(facts):
    body = {"flavor": {"name": "m1.lab", "vcpus": 1, "ram": 128, "disk": 1}}
    return _http(facts["compute_url"] + "/flavors", "POST", body)["flavor"]["id"]


# --- the lab -------------------------------------------------------------------------


def start(d=None, computes=COMPUTES, timeout=180, neutron_url=None):
    """Start the whole Nova in ``d``; return the facts: ``dir``, ``compute_url``
    (http://127.0.0.1:P/v2.1), ``placement_url``, ``image_url``, ``neutron_url`` (the
    given neutron-server, else the lab's own: ``neutron`` then holds its facts),
    ``image_id``, ``flavor_id``, ``token``, ``cloud`` (openstacksdk
    arguments), ``nova_conf``, ``compute_confs`` {host: path}, ``computes``,
    ``transport_url``, ``pg_port``, ``pg_socket_dir``, ``pids`` {name: pid},
    ``database`` ("migrated" or "copied"), ``database_seconds`` and ``start_seconds``."""
    started = time.monotonic()
    d = os.path.abspath(d or os.path.join("/var/tmp", f"hastack-nova-{os.getpid()}"))
    if procs.read_facts(d):
        raise LabError(f"a lab already runs in {d} (stop it first)")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)  # the postgres and rabbitmq users work in here
    parent = pgsql.unreachable_parent(d)
    if parent:
        raise LabError(f"the postgres user cannot reach {d}: {parent} is not searchable")
    for sub in ("state", "log", "lock", "placement", "glance", "computes"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    names = (
        "pg_port",
        "amqp_port",
        "dist_port",
        "epmd_port",
        "placement_port",
        "image_port",
        "api_port",
    )
    own_neutron = None
    if not neutron_url:
        try:
            own_neutron = neutronlab.start(os.path.join(d, "neutron"))
        except neutronlab.LabError as err:
            raise LabError(f"the Nova lab's Neutron did not start: {err}") from err
        neutron_url = own_neutron["url"]
    ports = dict(zip(names, procs.free_ports(len(names))))
    facts = {
        "dir": d,
        "neutron": own_neutron,
        "pids": {},
        **ports,
        "computes": list(computes),
        "token": TOKEN,
        "pg_socket_dir": os.path.join(d, "pgsock"),
        "rabbit_node": f"hastack-nova-{ports['amqp_port']}@localhost",
        "transport_url": f"rabbit://guest:guest@127.0.0.1:{ports['amqp_port']}/",
        "placement_url": f"http://127.0.0.1:{ports['placement_port']}",
        "image_url": f"http://127.0.0.1:{ports['image_port']}",
        "neutron_url": neutron_url.rstrip("/"),
        "compute_url": f"http://127.0.0.1:{ports['api_port']}/v2.1",
        "nova_conf": os.path.join(d, "nova.conf"),
        "nova_db_conf": os.path.join(d, "nova-db.conf"),
        "placement_conf": os.path.join(d, "placement", "placement.conf"),
        "glance_conf": os.path.join(d, "glance-api.conf"),
    }
    for key, text in (
        ("nova_conf", _nova_conf(facts)),
        ("nova_db_conf", _nova_db_conf(facts)),
        ("placement_conf", _placement_conf(facts)),
        ("glance_conf", _glance_conf(facts)),
    ):
        with open(facts[key], "w", encoding="utf-8") as fh:
            fh.write(text)
    _api_paste(d)
    facts["cloud"] = cloud(facts)
    _write(facts)
    try:
        _start_rabbitmq(facts)  # 5-8 s to boot: in parallel with the database
        _prepare_database(facts)
        _launch(
            facts,
            "placement-api",
            [
                "/usr/bin/uwsgi",
                "--plugin",
                "python3",
                "--http-socket",
                f"127.0.0.1:{facts['placement_port']}",
                "--wsgi-file",
                "/usr/bin/placement-api",
                "--master",
                "--processes",
                "1",
                "--threads",
                "4",
                "--die-on-term",
                "--no-orphans",
                "--need-app",
            ],
            env={"OS_PLACEMENT_CONFIG_DIR": os.path.dirname(facts["placement_conf"])},
        )
        _launch(
            facts,
            "glance-api",
            [PY, "/usr/bin/glance-api", "--config-file", facts["glance_conf"]],
        )
        _nova_service(facts, "nova-api", "/usr/bin/nova-api")
        _wait(lambda: _amqp_up(facts["amqp_port"]), 60, "RabbitMQ", facts, "rabbitmq")
        _nova_service(facts, "nova-conductor", "/usr/bin/nova-conductor")
        # The scheduler and computes need placement from their first request on.
        _wait(lambda: _up(facts["placement_url"] + "/"), 60, "placement", facts, "placement-api")
        _nova_service(facts, "nova-scheduler", "/usr/bin/nova-scheduler")
        facts["compute_confs"] = {}
        for host in computes:
            facts["compute_confs"][host] = compute_conf(facts, host)
            start_compute(facts, host, facts["compute_confs"][host], wait=False)
        _wait(lambda: _up(facts["compute_url"] + "/"), 60, "nova-api", facts, "nova-api")
        _wait(
            lambda: _up(facts["image_url"] + "/v2/schemas/image"),
            60,
            "glance-api",
            facts,
            "glance-api",
        )
        facts["image_id"] = _image(facts)
        facts["flavor_id"] = _flavor(facts)
        _write(facts)
        remaining = max(30, timeout - (time.monotonic() - started))
        wait_hosts(facts, computes, remaining)
    except (LabError, OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or ""
        stop(d)
        raise LabError(f"the Nova lab did not start: {err} {detail[-2000:]}") from err
    facts["start_seconds"] = round(time.monotonic() - started, 1)
    _write(facts)
    return facts


def boot(facts, conn, host, names, ports=None, metadata=None, batch=10, timeout=120):
    """Servers ``names`` on compute ``host``, ``batch`` at a time (the lab's one
    scheduler and conductor worker fall behind on 50 at once); each boots with its
    port from ``ports`` (IDs in the order of ``names``: Nova binds them in the lab
    Neutron) or with none. Returns them in order once every one is ACTIVE and running
    there, or raises LabError with the states and Nova's faults."""
    made = []
    for first in range(0, len(names), batch):
        wave = [
            conn.compute.create_server(
                name=name,
                image_id=facts["image_id"],
                flavor_id=facts["flavor_id"],
                networks=[{"port": ports[first + i]}] if ports else "none",
                availability_zone=f"nova:{host}",
                metadata=metadata or {},
            ).id
            for i, name in enumerate(names[first : first + batch])
        ]
        got = {}

        def up(wave=wave):
            got.clear()
            got.update(
                (s.id, s)
                for s in conn.compute.servers(details=True, all_projects=True)
                if s.id in wave
            )
            return all(
                i in got
                and got[i].status == "ACTIVE"
                and got[i].task_state is None
                and got[i].power_state == 1
                and got[i].compute_host == host
                for i in wave
            )

        if not procs.until(up, timeout, 0.5):
            states = sorted(
                {(s.status, s.task_state, s.compute_host) for s in got.values()}, key=str
            )
            faults = {s.fault.get("message") for s in got.values() if s.fault}
            raise LabError(f"servers did not boot on {host}: {states}; faults {faults}")
        made += [got[i] for i in wave]
    return made


def boot_with_ports(facts, conn, host, names, network_id, batch=20):
    """Servers ``names`` on compute ``host``, each with its own port on ``network_id``
    named ``<name>-port`` (made first, as an operator does for a known name or
    address); returns the ports as Nova left them (device, binding), in order."""
    made = [
        conn.network.create_port(network_id=network_id, name=f"{n}-port", project_id=PROJECT).id
        for n in names
    ]
    boot(facts, conn, host, names, made, batch=batch)
    return [conn.network.get_port(port_id) for port_id in made]


def cloud(facts):
    """openstacksdk connection arguments for the lab (noauth2: a fixed token, every
    endpoint given; keystoneauth's ``admin_token`` plugin sends it as X-Auth-Token)."""
    return {
        "auth_type": "admin_token",
        "auth": {"endpoint": facts["compute_url"], "token": TOKEN},
        "compute_endpoint_override": facts["compute_url"],
        "placement_endpoint_override": facts["placement_url"],
        "image_endpoint_override": facts["image_url"],
        "network_endpoint_override": facts["neutron_url"],
        "compute_api_version": "2.90",
    }


def connection(facts):
    """An openstacksdk Connection to the lab."""
    import openstack  # pylint: disable=import-outside-toplevel

    return openstack.connect(**facts["cloud"])


def memory_mib(facts):
    """Proportional set size of everything the lab runs (each PID's session), MiB."""
    sessions = set(facts["pids"].values())
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) not in sessions:
                continue
            with open(f"/proc/{entry}/smaps_rollup", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except (OSError, ProcessLookupError):
            continue
    return round(total / 1024)


def stop(d):
    """Stop what this lab started (only its recorded PIDs and their sessions)."""
    d = os.path.abspath(d)
    facts = procs.read_facts(d)
    if facts is None:
        return
    pids = facts["pids"]
    # Everything but PostgreSQL at once (each takes up to its own shutdown timeout; one
    # after another they took 12 s), then PostgreSQL, which the others write to on exit.
    services = [pid for name, pid in pids.items() if pid and name != "postgres"]
    for pid in services:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid in services:
        _end(pid)
    if pids.get("postgres"):
        pgsql.stop(pids["postgres"])
    if facts.get("neutron"):
        neutronlab.stop(facts["neutron"]["dir"])
    os.remove(os.path.join(d, FACTS))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lab.novalab", description=__doc__.split("\n", maxsplit=1)[0]
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir")
    parser.add_argument("--computes", default=",".join(COMPUTES))
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(json.dumps(start(args.dir, tuple(args.computes.split(","))), indent=2))
        else:
            stop(args.dir)
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab Nova (lab/novalab.py): Debian's nova-api, conductor, scheduler, placement and
glance-api, with three nova-compute processes on the fake driver, all on 127.0.0.1.
These tests prove what the failover work relies on, read back through the API as an
operator would: servers boot on a chosen host, a dead host's servers can be evacuated,
and a new nova-compute that takes a dead host's identity takes its servers back. The
one stand-in is Neutron (servers have no ports; it answers "no ports")."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from lab import novalab, procs

RUNNING = 1  # Nova's power_state for a running guest
NOSTATE = 0  # the hypervisor holds no guest for the server


@pytest.fixture(scope="module")
def nova(nova_lab):
    return nova_lab


@pytest.fixture(scope="module")
def conn(nova):
    return novalab.connection(nova)


def wait_for(condition, timeout, what):
    assert procs.until(condition, timeout, 0.3), f"{what} within {timeout} s"


def settled(conn, server_id, host=None, power_state=RUNNING):
    """The server ACTIVE, no task running, the guest in ``power_state``, on ``host`` (or
    anywhere but host1 with host="elsewhere")."""
    server = conn.compute.get_server(server_id)
    where = server.compute_host != "host1" if host == "elsewhere" else server.compute_host == host
    return (
        server.status == "ACTIVE"
        and server.task_state is None
        and server.power_state == power_state
        and (host is None or where)
    )


def cli(nova, *args):
    """The openstack CLI beside this Python (the venv's), against the lab's noauth2."""
    argv = [
        os.path.join(os.path.dirname(sys.executable), "openstack"),
        "--os-auth-type",
        "admin_token",
        "--os-endpoint",
        nova["compute_url"],
        "--os-token",
        nova["token"],
        "--os-compute-api-version",
        "2.90",
        *args,
    ]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.fixture(scope="module")
def host1_servers(nova, conn):
    started = time.monotonic()
    servers = [
        conn.compute.create_server(
            name=f"lab-vm{i}",
            image_id=nova["image_id"],
            flavor_id=nova["flavor_id"],
            networks="none",
            availability_zone="nova:host1",
        )
        for i in range(4)
    ]
    wait_for(lambda: all(settled(conn, s.id, "host1") for s in servers), 60, "4 servers on host1")
    nova["figures"]["boot_s_per_server"] = round((time.monotonic() - started) / 4, 2)
    return [s.id for s in servers]


def test_lab_offers_three_hosts_an_image_and_a_flavor(nova, conn):
    services = {s.host: s.state for s in conn.compute.services() if s.binary == "nova-compute"}
    assert services == {"host1": "up", "host2": "up", "host3": "up"}
    assert sorted(h.name for h in conn.compute.hypervisors()) == ["host1", "host2", "host3"]
    with urllib.request.urlopen(nova["image_url"] + "/v2/schemas/image", timeout=10) as resp:
        assert resp.status == 200 and b'"id"' in resp.read()
    assert conn.image.get_image(nova["image_id"]).status == "active"
    flavor = conn.compute.get_flavor(nova["flavor_id"])
    assert (flavor.vcpus, flavor.ram, flavor.disk) == (1, 128, 1)


def test_servers_boot_on_the_chosen_host(conn, host1_servers):
    for server_id in host1_servers:
        server = conn.compute.get_server(server_id)
        assert (server.status, server.compute_host, server.power_state) == (
            "ACTIVE",
            "host1",
            RUNNING,
        )


def test_a_new_compute_with_the_same_host_takes_over_its_servers(nova, conn, host1_servers):
    novalab.stop_compute(nova, "host1", kill=True)
    # A fresh node: empty state path, same host= (what Pacemaker moves between nodes).
    conf = novalab.compute_conf(
        nova,
        "host1",
        path=os.path.join(nova["dir"], "compute-host1-takeover.conf"),
        state_path=os.path.join(nova["dir"], "computes", "host1-takeover"),
    )
    novalab.start_compute(nova, "host1", conf)
    hosts = {s.host for s in conn.compute.services() if s.binary == "nova-compute"}
    assert hosts == {"host1", "host2", "host3"}  # the same service, not a new one
    # The servers stay on host1, but the new hypervisor holds no guest for them...
    wait_for(
        lambda: all(settled(conn, s, "host1", NOSTATE) for s in host1_servers),
        30,
        "servers on host1 with no guest",
    )
    # ...until a HARD reboot makes it create them.
    for server_id in host1_servers:
        conn.compute.reboot_server(server_id, "HARD")
    wait_for(
        lambda: all(settled(conn, s, "host1", RUNNING) for s in host1_servers),
        60,
        "servers running again on host1",
    )


def test_a_dead_hosts_servers_are_evacuated(nova, conn, host1_servers):
    novalab.stop_compute(nova, "host1", kill=True)
    # Nova refuses while it still believes the source compute is up.
    refused = conn.compute.post(
        f"/servers/{host1_servers[0]}/action", json={"evacuate": {}}, microversion="2.90"
    )
    assert refused.status_code == 400 and "still in use" in refused.text
    started = time.monotonic()
    # The operator's way: the openstack CLI forces the service down and evacuates one;
    # the other three through the API.
    cli(nova, "compute", "service", "set", "--down", "host1", "nova-compute")
    service = next(s for s in conn.compute.services() if s.host == "host1")
    assert service.is_forced_down and service.state == "down"
    cli(nova, "server", "evacuate", host1_servers[0])
    for server_id in host1_servers[1:]:
        resp = conn.compute.post(
            f"/servers/{server_id}/action", json={"evacuate": {}}, microversion="2.90"
        )
        assert resp.status_code == 200, resp.text
    wait_for(
        lambda: all(settled(conn, s, "elsewhere") for s in host1_servers),
        60,
        "servers running on host2/host3",
    )
    nova["figures"]["evacuate_s_per_server"] = round((time.monotonic() - started) / 4, 2)
    hosts = {conn.compute.get_server(s).compute_host for s in host1_servers}
    assert hosts <= {"host2", "host3"}
    shown = cli(nova, "server", "show", host1_servers[0], "-f", "value", "-c", "status")
    assert shown.strip() == "ACTIVE"

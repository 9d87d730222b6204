"""The real lab Nova (lab/novalab.py), and nova_compute, the module that talks to it: a dead compute's
servers evacuated per VM, in priority order, only those the pillar protects, spread by
Nova's scheduler over the survivors that have room; what does not fit is named with the
shortfall and not started; a VM whose evacuation fails is named with Nova's fault while
the others complete; the returning compute is enabled only after it cleaned up.

The layout: host1 holds three big protected VMs (priorities 10, 5, 1), one small
unprotected VM and two small protected VMs in an affinity group (Nova cannot evacuate
them: their group lives on host1 only); host2 and host3 each hold two big VMs, so each
has room for one more big one. A big VM takes 399000 MB of the fake driver's 800000 MB
(x1.5 allocation ratio) per host.

Then the lab itself, as the failover relies on it, through the API and the openstack
CLI: servers boot on a chosen host, a new nova-compute with a dead host's ``host=``
takes its servers back (after a HARD reboot: the fake driver's resume is a no-op),
and a dead host's servers can be evacuated by hand. The lab Nova asks a lab Neutron
of its own (a real neutron-server; these servers boot without ports).
"""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from lab import novalab, procs, saltlocal

BIG_MB = 399000
RUNNING = 1  # Nova's power_state for a running guest
NOSTATE = 0  # the hypervisor holds no guest for the server


@pytest.fixture(scope="module")
def conn(nova_lab):
    return novalab.connection(nova_lab)


@pytest.fixture(scope="module")
def ops(nova_lab, tmp_path_factory):
    """A minion whose pillar names the lab Nova as hastack:openstack:cloud."""
    pillar = {"hastack": {"openstack": {"cloud": nova_lab["cloud"]}}}
    return saltlocal.Minion(str(tmp_path_factory.mktemp("ops")), "ops", pillar, example=False)


def call(minion, fun, *args):
    rc, out = minion.call(fun, *args)
    assert rc == 0, minion.last_output
    return out


@pytest.fixture(scope="module")
def layout(nova_lab, conn):
    big = conn.compute.create_flavor(name="lab.big", vcpus=1, ram=BIG_MB, disk=1)
    group = conn.compute.create_server_group(name="kept-together", policies=["affinity"])

    def boot(name, host, flavor, metadata=None, group_id=None):
        extra = {"scheduler_hints": {"group": group_id}} if group_id else {}
        return conn.compute.create_server(
            name=name,
            image_id=nova_lab["image_id"],
            flavor_id=flavor,
            networks="none",
            availability_zone=f"nova:{host}",
            metadata=metadata or {},
            **extra,
        )

    small = nova_lab["flavor_id"]
    ha = {"HA_Enabled": "True"}
    servers = [
        boot("vm-a", "host1", big.id, dict(ha, ha_priority="10")),
        boot("vm-b", "host1", big.id, dict(ha, ha_priority="5")),
        boot("vm-c", "host1", big.id, dict(ha, ha_priority="1")),
        boot("vm-d", "host1", small),
        boot("vm-e", "host1", small, ha, group.id),
        boot("vm-f", "host1", small, ha, group.id),
        boot("fill-2a", "host2", big.id),
        boot("fill-2b", "host2", big.id),
        boot("fill-3a", "host3", big.id),
        boot("fill-3b", "host3", big.id),
    ]

    def all_active():
        got = [conn.compute.get_server(s.id) for s in servers]
        bad = [s for s in got if s.status == "ERROR"]
        assert not bad, [(s.name, s.fault) for s in bad]
        return all(s.status == "ACTIVE" for s in got)

    assert procs.until(all_active, 90, 0.5), "the layout's servers did not boot"
    return {s.name: s.id for s in servers}


def where(conn, layout, *names):
    return {name: conn.compute.get_server(layout[name]).compute_host for name in names}


def test_the_plan_names_what_fits_and_the_shortfall(ops, layout):
    planned = call(
        ops, "nova_compute.plan", "host1", "metadata_key=HA_Enabled", "priority_key=ha_priority"
    )
    assert [s["name"] for s in planned["servers"]] == ["vm-a", "vm-b", "vm-c", "vm-e", "vm-f"]
    assert planned["left_alone"] == ["vm-d"]
    names = {layout[n]: n for n in layout}
    assert sorted(names[i] for i in planned["fits"]) == ["vm-a", "vm-b", "vm-e", "vm-f"]
    # vm-a and vm-b cannot share a survivor: one each.
    assert {planned["fits"][layout["vm-a"]], planned["fits"][layout["vm-b"]]} == {
        "host2",
        "host3",
    }
    assert [names[i] for i in planned["unplaced"]] == ["vm-c"]
    shortfall = planned["shortfall"]
    assert shortfall["servers"] == ["vm-c"]
    assert shortfall["needed"] == {"VCPU": 1, "MEMORY_MB": BIG_MB, "DISK_GB": 1}
    assert shortfall["free"]["MEMORY_MB"] < BIG_MB
    assert shortfall["summary"].startswith(
        "1 of 5 protected VMs do not fit on the survivors (vm-c): they need VCPU 1, "
        f"MEMORY_MB {BIG_MB}, DISK_GB 1; free after the others: "
    )


def test_evacuation_brings_back_what_fits_and_names_what_does_not(nova_lab, ops, conn, layout):
    novalab.stop_compute(nova_lab, "host1", kill=True)
    started = time.monotonic()
    out = call(
        ops,
        "nova_compute.evacuate",
        "host1",
        "metadata_key=HA_Enabled",
        "priority_key=ha_priority",
        "timeout=90",
    )
    took = time.monotonic() - started
    nova_lab["figures"]["evacuate_call_s"] = round(took, 2)
    assert out["forced_down"] is True
    assert sorted(v["name"] for v in out["evacuated"].values()) == ["vm-a", "vm-b"]
    # Spread by Nova's scheduler: neither survivor had room for both.
    assert sorted(v["to"] for v in out["evacuated"].values()) == ["host2", "host3"]
    failed = {v["name"]: v["fault"] for v in out["failed"].values()}
    assert sorted(failed) == ["vm-e", "vm-f"]
    assert all("No valid host" in fault for fault in failed.values()), failed
    assert out["unplaced"] == ["vm-c"] and out["shortfall"]["servers"] == ["vm-c"]
    assert out["left_alone"] == ["vm-d"]

    # As Nova shows them: the two back and running, the rest never started elsewhere.
    for name in ("vm-a", "vm-b"):
        server = conn.compute.get_server(layout[name])
        assert (server.status, server.task_state, server.power_state) == ("ACTIVE", None, 1)
        assert server.compute_host in ("host2", "host3")
    assert where(conn, layout, "vm-c", "vm-d") == {"vm-c": "host1", "vm-d": "host1"}
    assert conn.compute.get_server(layout["vm-e"]).status == "ERROR"

    # Run again (a resumed incident): nothing is evacuated twice.
    again = call(
        ops, "nova_compute.evacuate", "host1", "metadata_key=HA_Enabled", "priority_key=ha_priority"
    )
    assert again["evacuated"] == {} or set(again["evacuated"]).isdisjoint(out["evacuated"])
    assert where(conn, layout, "vm-a", "vm-b") == {
        name: out["evacuated"][layout[name]]["to"] for name in ("vm-a", "vm-b")
    }


def test_the_returning_compute_is_enabled_only_after_it_cleaned_up(nova_lab, ops, conn, layout):
    service = call(ops, "nova_compute.services", "host=host1")[0]
    assert service["forced_down"] is True
    since = time.time()
    novalab.start_compute(nova_lab, "host1", wait=False)
    out = call(ops, "nova_compute.service_restore", "host1", f"since={since}", "timeout=90")
    assert out["forced_down"] == {"old": True, "new": False}
    service = call(ops, "nova_compute.services", "host=host1")[0]
    assert (service["forced_down"], service["state"]) == (False, "up")
    # No VM runs twice: host1's compute destroyed its copies of the evacuated VMs and
    # marked their evacuations completed; they stay where they were evacuated to.
    migrations = conn.compute.get(
        "/os-migrations?migration_type=evacuation&source_compute=host1", microversion="2.59"
    ).json()["migrations"]
    done = {m["instance_uuid"]: m["status"] for m in migrations}
    assert done[layout["vm-a"]] == done[layout["vm-b"]] == "completed"
    assert set(where(conn, layout, "vm-a", "vm-b").values()) == {"host2", "host3"}


def test_evacuation_to_a_reserved_host_and_a_bad_target_refused(nova_lab, ops, conn, layout):
    """A reserved target (``hastack:computes:evacuation:target``): host3's protected VMs
    all go to host2, which has less free room than host1 (the scheduler would send
    about half to host1). A target that is not a live compute is refused naming the
    argument, before host3's service is forced down. host3 is back afterwards."""
    ids = [
        s.id
        for s in novalab.boot(
            nova_lab, conn, "host3", [f"res-{i}" for i in range(4)], metadata={"Reserve": "yes"}
        )
    ]
    novalab.stop_compute(nova_lab, "host3", kill=True)
    rc, _ = ops.call("nova_compute.evacuate", "host3", "metadata_key=Reserve", "target=host9")
    assert rc != 0 and "target: 'host9' is not a live, enabled compute" in ops.last_output
    assert call(ops, "nova_compute.services", "host=host3")[0]["forced_down"] is False
    planned = call(ops, "nova_compute.plan", "host3", "metadata_key=Reserve", "target=host2")
    assert set(planned["fits"].values()) == {"host2"} and planned["unplaced"] == []

    out = call(ops, "nova_compute.evacuate", "host3", "metadata_key=Reserve", "target=host2")
    assert sorted(v["name"] for v in out["evacuated"].values()) == [f"res-{i}" for i in range(4)]
    assert {v["to"] for v in out["evacuated"].values()} == {"host2"}
    assert {conn.compute.get_server(i).compute_host for i in ids} == {"host2"}
    # The layout's unprotected servers stayed.
    assert where(conn, layout, "fill-3a", "fill-3b") == {"fill-3a": "host3", "fill-3b": "host3"}

    since = time.time()
    novalab.start_compute(nova_lab, "host3", wait=False)
    call(ops, "nova_compute.service_restore", "host3", f"since={since}", "timeout=90")
    for server_id in ids:
        conn.compute.delete_server(server_id)


# --------------------------------------------------------------------------- the lab itself
# What the failover relies on, through the API and the openstack CLI as an operator
# would use them (after the tests above: host1 is back and enabled).


@pytest.fixture(scope="module")
def nova(nova_lab):
    return nova_lab


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

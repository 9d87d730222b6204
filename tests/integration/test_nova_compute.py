"""nova_compute, the module that talks to Nova, on the real lab Nova: a dead compute's
servers evacuated per VM, in priority order, only those the pillar protects, spread by
Nova's scheduler over the survivors that have room; what does not fit is named with the
shortfall and not started; a VM whose evacuation fails is named with Nova's fault while
the others complete; the returning compute is enabled only after it cleaned up.

The layout: host1 holds three big protected VMs (priorities 10, 5, 1), one small
unprotected VM and two small protected VMs in an affinity group (Nova cannot evacuate
them: their group lives on host1 only); host2 and host3 each hold two big VMs, so each
has room for one more big one. A big VM takes 399000 MB of the fake driver's 800000 MB
(x1.5 allocation ratio) per host.
"""

import time

import pytest

from lab import novalab, procs, saltlocal

BIG_MB = 399000


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

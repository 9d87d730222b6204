"""Which VMs a failover brings back, in what order, and whether they fit: the pure
decisions of hastack_utils.compute."""

from hastack_utils import compute


def server(name, ram=128, vcpus=1, disk=1, **metadata):
    return {
        "id": f"id-{name}",
        "name": name,
        "metadata": metadata,
        "flavor": {"vcpus": vcpus, "ram": ram, "disk": disk},
    }


def room(ram, vcpus=100, disk=100, max_ram=None):
    return {
        "VCPU": {"free": vcpus, "max_unit": vcpus},
        "MEMORY_MB": {"free": ram, "max_unit": max_ram or ram},
        "DISK_GB": {"free": disk, "max_unit": disk},
    }


def test_protected_follows_the_metadata_key_and_its_true_spellings():
    servers = [
        server("a", HA_Enabled="True"),
        server("b", HA_Enabled="yes"),
        server("c", HA_Enabled="False"),
        server("d"),
    ]
    keep, left = compute.protected(servers, "HA_Enabled")
    assert [s["name"] for s in keep] == ["a", "b"]
    assert [s["name"] for s in left] == ["c", "d"]
    assert compute.protected(servers)[0] == servers


def test_order_is_priority_then_name_and_a_bad_priority_counts_as_zero():
    servers = [server("z", prio="1"), server("m"), server("a", prio="x"), server("b", prio="7")]
    assert [s["name"] for s in compute.ordered(servers, "prio")] == ["b", "z", "a", "m"]
    assert [s["name"] for s in compute.ordered(servers)] == ["a", "b", "m", "z"]


def test_fit_spreads_by_free_memory_and_names_what_does_not_fit():
    servers = [server("big1", ram=600), server("big2", ram=600), server("big3", ram=600)]
    placed, unplaced, left = compute.plan_fit(servers, {"h2": room(700), "h3": room(650)})
    assert placed == {"id-big1": "h2", "id-big2": "h3"}
    assert unplaced == ["id-big3"]
    assert left["h2"]["MEMORY_MB"] == 100 and left["h3"]["MEMORY_MB"] == 50
    short = compute.shortfall(servers, unplaced, left)
    assert short["needed"] == {"VCPU": 1, "MEMORY_MB": 600, "DISK_GB": 1}
    assert short["free"]["MEMORY_MB"] == 150
    assert short["summary"] == (
        "1 of 3 protected VMs do not fit on the survivors (big3): they need VCPU 1, "
        "MEMORY_MB 600, DISK_GB 1; free after the others: VCPU 198, MEMORY_MB 150, DISK_GB 198"
    )


def test_a_server_larger_than_a_hosts_max_unit_does_not_fit_there():
    placed, unplaced, _ = compute.plan_fit(
        [server("wide", vcpus=8)],
        {"h2": room(1000, vcpus=100) | {"VCPU": {"free": 100, "max_unit": 4}}},
    )
    assert placed == {} and unplaced == ["id-wide"]


def test_settled_needs_active_no_task_running_and_off_the_source():
    base = {"status": "ACTIVE", "task_state": None, "power_state": 1, "host": "h2"}
    assert compute.settled(base, source="h1")
    assert not compute.settled(base, source="h2")
    assert not compute.settled(dict(base, task_state="rebuilding"), source="h1")
    assert not compute.settled(dict(base, power_state=0))
    assert not compute.settled(base, source="h1", target="h3")

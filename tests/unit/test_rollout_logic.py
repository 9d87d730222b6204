"""The rollout's steps (hastack_utils.rollout): canary first, then batches by size or
percentage, never more nodes of one Pacemaker cluster at once than it tolerates. The
layout is not the workshop's: site par1 with two clusters (ctl-1..3 tolerating one
down, net-1..2 tolerating one) and three computes outside any cluster."""

import pytest
from salt.exceptions import SaltInvocationError

from hastack_utils import rollout

MINIONS = ["cmp-1", "cmp-2", "cmp-3", "ctl-1", "ctl-2", "ctl-3", "net-1", "net-2"]
CLUSTERS = {
    "control": {"nodes": ["ctl-1", "ctl-2", "ctl-3"], "failover": {"max_down": 1}},
    "network": {"nodes": ["net-1", "net-2"]},  # the failover policy's default: 1
}
MAX_DOWN = {"control": 1, "network": 1}


def batches(steps):
    return [(s["kind"], s["minions"]) for s in steps]


def test_canary_first_then_batches_in_order():
    got = rollout.steps("par1", MINIONS, canary=["cmp-2"], batch=3)
    assert batches(got) == [
        ("canary", ["cmp-2"]),
        ("batch", ["cmp-1", "cmp-3", "ctl-1"]),
        ("batch", ["ctl-2", "ctl-3", "net-1"]),
        ("batch", ["net-2"]),
    ]
    assert [s["index"] for s in got] == [0, 1, 2, 3] and {s["site"] for s in got} == {"par1"}


def test_no_batch_takes_more_of_a_cluster_than_it_tolerates():
    got = rollout.steps("par1", MINIONS, batch=4, clusters=CLUSTERS)
    assert batches(got) == [
        ("batch", ["cmp-1", "cmp-2", "cmp-3", "ctl-1"]),
        ("batch", ["ctl-2", "net-1"]),
        ("batch", ["ctl-3", "net-2"]),
    ]
    for step in got:
        for name, spec in CLUSTERS.items():
            assert len(set(step["minions"]) & set(spec["nodes"])) <= MAX_DOWN[name]
    assert sorted(m for s in got for m in s["minions"]) == sorted(MINIONS)


@pytest.mark.parametrize(
    "spec,sizes", [("25%", [2, 2, 2, 2]), ("50%", [4, 4]), ("100%", [8]), ("1%", [1] * 8)]
)
def test_a_percentage_of_the_sites_minions(spec, sizes):
    assert [len(s["minions"]) for s in rollout.steps("par1", MINIONS, batch=spec)] == sizes


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (
            {"canary": ["cmp-9"]},
            r"^hastack:sites:par1:rollout:canary: not minions of site par1: cmp-9$",
        ),
        (
            {"canary": ["ctl-1", "ctl-2"], "clusters": CLUSTERS},
            r"^hastack:sites:par1:rollout:canary: takes 2 nodes of Pacemaker cluster control",
        ),
        ({"batch": 0}, r"^hastack:sites:par1:rollout:batch: at least 1 minion, not 0$"),
        (
            {"batch": "0%"},
            r"^hastack:sites:par1:rollout:batch: a number of minions or a percentage",
        ),
        (
            {"batch": "150%"},
            r"^hastack:sites:par1:rollout:batch: a number of minions or a percentage",
        ),
        (
            {"batch": True},
            r"^hastack:sites:par1:rollout:batch: a number of minions or a percentage",
        ),
        (
            {"clusters": {"control": {"nodes": ["ctl-1", "ctl-2"], "failover": {"max_down": 0}}}},
            r"^hastack:sites:par1: Pacemaker cluster control: hastack:failover:max_down: "
            r"a whole number from 1 to 1$",
        ),
        (
            {"clusters": {"control": {"nodes": ["ctl-1", "ctl-2"], "failover": {"max_down": 2}}}},
            r"^hastack:sites:par1: Pacemaker cluster control: hastack:failover:max_down: "
            r"a whole number from 1 to 1$",
        ),
        (
            {"clusters": {"control": {"nodes": "ctl-1"}}},
            r"^hastack:sites:par1: Pacemaker cluster control: hastack:pacemaker:nodes: ",
        ),
        (
            {"clusters": dict(CLUSTERS, spare={"nodes": ["ctl-1", "cmp-1"]})},
            r"^hastack:sites:par1: node ctl-1 is in Pacemaker clusters control and spare$",
        ),
        ({"canary": "cmp-1"}, r"^hastack:sites:par1:rollout:canary: a list of minion ids"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(SaltInvocationError, match=message):
        rollout.steps("par1", MINIONS, **kwargs)


def test_a_five_node_cluster_tolerates_what_its_failover_policy_does():
    nodes = [f"pcmk-{i}" for i in range(1, 6)]
    clusters = {"big": {"nodes": nodes}}  # the policy's default max_down: 5 // 2
    got = rollout.steps("fra2", nodes, batch=5, clusters=clusters)
    assert batches(got) == [
        ("batch", ["pcmk-1", "pcmk-2"]),
        ("batch", ["pcmk-3", "pcmk-4"]),
        ("batch", ["pcmk-5"]),
    ]
    tighter = {"big": {"nodes": nodes, "failover": {"max_down": 1}}}
    assert len(rollout.steps("fra2", nodes, batch=5, clusters=tighter)) == 5


def test_the_ceph_admin_minion_goes_alone_before_the_canary():
    got = rollout.steps(
        "par1", MINIONS, canary=["cmp-2"], batch=3, clusters=CLUSTERS, first="ctl-1"
    )
    assert batches(got) == [
        ("canary", ["ctl-1"]),
        ("canary", ["cmp-2"]),
        ("batch", ["cmp-1", "cmp-3", "ctl-2"]),
        ("batch", ["ctl-3", "net-1"]),
        ("batch", ["net-2"]),
    ]
    assert [s["index"] for s in got] == [0, 1, 2, 3, 4]


def test_the_ceph_admin_minion_in_the_canary_or_without_one():
    got = rollout.steps("par1", MINIONS, canary=["ctl-1", "cmp-2"], batch=8, first="ctl-1")
    assert batches(got)[0] == ("canary", ["ctl-1", "cmp-2"])
    got = rollout.steps("par1", MINIONS, batch=8, first="net-2")
    assert batches(got)[:2] == [("batch", ["net-2"]), ("batch", MINIONS[:-1])]


def test_a_failover_policy_that_moves_floating_ips_is_read_with_its_addresses():
    clusters = {
        "control": {
            "nodes": ["ctl-1", "ctl-2", "ctl-3"],
            "failover": {"move": {"ctl-1": ["web1"]}},
            "addresses": {"web1": {"server": "web1", "standby": {"server": "web1-b"}}},
        }
    }
    got = rollout.steps("par1", ["ctl-1", "ctl-2", "ctl-3"], batch=3, clusters=clusters)
    assert batches(got) == [("batch", ["ctl-1"]), ("batch", ["ctl-2"]), ("batch", ["ctl-3"])]


def state(result, changes=None, run=0, sid="s", comment=""):
    return {
        "__id__": sid,
        "__run_num__": run,
        "result": result,
        "changes": changes or {},
        "comment": comment,
    }


def test_a_steps_outcome_every_failed_minion_is_left_out_of_applied():
    returns = {
        "a": {
            "ret": {"k1": state(False, sid="hastack-ceph-conf", comment="no room")},
            "retcode": 2,
        },
        "b": {"ret": {"k1": state(False, sid="hastack-ceph-keyring-cinder")}, "retcode": 2},
        "c": {"ret": {"k1": state(True, {"x": 1}, sid="hastack-ceph-conf")}, "retcode": 0},
        "d": {"ret": ["Rendering SLS failed: AQAAAAAAAAAAABAAYmVyLWNpbmRlci1rZXkhIQ== bad"]},
    }
    changed, applied, failure = rollout.outcome(["a", "b", "c", "d", "e"], returns)
    assert applied == ["c"]
    assert changed == {"a": [], "b": [], "c": ["hastack-ceph-conf"]}
    assert failure == {"minion": "a", "state": "hastack-ceph-conf", "message": "no room"}
    _, _, failure = rollout.outcome(["d"], returns)
    assert failure["state"] == "(render)" and "AQAAAA" not in failure["message"]
    _, applied, failure = rollout.outcome(["e"], returns)
    assert applied == [] and failure == {"minion": "e", "message": "e did not return"}


def test_a_preview_counts_what_would_change():
    returns = {"a": {"ret": {"k": state(None, sid="x"), "j": state(True, sid="y")}, "retcode": 0}}
    assert rollout.outcome(["a"], returns, test=True)[:2] == ({"a": ["x"]}, ["a"])

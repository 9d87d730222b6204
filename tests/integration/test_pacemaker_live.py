"""A real 3-node corosync + Pacemaker cluster (lab/pcmklab.py: one mount and UTS
namespace per node, corosync on 127.0.0.1-3, ``ocf:pacemaker:Dummy`` in place of the
OpenStack agents, no fencing device). Salt runs inside the nodes, as on real
controllers: the configuration is applied from two nodes at once, a node is killed,
``shift_away`` runs on a survivor and what ``crm_mon`` then shows is the simulated plan,
for a primitive and for a group that prefer the dead node."""

import shutil
import sys
import tempfile
import threading

import pytest

from lab import pcmklab
from tests.cib_writer import run_together
from tests.helpers import states

NODES = ["alice", "bob", "charlie"]


@pytest.fixture(scope="module")
def cluster():
    # Not under /tmp: each node has its own /tmp.
    d = tempfile.mkdtemp(prefix="hastack-pcmk-", dir="/var/tmp")
    facts = pcmklab.start(d)
    try:
        yield facts
    finally:
        pcmklab.stop(d)
        shutil.rmtree(d, ignore_errors=True)


def live_pillar():
    """Listing 2 plus a group that prefers alice (how most clusters say where a service
    should run)."""
    pillar = pcmklab.listing2()
    pcmk = pillar["hastack"]["pacemaker"]
    for rid in ("p_extra_a", "p_extra_b"):
        pcmk["primitives"][rid] = {"agent": "ocf:pacemaker:Dummy"}
    pcmk["groups"]["g_extra"] = ["p_extra_a", "p_extra_b"]
    pcmk["locations"]["lo_extra_prefer_alice"] = {"rsc": "g_extra", "node": "alice", "score": 5000}
    return pillar


def minion(facts, node):
    return pcmklab.node_minion(facts, node, live_pillar())


def call(m, *args):
    rc, out = m.call(*args)
    assert rc == 0, m.last_output
    return out


def test_apply_kill_shift_and_restore_on_a_live_cluster(cluster):
    alice, bob = minion(cluster, "alice"), minion(cluster, "bob")

    # Applied from two nodes at once: both succeed, the CIB holds the declaration once.
    results = {}
    threads = [
        threading.Thread(
            target=lambda m=m: results.setdefault(m.id, m.call("state.sls", "hastack.pacemaker"))
        )
        for m in (alice, bob)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(rc == 0 for rc, _ in results.values()), results
    # One of them wrote the declaration (a run that applied nothing must not pass).
    assert [sid for _, ret in results.values() for sid, v in states(ret).items() if v.changes]
    again = call(alice, "state.sls", "hastack.pacemaker")
    assert [ret["changes"] for ret in again.values()] == [{}]
    assert call(bob, "pacemaker.verify")["valid"] is True

    # Two writers from two nodes, 20 rounds each, with a reader beside them: every write
    # lands, no read fails (each write stays epoch-guarded and is retried on a conflict).
    writer = [sys.executable, "-m", "tests.cib_writer"]
    results = run_together(
        [
            pcmklab.node_argv(cluster, node, writer + args)
            for node, args in (
                ("alice", ["w1", "20", "p_nova-compute-host3", "charlie"]),
                ("bob", ["w2", "20", "p_nova-compute-host3", "charlie"]),
                ("charlie", ["r", "60", "-", "-"]),
            )
        ]
    )
    assert [rc for rc, _ in results] == [0, 0, 0], results
    locations = call(alice, "pacemaker.configuration")["locations"]
    assert {f"lo_{w}_{i}" for w in ("w1", "w2") for i in range(20)} <= set(locations)

    planned = call(alice, "pacemaker.simulate", f"online={NODES}")
    live = pcmklab.wait_for_placement(alice, planned)
    assert live == planned
    assert [live[f"p_nova-compute-host{i}"] for i in (1, 2, 3)] == NODES
    assert live["p_quantum-agent-plugin-openvswitch"] == NODES
    vip = live["p_IP"]
    assert {
        live[r]
        for r in (
            "p_mysql",
            "p_keystone",
            "p_glance-api",
            "p_nova-api",
            "p_quantum-server",
            "p_cinder-api",
        )
    } == {vip}

    # alice dies. On bob: move what preferred alice, to bob (Pacemaker alone would pick
    # the emptier charlie for host1, so the shift is what puts it on bob).
    pcmklab.kill(cluster, "alice")
    pcmklab.wait_until_offline(cluster, "alice", seen_from="bob")
    shifted = call(bob, "pacemaker.shift_away", "alice", f"nodes={NODES}", "fallback=[bob]")
    assert shifted["plan"] == {
        "p_nova-compute-host1": {
            "from": "alice",
            "to": "bob",
            "score": "10000",
            "constraint": "lo_hastack_shift_p_nova-compute-host1_from_alice",
        },
        "g_extra": {
            "from": "alice",
            "to": "bob",
            "score": "5000",
            "constraint": "lo_hastack_shift_g_extra_from_alice",
        },
    }
    live = pcmklab.wait_for_placement(bob, shifted["placement"])
    assert live == shifted["placement"]
    assert live["p_nova-compute-host1"] == "bob"
    assert live["g_extra"] == live["p_extra_a"] == live["p_extra_b"] == "bob"
    assert "alice" not in str(live)
    assert call(bob, "pacemaker.status")["nodes"]["alice"]["online"] is False

    # alice comes back; restore puts host1 home (everything else stays where it is).
    pcmklab.restart(cluster, "alice")
    alice = minion(cluster, "alice")
    assert call(alice, "pacemaker.restore", "alice") == [
        "lo_hastack_shift_g_extra_from_alice",
        "lo_hastack_shift_p_nova-compute-host1_from_alice",
    ]
    back = call(alice, "pacemaker.simulate", f"online={NODES}")
    live = pcmklab.wait_for_placement(alice, back)
    assert live == back
    assert live["p_nova-compute-host1"] == "alice" and live["g_extra"] == "alice"
    assert live["p_quantum-agent-plugin-openvswitch"] == NODES

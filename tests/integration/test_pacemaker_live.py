"""A real 3-node corosync + Pacemaker cluster (lab/pcmklab.py: one mount and UTS
namespace per node, corosync on 127.0.0.1-3, ``ocf:pacemaker:Dummy`` in place of the
OpenStack agents, no fencing device). Salt runs inside the nodes, as on real
controllers: the configuration is applied from two nodes at once, a node is killed,
``shift_away`` runs on a survivor and what ``crm_mon`` then shows is the simulated plan."""

import os
import shutil
import tempfile
import threading
import time

import pytest
import yaml

from lab import pcmklab, saltlocal
from tests.helpers import merge

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


def listing2_with_dummies():
    with open(os.path.join(saltlocal.REPO, "pillar", "hastack", "pacemaker.sls"), encoding="utf-8") as fh:
        pillar = yaml.safe_load(fh)
    dummies = {rid: {"agent": "ocf:pacemaker:Dummy"} for rid in pillar["hastack"]["pacemaker"]["primitives"]}
    return merge(pillar, {"hastack": {"pacemaker": {"properties": {"stonith-enabled": "false"},
                                                    "primitives": dummies}}})


def minion(facts, node):
    """A masterless minion running inside ``node`` (its pid may change on restart)."""
    m = saltlocal.Minion(os.path.join(facts["dir"], f"minion-{node}"), node, listing2_with_dummies(),
                         example=False)
    m.wrap = pcmklab.node_argv(facts, node, [])
    return m


def call(m, *args):
    rc, out = m.call(*args)
    assert rc == 0, m.last_output
    return out


def converges(m, wanted, timeout=60):
    """Poll the live status until the placement is ``wanted``; return the last one seen."""
    deadline = time.monotonic() + timeout
    while True:
        seen = call(m, "pacemaker.status")["resources"]
        if seen == wanted or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def test_apply_kill_shift_and_restore_on_a_live_cluster(cluster):
    alice, bob = minion(cluster, "alice"), minion(cluster, "bob")

    # Applied from two nodes at once: both succeed, the CIB holds the declaration once.
    results = {}
    threads = [threading.Thread(target=lambda m=m: results.setdefault(m.id, m.call("state.sls", "hastack.pacemaker")))
               for m in (alice, bob)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(rc == 0 for rc, _ in results.values()), results
    again = call(alice, "state.sls", "hastack.pacemaker")
    assert [ret["changes"] for ret in again.values()] == [{}]
    assert call(bob, "pacemaker.verify")["valid"] is True

    planned = call(alice, "pacemaker.simulate", f"online={NODES}")
    live = converges(alice, planned)
    assert live == planned
    assert [live[f"p_nova-compute-host{i}"] for i in (1, 2, 3)] == NODES
    assert live["p_quantum-agent-plugin-openvswitch"] == NODES
    vip = live["p_IP"]
    assert {live[r] for r in ("p_mysql", "p_keystone", "p_glance-api", "p_nova-api",
                              "p_quantum-server", "p_cinder-api")} == {vip}

    # alice dies. On bob: move what preferred alice, to bob (Pacemaker alone would pick
    # the emptier charlie for host1, so the shift is what puts it on bob).
    pcmklab.kill(cluster, "alice")
    deadline = time.monotonic() + 60
    while "alice" in pcmklab.online_nodes(cluster, "bob"):
        assert time.monotonic() < deadline, "bob never saw alice go"
        time.sleep(0.5)
    shifted = call(bob, "pacemaker.shift_away", "alice", f"nodes={NODES}", "fallback=[bob]")
    assert shifted["plan"] == {"p_nova-compute-host1": {
        "from": "alice", "to": "bob", "constraint": "lo_hastack_shift_p_nova-compute-host1_from_alice"}}
    live = converges(bob, shifted["placement"])
    assert live == shifted["placement"]
    assert live["p_nova-compute-host1"] == "bob"
    assert "alice" not in str(live)
    assert call(bob, "pacemaker.status")["nodes"]["alice"]["online"] is False

    # alice comes back; restore puts host1 home (everything else stays where it is).
    pcmklab.restart(cluster, "alice")
    alice = minion(cluster, "alice")
    assert call(alice, "pacemaker.restore", "alice") == ["lo_hastack_shift_p_nova-compute-host1_from_alice"]
    back = call(alice, "pacemaker.simulate", f"online={NODES}")
    live = converges(alice, back)
    assert live == back
    assert live["p_nova-compute-host1"] == "alice"
    assert live["p_quantum-agent-plugin-openvswitch"] == NODES

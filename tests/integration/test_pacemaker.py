"""The workshop's Listing 2 as pillar, applied to CIB files with the real Pacemaker tools
(cibadmin, crm_diff, crm_verify, crm_simulate). The live 3-node cluster comes later."""

import os
import subprocess
import threading

import pytest

from lab import saltlocal
from tests.helpers import merge, states

NODES = ["alice", "bob", "charlie"]
CONTROL_PLANE = [
    "p_IP",
    "p_mysql",
    "p_rabbitmq",
    "p_keystone",
    "p_glance-registry",
    "p_glance-api",
    "p_nova-api",
    "p_nova-cert",
    "p_nova-consoleauth",
    "p_nova-scheduler",
    "p_nova-novnc",
    "p_quantum-server",
    "p_quantum-agent-dhcp",
    "p_quantum-agent-l3",
    "p_cinder-api",
    "p_cinder-schedule",
]
# Only hastack.pacemaker runs here: no Ceph cluster is contacted.
FACTS = {
    "fsid": "4b5c8c0a-ff60-454b-a1b4-9747aa737d19",
    "mon_host": "127.0.0.1:9",
    "admin_keyring": "/nonexistent/admin.keyring",
}


@pytest.fixture
def pcmk_minion(tmp_path):
    etc = str(tmp_path / "etc")

    def make(minion_id="alice", extra=None, root=None):
        overlay = saltlocal.lab_overlay(FACTS, str(tmp_path / "etc-ceph"), etc)
        minion = saltlocal.Minion(
            str(root or tmp_path / f"minion-{minion_id}"), minion_id, merge(overlay, extra or {})
        )
        minion.cib = overlay["hastack"]["pacemaker"]["cib_file"]
        return minion

    return make


def apply_pcmk(minion, test=False):
    return minion.call("state.sls", "hastack.pacemaker", test=test)


def the_state(ret):
    """The hastack-pacemaker state's result (a salt-factories StateResult)."""
    return states(ret)["hastack-pacemaker"]


def placement(minion, failed=()):
    rc, out = minion.call(
        "pacemaker.simulate", f"online={NODES}", f"failed={list(failed)}", f"cib_file={minion.cib}"
    )
    assert rc == 0, out
    return out


def test_listing2_verifies_places_like_the_workshop_and_is_idempotent(pcmk_minion):
    alice = pcmk_minion()
    rc, predicted = apply_pcmk(alice, test=True)
    assert rc == 0 and the_state(predicted).result is None
    rc, applied = apply_pcmk(alice)
    assert rc == 0, applied
    assert the_state(applied).changes == the_state(predicted).changes
    assert len(the_state(applied).changes) == 2 + 1 + 20 + 6 + 1 + 3 + 6 + 6
    verified = subprocess.run(
        ["crm_verify", "--xml-file", alice.cib], capture_output=True, text=True
    )
    assert verified.returncode == 0, verified.stderr

    where = placement(alice)
    assert {where[r] for r in CONTROL_PLANE} == {where["p_IP"]}  # everything with the VIP
    assert [where[f"p_nova-compute-host{i}"] for i in (1, 2, 3)] == NODES
    assert where["p_quantum-agent-plugin-openvswitch"] == NODES
    after = placement(alice, failed=["alice"])
    assert after["p_nova-compute-host1"] in ("bob", "charlie")
    assert len({after[r] for r in CONTROL_PLANE}) == 1 and after["p_IP"] != "alice"

    rc, again = apply_pcmk(alice)
    assert rc == 0 and the_state(again).changes == {}


def test_drift_in_one_attribute_is_found_and_fixed(pcmk_minion):
    alice = pcmk_minion()
    assert apply_pcmk(alice)[0] == 0
    subprocess.run(
        [
            "cibadmin",
            "--modify",
            "--xml-text",
            '<nvpair id="p_IP-instance_attributes-ip" value="192.168.122.99"/>',
        ],
        env=dict(os.environ, CIB_file=alice.cib),
        check=True,
    )
    rc, fixed = apply_pcmk(alice)
    assert rc == 0
    changes = the_state(fixed).changes
    assert list(changes) == ["primitives:p_IP"]
    assert changes["primitives:p_IP"]["old"]["params"]["ip"] == "192.168.122.99"
    assert changes["primitives:p_IP"]["new"]["params"]["ip"] == "192.168.122.130"
    assert the_state(apply_pcmk(alice)[1]).changes == {}


def test_two_writers_at_once_lose_no_update(pcmk_minion, tmp_path):
    alice = pcmk_minion()
    assert apply_pcmk(alice)[0] == 0
    writers = []
    for name, node in (("w1", "alice"), ("w2", "bob")):
        extra = {
            "hastack": {
                "pacemaker": {
                    "locations": {
                        f"lo_{name}": {"rsc": "p_nova-compute-host3", "node": node, "score": 5}
                    }
                }
            }
        }
        writers.append(pcmk_minion("alice", extra, root=tmp_path / f"writer-{name}"))
    results = {}
    threads = [
        threading.Thread(target=lambda w=w: results.setdefault(w.root, apply_pcmk(w)))
        for w in writers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(rc == 0 for rc, _ in results.values()), results
    rc, conf = alice.call("pacemaker.configuration", f"cib_file={alice.cib}")
    assert {"lo_w1", "lo_w2", "lo_host1_prefer_alice"} <= set(conf["locations"])


BAD_INPUT = [
    (
        {"groups": {"g_keystone": ["p_keystone", "p_nope"]}},
        "hastack:pacemaker:groups:g_keystone: 'p_nope' is not a primitive here",
    ),
    (
        {"locations": {"lo_host1_prefer_alice": {"score": "lots"}}},
        "hastack:pacemaker:locations:lo_host1_prefer_alice:score: not a score",
    ),
    (
        {"locations": {"p_IP": {"rsc": "p_IP", "node": "alice", "score": 1}}},
        "hastack:pacemaker:locations:p_IP: id 'p_IP' is already used in hastack:pacemaker:primitives",
    ),
    (
        {"primitives": {"p_IP": {"agent": "IPaddr2"}}},
        "hastack:pacemaker:primitives:p_IP:agent: not an agent like 'ocf:heartbeat:IPaddr2'",
    ),
    (
        {"locations": {"lo_host1_prefer_alice": {"node": "dave"}}},
        "hastack:pacemaker:locations:lo_host1_prefer_alice:node: unknown node 'dave'",
    ),
    (
        {"colocations": {"co_keystone_with_IP": {"with_rsc": "p_VIP"}}},
        "hastack:pacemaker:colocations:co_keystone_with_IP:with_rsc: unknown resource 'p_VIP'",
    ),
]


@pytest.mark.parametrize("extra, message", BAD_INPUT, ids=[m.split(": ")[0] for _, m in BAD_INPUT])
def test_bad_input_is_named_and_leaves_the_cib_unchanged(pcmk_minion, extra, message):
    alice = pcmk_minion("alice", {"hastack": {"pacemaker": extra}})
    with open(alice.cib, "rb") as fh:
        before = fh.read()
    rc, _ = apply_pcmk(alice)
    assert rc != 0
    assert message in alice.last_output, alice.last_output
    with open(alice.cib, "rb") as fh:
        assert fh.read() == before


def test_shift_away_moves_what_prefers_the_dead_node_and_restore_undoes_it(pcmk_minion):
    alice = pcmk_minion()
    assert apply_pcmk(alice)[0] == 0
    rc, planned = alice.call(
        "pacemaker.shift_away", "alice", f"nodes={NODES}", f"cib_file={alice.cib}", "test=True"
    )
    assert rc == 0, planned
    # Least loaded survivor with alice failed: bob takes the VIP and everything with it.
    assert planned["plan"] == {
        "p_nova-compute-host1": {
            "from": "alice",
            "to": "charlie",
            "constraint": "lo_hastack_shift_p_nova-compute-host1_from_alice",
            "score": "10000",
        }
    }
    rc, conf = alice.call("pacemaker.configuration", f"cib_file={alice.cib}")
    assert not [lid for lid in conf["locations"] if lid.startswith("lo_hastack_shift_")]

    rc, shifted = alice.call(
        "pacemaker.shift_away", "alice", f"nodes={NODES}", "fallback=[bob]", f"cib_file={alice.cib}"
    )
    assert rc == 0, shifted
    assert shifted["plan"]["p_nova-compute-host1"]["to"] == "bob"
    after = placement(alice, failed=["alice"])
    assert after["p_nova-compute-host1"] == "bob"
    assert "alice" not in [w for r, w in after.items() if not isinstance(w, list)]
    # A highstate keeps the shift (undeclared items stay unless remove_undeclared).
    rc, again = apply_pcmk(alice)
    assert rc == 0 and the_state(again).changes == {}

    rc, removed = alice.call("pacemaker.restore", "alice", f"cib_file={alice.cib}")
    assert removed == ["lo_hastack_shift_p_nova-compute-host1_from_alice"]
    assert placement(alice)["p_nova-compute-host1"] == "alice"


def test_preferences_and_standby_change_placement_and_interoperate_with_crm_resource(pcmk_minion):
    alice = pcmk_minion()
    assert apply_pcmk(alice)[0] == 0
    env = dict(os.environ, CIB_file=alice.cib)
    for nodeid, node in enumerate(NODES, start=1):  # what a live cluster's CIB has
        subprocess.run(
            ["cibadmin", "--create", "-o", "nodes", "-X", f'<node id="{nodeid}" uname="{node}"/>'],
            env=env,
            check=True,
        )

    def call(*args):
        rc, out = alice.call(*args, f"cib_file={alice.cib}")
        assert rc == 0, out
        return out

    assert (
        call("pacemaker.move", "p_nova-compute-host2", "charlie", "test=True")["new"]["node"]
        == "charlie"
    )
    assert "cli-prefer-p_nova-compute-host2" not in call("pacemaker.configuration")["locations"]
    assert call("pacemaker.move", "p_nova-compute-host2", "charlie") == {
        "old": None,
        "new": {"rsc": "p_nova-compute-host2", "node": "charlie", "score": "INFINITY"},
    }
    assert placement(alice)["p_nova-compute-host2"] == "charlie"
    assert call("pacemaker.move", "p_nova-compute-host2", "charlie") == {}
    # crm_resource understands ours, and ours clears what crm_resource --ban left.
    subprocess.run(
        ["crm_resource", "--ban", "--resource", "p_nova-compute-host3", "--node", "charlie"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert placement(alice)["p_nova-compute-host3"] != "charlie"
    assert call("pacemaker.clear", "p_nova-compute-host3") == [
        "cli-ban-p_nova-compute-host3-on-charlie"
    ]
    subprocess.run(
        ["crm_resource", "--clear", "--resource", "p_nova-compute-host2"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert placement(alice)["p_nova-compute-host2"] == "bob"

    assert (
        call(
            "pacemaker.location_set",
            "lo_h3_avoid_charlie",
            "p_nova-compute-host3",
            "charlie",
            "score=-INFINITY",
        )["new"]["score"]
        == "-INFINITY"
    )
    assert placement(alice)["p_nova-compute-host3"] != "charlie"
    assert call("pacemaker.location_remove", "lo_h3_avoid_charlie")["new"] is None
    assert placement(alice)["p_nova-compute-host3"] == "charlie"
    rc, _ = alice.call(
        "pacemaker.location_set",
        "lo_x",
        "p_nova-compute-host3",
        "charlie",
        "lots",
        f"cib_file={alice.cib}",
    )
    assert rc != 0 and "score: 'lots' is not a Pacemaker score" in alice.last_output
    rc, _ = alice.call("pacemaker.move", "p_nope", "bob", f"cib_file={alice.cib}")
    assert rc != 0 and "rsc: no resource, group or clone 'p_nope'" in alice.last_output
    rc, _ = alice.call("pacemaker.node_standby", "dave", f"cib_file={alice.cib}")
    assert rc != 0 and "node: 'dave' is not a node of the cluster" in alice.last_output

    assert call("pacemaker.node_standby", "bob") == {"old": "off", "new": "on"}
    assert call("pacemaker.node_standby", "bob") == {}
    assert call("pacemaker.status")["nodes"]["bob"]["standby"] is True
    drained = placement(alice)
    assert drained["p_nova-compute-host2"] != "bob"
    assert "bob" not in drained["p_quantum-agent-plugin-openvswitch"]
    assert call("pacemaker.node_online", "bob") == {"old": "on", "new": "off"}
    assert placement(alice)["p_nova-compute-host2"] == "bob"
    assert call("pacemaker.status")["nodes"]["bob"]["standby"] is False

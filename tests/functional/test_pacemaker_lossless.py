"""Lossless Pacemaker writes on CIBs built with the real tools (tests/data/cibs, made by
tests/cib_corpus.py with pcs -f, crm_resource, crm_attribute and cibadmin): the example
pillar and a second layout are applied; whatever they do not declare survives, fact by
fact; a second apply changes nothing; test=True predicts the real run."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml
from salt.exceptions import SaltInvocationError

from lab import pcmklab
from tests.cib_writer import run_together
from tests.helpers import undeclared_changes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(REPO, "tests", "data")
LISTING2_NODES = ["alice", "bob", "charlie"]


def four_node():
    with open(os.path.join(DATA, "four_node_pillar.yaml"), encoding="utf-8") as fh:
        pcmk = yaml.safe_load(fh)["hastack"]["pacemaker"]
    return {k: v for k, v in pcmk.items() if k != "nodes"}, pcmk["nodes"]


def listing2():
    pcmk = pcmklab.listing2()["hastack"]["pacemaker"]
    return {k: v for k, v in pcmk.items() if k != "nodes"}, pcmk["nodes"]


def read(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def configured(states, config, nodes, cib, test=False, **kwargs):
    """``pacemaker.configured`` as a state run calls it (a StateResult)."""
    return states.pacemaker.configured(
        name="t", config=config, nodes=nodes, cib_file=cib, test=test, **kwargs
    )


def crm_verify(cib):
    res = subprocess.run(
        ["crm_verify", "--xml-file", cib], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr


def tool(cib, *argv):
    subprocess.run(argv, env=dict(os.environ, CIB_file=cib), check=True, capture_output=True)


def constraints_xml(cib):
    """The constraints section, canonical (attribute order and whitespace aside)."""
    el = ET.fromstring(read(cib)).find("configuration/constraints")
    for node in el.iter():
        node.tail = node.text = None
    return ET.canonicalize(ET.tostring(el, encoding="unicode"))


LAYOUTS = {"listing2-operator.xml": listing2, "four-node.xml": four_node}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_apply_changes_only_what_is_declared_and_converges(modules, states, corpus, name):
    config, nodes = LAYOUTS[name]()
    cib = corpus(name)
    before = read(cib)
    predicted = configured(states, config, nodes, cib, test=True)
    assert predicted.result is None and predicted.changes, predicted
    assert read(cib) == before  # test mode writes nothing

    applied = configured(states, config, nodes, cib)
    assert applied.result is True, applied.comment
    assert applied.changes == predicted.changes
    crm_verify(cib)
    declared = modules["pacemaker.validate"](config, nodes)
    lost, added = undeclared_changes(before, read(cib), declared)
    assert lost == [] and added == []
    assert configured(states, config, nodes, cib).changes == {}


def test_operator_settings_on_declared_items_survive_by_name(modules, states, corpus):
    """What an operator set with pcs on resources the pillar declares, checked one by one."""
    config, nodes = listing2()
    cib = corpus("listing2-operator.xml")
    assert configured(states, config, nodes, cib).result is True
    conf = modules["pacemaker.configuration"](cib_file=cib)
    assert conf["clones"]["cl_quantum-agent-plugin-openvswitch"]["meta"]["interleave"] == "true"
    assert conf["primitives"]["p_IP"]["params"]["fake"] == "operator"
    assert conf["primitives"]["p_IP"]["params"]["ip"] == "192.168.122.130"
    assert conf["primitives"]["p_keystone"]["meta"]["migration-threshold"] == "3"
    assert conf["primitives"]["p_nova-compute-host1"]["utilization"] == {
        "cpu": "2",
        "memory": "2048",
    }
    assert conf["primitives"]["p_nova-novnc"]["meta"]["target-role"] == "Stopped"
    assert conf["operation_defaults"] == {"timeout": "90s"}
    assert conf["clones"]["p_galera-clone"]["meta"]["promotable"] == "true"
    assert conf["colocations"]["co_IP_with_galera_master"]["with_rsc_role"] == "Promoted"
    assert (
        conf["alerts"]["al_file"]["recipients"]["al_file_rcpt"]["value"]
        == "/var/log/pcmk_alerts.log"
    )
    text = read(cib)
    for kept in (
        "<fencing-level",
        '<tag id="t_computes"',
        '<template id="tpl_dummy"',
        '<bundle id="b_web"',
        'name="cluster-name" value="workshop"',
        'name="dc-version"',
        'name="rack" value="r1"',
        'id="p_IP-monitor-interval-120s"',
    ):
        assert kept in text, kept


def test_remove_undeclared_removes_whole_items_only(modules, states, corpus):
    config, nodes = listing2()
    cib = corpus("listing2-operator.xml")
    predicted = configured(states, config, nodes, cib, test=True, remove_undeclared=True)
    removed = sorted(k for k, v in predicted.changes.items() if v["new"] is None)
    assert "primitives:p_galera" in removed and "clones:g_ovs_agents-clone" in removed
    assert "colocations:cs_computes_apart" in removed and "alerts:al_file" in removed
    assert "properties:cluster-name" not in removed  # Pacemaker's own
    assert not [k for k in removed if "fence_" in k or k.startswith("locations:cli-")]
    applied = configured(states, config, nodes, cib, remove_undeclared=True)
    assert applied.result is True, applied.comment
    assert applied.changes == predicted.changes
    crm_verify(cib)
    conf = modules["pacemaker.configuration"](cib_file=cib)
    assert "p_galera-clone" not in conf["clones"] and "fence_alice" in conf["primitives"]
    assert "cli-prefer-p_nova-compute-host2" in conf["locations"]
    # An operator's parameter on a declared primitive is not a whole item: it stays.
    assert conf["primitives"]["p_IP"]["params"]["fake"] == "operator"
    assert "<fencing-level" in read(cib) and '<bundle id="b_web"' in read(cib)
    assert configured(states, config, nodes, cib, remove_undeclared=True).changes == {}


def test_timed_move_then_apply_shift_and_restore_keep_the_rule(modules, states, corpus):
    config, nodes = listing2()
    cib = corpus("listing2-operator.xml")
    # Pacemaker's ordinary timed move, made now (the corpus' own has expired).
    tool(
        cib,
        "crm_resource",
        "--move",
        "--resource",
        "p_nova-compute-host1",
        "--node",
        "alice",
        "--lifetime",
        "PT1H",
    )
    assert configured(states, config, nodes, cib).result is True
    before = constraints_xml(cib)
    assert "cli-prefer-rule-p_nova-compute-host1" in before
    planned = modules["pacemaker.shift_away"](
        "alice", nodes, fallback=["bob"], cib_file=cib, test=True
    )
    shifted = modules["pacemaker.shift_away"]("alice", nodes, fallback=["bob"], cib_file=cib)
    assert shifted["plan"] == planned["plan"] and shifted["refused"] == {}
    assert shifted["plan"]["p_nova-compute-host1"]["to"] == "bob"
    # The galera master preference on alice moves too, with its role.
    assert shifted["plan"]["p_galera-clone (Promoted)"]["role"] == "Promoted"
    assert "p_nova-novnc" not in shifted["plan"]
    after = modules["pacemaker.simulate"](nodes, failed=["alice"], cib_file=cib)
    assert after["p_nova-compute-host1"] == "bob"
    assert "cli-prefer-rule-p_nova-compute-host1" in constraints_xml(cib)
    removed = modules["pacemaker.restore"]("alice", cib_file=cib)
    assert sorted(removed) == sorted(step["constraint"] for step in shifted["plan"].values())
    assert constraints_xml(cib) == before
    crm_verify(cib)


def test_shift_a_group_a_clone_and_a_promotable_clone_on_four_nodes(modules, states, corpus):
    config, nodes = four_node()
    cib = corpus("four-node.xml")
    assert configured(states, config, nodes, cib).result is True
    before = constraints_xml(cib)
    planned = modules["pacemaker.shift_away"]("ctl-a", nodes, cib_file=cib, test=True)
    assert constraints_xml(cib) == before
    shifted = modules["pacemaker.shift_away"]("ctl-a", nodes, cib_file=cib)
    assert shifted["plan"] == planned["plan"] and shifted["refused"] == {}, shifted
    plan = shifted["plan"]
    assert {"grp_db", "grp_mq", "vip_public", "haproxy-clone", "redis-clone (Promoted)"} <= set(
        plan
    )
    assert plan["haproxy-clone"]["to"] != "ctl-d"  # banned there: never a target
    assert (
        plan["redis-clone (Promoted)"]["constraint"]
        == "lo_hastack_shift_redis-clone_from_ctl-a_promoted"
    )
    assert plan["grp_db"]["score"] == "600" and plan["grp_mq"]["score"] == "300"

    roles = modules["pacemaker.simulate"](nodes, failed=["ctl-a"], cib_file=cib, roles=True)
    assert not [rid for rid, where in roles.items() if "ctl-a" in where["nodes"]]
    for label, step in plan.items():
        rsc = label.split(" ")[0]
        where = roles[rsc]["promoted"] if step.get("role") == "Promoted" else roles[rsc]["nodes"]
        assert step["to"] in where, (label, where)
    # Anti-affinity holds: the database group is apart from the queue and the API.
    assert roles["grp_db"]["nodes"] != roles["grp_mq"]["nodes"]
    assert roles["grp_db"]["nodes"] != roles["grp_api"]["nodes"]
    # The public VIP follows the promoted redis.
    assert roles["vip_public"]["nodes"] == roles["redis-clone"]["promoted"]
    assert roles["haproxy-clone"]["nodes"] and "ctl-d" not in roles["haproxy-clone"]["nodes"]

    removed = modules["pacemaker.restore"]("ctl-a", cib_file=cib)
    assert len(removed) == len(plan)
    assert constraints_xml(cib) == before

    # The failover writes the plan it made (no second simulation): the same constraints,
    # and writing it again (a resumed incident) changes nothing.
    modules["pacemaker.shift_away"]("ctl-a", nodes, cib_file=cib, plan=planned["plan"])
    written = constraints_xml(cib)
    modules["pacemaker.restore"]("ctl-a", cib_file=cib)
    modules["pacemaker.shift_away"]("ctl-a", nodes, cib_file=cib)
    assert constraints_xml(cib) == written
    modules["pacemaker.shift_away"]("ctl-a", nodes, cib_file=cib, plan=planned["plan"])
    assert constraints_xml(cib) == written
    with pytest.raises(SaltInvocationError, match="^plan: 'grp_db' is not a shift away from ctl-b"):
        modules["pacemaker.shift_away"]("ctl-b", nodes, cib_file=cib, plan=planned["plan"])


def test_a_ban_and_a_stopped_resource_do_not_derail_the_shift(modules, states, corpus):
    config, nodes = four_node()
    cib = corpus("four-node.xml")
    assert configured(states, config, nodes, cib).result is True
    tool(cib, "crm_resource", "--ban", "--resource", "grp_db", "--node", "ctl-b")
    tool(
        cib,
        "crm_resource",
        "--resource",
        "grp_mq",
        "--meta",
        "--set-parameter",
        "target-role",
        "--parameter-value",
        "Stopped",
    )
    shifted = modules["pacemaker.shift_away"](
        "ctl-a", nodes, fallback=["ctl-b", "ctl-c"], cib_file=cib
    )
    assert shifted["skipped"] == {"grp_mq": "stopped on purpose (target-role=Stopped on grp_mq)"}
    assert shifted["refused"] == {}
    assert shifted["plan"]["grp_db"]["to"] == "ctl-c"  # ctl-b first in fallback, but banned
    assert modules["pacemaker.simulate"](nodes, failed=["ctl-a"], cib_file=cib)["grp_db"] == "ctl-c"


def test_a_cib_with_an_old_feature_set_is_written(modules, states, corpus):
    cib = corpus("old-feature-set.xml")
    assert (
        modules["pacemaker.location_set"]("lo_a_alice", "p_a", "alice", 300, cib_file=cib)["new"][
            "score"
        ]
        == "300"
    )
    assert (
        modules["pacemaker.configuration"](cib_file=cib)["locations"]["lo_a_alice"]["score"]
        == "300"
    )
    assert 'crm_feature_set="3.0.7"' in read(cib)  # the CIB keeps its own


BAD = [
    (
        {"colocations": {"cs": {"score": 10, "sets": [{"resources": ["p_a", "p_nope"]}]}}},
        "hastack:pacemaker:colocations:cs:sets:0:resources: unknown resource 'p_nope'",
    ),
    (
        {"colocations": {"cs": {"score": 10, "rsc": "p_a", "sets": [{"resources": ["p_a"]}]}}},
        "hastack:pacemaker:colocations:cs: either rsc and with_rsc, or sets; not both",
    ),
    (
        {"orders": {"o": {"first": "p_a", "then": "p_b", "first_action": "begin"}}},
        "hastack:pacemaker:orders:o:first_action: one of start, stop, promote, demote",
    ),
    (
        {"locations": {"lo": {"rsc": "p_a", "rules": [{"expressions": []}]}}},
        "hastack:pacemaker:locations:lo:rules:0: a location rule needs a score",
    ),
    (
        {
            "colocations": {
                "co": {"rsc": "p_a", "with_rsc": "p_b", "with_rsc_role": "Leader", "score": 1}
            }
        },
        "hastack:pacemaker:colocations:co:with_rsc_role: one of Started",
    ),
    (
        {"alerts": {"al": {"path": "alert.sh"}}},
        "hastack:pacemaker:alerts:al:path: the alert agent's absolute path",
    ),
    (
        {"clones": {"cl": {"rsc": "p_a", "meta": {"promotable": ["yes"]}}}},
        "hastack:pacemaker:clones:cl:meta:promotable: must be a plain value",
    ),
]


@pytest.mark.parametrize("extra, message", BAD, ids=[m.split(": ")[0] for _, m in BAD])
def test_bad_declarations_are_named(modules, states, extra, message):
    config = {
        "primitives": {
            "p_a": {"agent": "ocf:pacemaker:Dummy"},
            "p_b": {"agent": "ocf:pacemaker:Dummy"},
        }
    }
    config.update(extra)
    with pytest.raises(Exception) as err:
        modules["pacemaker.validate"](config, ["alice", "bob"])
    assert message in str(err.value)


def test_two_writers_on_one_cib_file_lose_nothing_and_no_read_fails(modules, states, corpus):
    cib = corpus("listing2-operator.xml")
    writer = [sys.executable, "-m", "tests.cib_writer"]
    results = run_together(
        [writer + [name, "20", "p_nova-compute-host3", "charlie", cib] for name in ("w1", "w2")]
        + [writer + ["r", "150", "-", "-", cib]]
    )
    assert [rc for rc, _ in results] == [0, 0, 0], results
    locations = modules["pacemaker.configuration"](cib_file=cib)["locations"]
    assert {f"lo_{w}_{i}" for w in ("w1", "w2") for i in range(20)} <= set(locations)
    crm_verify(cib)


def test_location_calls_on_a_cib_with_rules_sets_and_a_timed_move(modules, states, corpus):
    """location_set, move and clear on the four-node CIB as pcs left it (rule locations,
    sets, a crm_resource timed move): they touch their one constraint and nothing else."""
    cib = corpus("four-node.xml")
    before = read(cib)
    assert modules["pacemaker.location_set"]("lo_api_c", "grp_api", "ctl-c", 75, cib_file=cib) == {
        "old": None,
        "new": {"rsc": "grp_api", "node": "ctl-c", "score": "75"},
    }
    # The timed move's rule gives way to a plain preference; its role stays.
    moved = modules["pacemaker.move"]("vip_internal", "ctl-b", cib_file=cib)
    assert moved["old"] == {"rsc": "vip_internal", "node": None, "score": None}
    conf = modules["pacemaker.configuration"](cib_file=cib)
    assert conf["locations"]["cli-prefer-vip_internal"] == {
        "rsc": "vip_internal",
        "role": "Started",
        "node": "ctl-b",
        "score": "INFINITY",
    }
    declared = {
        "locations": {
            "lo_api_c": {"rsc": "grp_api", "node": "ctl-c", "score": "75"},
            "cli-prefer-vip_internal": {
                "rsc": "vip_internal",
                "node": "ctl-b",
                "score": "INFINITY",
            },
        }
    }
    lost, added = undeclared_changes(before, read(cib), declared)
    assert lost == [] and added == []
    crm_verify(cib)
    assert modules["pacemaker.clear"]("vip_internal", cib_file=cib) == ["cli-prefer-vip_internal"]
    tool(cib, "crm_resource", "--ban", "--resource", "grp_db", "--node", "ctl-d")
    assert modules["pacemaker.clear"]("grp_db", cib_file=cib) == ["cli-ban-grp_db-on-ctl-d"]
    assert modules["pacemaker.location_remove"]("lo_api_c", cib_file=cib)["new"] is None
    conf = modules["pacemaker.configuration"](cib_file=cib)
    assert conf["colocations"]["cs_vips"]["sets"] == [
        {"sequential": "true", "resources": ["vip_public", "vip_internal"]}
    ]
    assert conf["locations"]["lo_redis_promoted_a"]["rules"][0]["role"] == "Promoted"

"""Real fencing in the 3-node Pacemaker lab (lab/pcmklab.py started with
``fencing=True``): the lab fence agent lab/fence_lab as a ``stonith:fence_lab`` device
for alice, bob and charlie, declared with plain cibadmin (no Salt), and
``stonith-enabled=true``.

A node killed with ``pcmklab.kill`` is fenced by a survivor through fence_lab and
then shows offline and clean; fence_lab powers off a live node (every process of its
namespace SIGKILLed); and while fencing a dead node fails (``pcmklab.fail_fencing``)
the node stays unclean and its resource is not recovered elsewhere (a failed fence
means no evacuation) until Pacemaker's retry succeeds once the failure is switched
off. Only one node is down at a time: the other two keep quorum."""

import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest

from hastack_utils import cib
from lab import pcmklab, procs

NODES = ["alice", "bob", "charlie"]
# Figures the tests measure (printed with -s, and reported in assertion messages).
MEASURED = {}


@pytest.fixture(scope="module")
def lab():
    # Not under /tmp: each node has its own /tmp, and the fencer reads lab.json here.
    d = tempfile.mkdtemp(prefix="hastack-fence-", dir="/var/tmp")
    try:
        facts = pcmklab.start(d, fencing=True)  # stops what it started if it fails
    except pcmklab.LabError as err:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"the Pacemaker lab with fencing did not start: {err}")
    try:
        yield facts
    finally:
        pcmklab.stop(d)
        shutil.rmtree(d, ignore_errors=True)
        print(f"\nfencing figures: {MEASURED}")


def run(facts, node, argv, stdin=None):
    return subprocess.run(
        pcmklab.node_argv(facts, node, argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def all_online(facts, seen_from="alice", timeout=60):
    assert procs.until(lambda: pcmklab.online_nodes(facts, seen_from) == NODES, timeout, 1), (
        f"not all nodes online as {seen_from} sees it: {pcmklab.online_nodes(facts, seen_from)}"
    )


def wait_for(what, condition, timeout, interval=0.5):
    """Poll ``condition`` (returns a value or None) until it gives a value."""
    deadline = time.monotonic() + timeout
    while True:
        got = condition()
        if got:
            return got
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(interval)


def succeeded(facts, node, seen_from, since):
    """The successful fencing of ``node`` that completed after ``since`` (POSIX time),
    as ``seen_from``'s fencer history has it."""
    for event in pcmklab.fence_history(facts, node, seen_from) or []:
        # crm prints whole seconds.
        if event["status"] == "success" and (event["completed"] or 0) >= int(since):
            return event
    return None


def clean_and_off(facts, node, seen_from):
    state = pcmklab.node_state(facts, node, seen_from) or {}
    return (state.get("online"), state.get("unclean")) == ("false", "false")


def test_the_agent_is_installed_and_declared(lab):
    # The fencer finds the agent in /usr/sbin from inside a node, and reads its metadata.
    listed = run(lab, "bob", ["stonith_admin", "--list-installed"])
    assert listed.returncode == 0, listed.stderr
    assert "fence_lab" in listed.stdout.split()
    meta = run(lab, "bob", ["stonith_admin", "--metadata", "-a", "fence_lab"])
    assert meta.returncode == 0, meta.stderr
    root = ET.fromstring(meta.stdout)
    assert root.tag == "resource-agent" and root.get("name") == "fence_lab"
    params = {p.get("name") for p in root.iterfind("parameters/parameter")}
    assert {"port", "plug", "action", "nodename", "lab_dir"} <= params
    actions = {a.get("name") for a in root.iterfind("actions/action")}
    assert {"off", "reboot", "on", "status", "monitor", "list", "metadata"} <= actions

    # The fence-agent API, as the fencer calls it (key=value on stdin), inside a node.
    agent = ["/usr/sbin/fence_lab"]
    got = run(lab, "alice", agent, f"# a comment\naction=list\nlab_dir={lab['dir']}\n")
    assert (got.returncode, got.stdout.split()) == (0, NODES), got.stderr
    got = run(lab, "alice", agent, f"action=status\nport=bob\nlab_dir={lab['dir']}\n")
    assert (got.returncode, got.stdout.strip()) == (0, "Status: ON"), got.stderr
    got = run(lab, "alice", agent, f"action=monitor\nlab_dir={lab['dir']}\n")
    assert got.returncode == 0, got.stderr
    # ... and as a person debugging it does (command-line options).
    got = run(lab, "alice", [*agent, "-o", "status", "-n", "nobody", "--lab_dir", lab["dir"]])
    assert got.returncode == 1 and "unknown plug" in got.stderr
    got = run(lab, "alice", [*agent, "--action=dance", f"--lab_dir={lab['dir']}"])
    assert got.returncode == 1 and "unknown action" in got.stderr
    got = run(lab, "alice", [*agent, "-o", "monitor", "--lab_dir", "/var/tmp/no-such-lab"])
    assert got.returncode == 1 and "cannot read" in got.stderr

    # Declared with stonith on, the device started somewhere.
    mon = ET.fromstring(pcmklab.crm_mon(lab, "alice"))
    assert mon.find("summary/cluster_options").get("stonith-enabled") == "true"
    device = mon.find(f"resources/resource[@id='{pcmklab.FENCE_DEVICE}']")
    assert device.get("resource_agent") == "stonith:fence_lab"
    assert device.get("role") == "Started"

    # hastack's CIB mapping takes the same device as pillar (agent stonith:fence_lab),
    # and reads what cibadmin wrote as exactly that declaration: nothing to change.
    declared = {"primitives": pcmklab.fence_device_config(lab)}
    wanted = cib.validate(declared, NODES)
    live = run(lab, "alice", ["cibadmin", "--query"])
    assert live.returncode == 0, live.stderr
    assert cib.diff(cib.read_configuration(cib.parse(live.stdout)), wanted) == {}
    pillar = pcmklab.listing2(fencing=lab)["hastack"]["pacemaker"]
    assert pillar["properties"]["stonith-enabled"] == "true"
    assert pillar["primitives"][pcmklab.FENCE_DEVICE]["agent"] == "stonith:fence_lab"
    assert pcmklab.listing2()["hastack"]["pacemaker"]["properties"]["stonith-enabled"] == "false"


def test_a_killed_node_is_fenced_by_a_survivor(lab):
    all_online(lab)
    killed = time.time()
    pcmklab.kill(lab, "charlie")
    event = wait_for(
        "successful fencing of charlie", lambda: succeeded(lab, "charlie", "alice", killed), 60
    )
    seen = time.time()
    assert event["action"] in ("reboot", "off")
    assert event["delegate"] in ("alice", "bob")  # a survivor ran the device
    assert event["origin"] in ("alice", "bob")
    # The agent really ran, on that survivor, and found the node's processes gone.
    done = [
        e
        for e in pcmklab.fence_log(lab)
        if e["target"] == "charlie" and e["time"] >= killed and e["result"] == "success"
    ]
    assert done and done[0]["by"] == event["delegate"], done
    MEASURED["kill_to_fenced_s"] = round(done[0]["time"] - killed, 1)
    MEASURED["kill_to_history_s"] = round(seen - killed, 1)
    for survivor in ("alice", "bob"):
        assert clean_and_off(lab, "charlie", survivor), pcmklab.node_state(lab, "charlie", survivor)
    assert pcmklab.online_nodes(lab, "bob") == ["alice", "bob"]
    pcmklab.restart(lab, "charlie")


def test_fence_lab_powers_off_a_live_node(lab):
    all_online(lab)
    assert pcmklab.node_pids(lab, "charlie")
    asked = time.time()
    fenced = run(lab, "alice", ["stonith_admin", "--fence", "charlie", "--timeout", "30"])
    assert fenced.returncode == 0, fenced.stderr
    MEASURED["stonith_admin_fence_live_s"] = round(time.time() - asked, 1)
    assert pcmklab.node_pids(lab, "charlie") == []  # every process of the node is gone
    event = succeeded(lab, "charlie", "bob", asked)
    assert event and event["action"] == "off" and event["delegate"] in ("alice", "bob"), event
    killed = [e for e in pcmklab.fence_log(lab) if e["target"] == "charlie" and e["time"] >= asked]
    assert killed[-1]["result"] == "success" and killed[-1]["signalled"] > 0, killed
    wait_for("charlie offline and clean", lambda: clean_and_off(lab, "charlie", "alice"), 30)
    pcmklab.restart(lab, "charlie")


def test_a_failed_fence_means_no_evacuation_until_a_retry_fences(lab):
    all_online(lab)
    # A resource that prefers bob: where it runs tells whether bob's work was recovered.
    for section, xml in (
        ("resources", '<primitive id="p_probe" class="ocf" provider="pacemaker" type="Dummy"/>'),
        ("constraints", '<rsc_location id="lo_probe_bob" rsc="p_probe" node="bob" score="100"/>'),
    ):
        made = run(lab, "alice", ["cibadmin", "--create", "-o", section, "--xml-text", xml])
        assert made.returncode == 0, made.stderr
    wait_for(
        "p_probe on bob",
        lambda: "p_probe" in (pcmklab.node_state(lab, "bob", "alice") or {}).get("resources", []),
        30,
    )

    pcmklab.fail_fencing(lab, "bob")
    killed = time.time()
    pcmklab.kill(lab, "bob")

    def failed_events():
        history = pcmklab.fence_history(lab, "bob", "alice") or []
        failed = [e for e in history if e["status"] == "failed"]
        return failed if len(failed) >= 2 else None

    # Pacemaker tries, fails, and tries again.
    failed = wait_for("two failed fencing attempts of bob", failed_events, 60)
    assert all(e["action"] in ("reboot", "off") for e in failed)
    assert all(e["delegate"] in ("alice", "charlie") for e in failed), failed
    assert succeeded(lab, "bob", "alice", killed) is None
    tries = [e for e in pcmklab.fence_log(lab) if e["target"] == "bob" and e["time"] >= killed]
    assert tries and {e["result"] for e in tries} == {"failed"}, tries
    assert "power switch is off" in tries[0]["error"]
    # bob is unclean, and what ran on it is not started anywhere else.
    for survivor in ("alice", "charlie"):
        state = pcmklab.node_state(lab, "bob", survivor)
        assert (state["online"], state["unclean"]) == ("false", "true"), state
        assert "p_probe" in state["resources"]
        for other in ("alice", "charlie"):
            assert "p_probe" not in pcmklab.node_state(lab, other, survivor)["resources"]

    # The device works again: Pacemaker's next retry fences bob, then recovers p_probe.
    pcmklab.fail_fencing(lab, "bob", fail=False)
    repaired = time.time()
    event = wait_for(
        "bob fenced after the repair", lambda: succeeded(lab, "bob", "alice", killed), 60
    )
    MEASURED["repair_to_fenced_s"] = round(time.time() - repaired, 1)
    MEASURED["failed_attempts_before"] = len(failed_events() or [])
    assert event["delegate"] in ("alice", "charlie")
    assert clean_and_off(lab, "bob", "alice"), pcmklab.node_state(lab, "bob", "alice")
    moved = wait_for(
        "p_probe recovered on a survivor",
        lambda: [
            n
            for n in ("alice", "charlie")
            if "p_probe" in pcmklab.node_state(lab, n, "alice")["resources"]
        ],
        30,
    )
    assert len(moved) == 1

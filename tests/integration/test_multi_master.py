"""Self-healing with two masters (Salt multi-master), end to end: two real salt-masters
(lab-master on 127.0.0.1, lab-master-2 on 127.0.0.5, the same ports and key pair), both
running the shipped wiring, every minion connected to both, the live 3-node Pacemaker
lab and the lab Neutron (lab/failoverlab.py with ``masters=2``).

A node dies: the survivors' beacons signal both masters, both start an incident, and
the incident lock in the CIB lets exactly one act; the other ends ``skipped`` naming
the holder. The acting master is then killed mid-way, and the other finishes the
incident once the lock's lease has run out (the beacons repeat the signal while the
node stays down)."""

import shutil
import tempfile
import time
import types

import pytest

from lab import failoverlab
from tests.integration.bus import Bus

LEASE = 20
RESEND = 5
MASTER_ID = {1: "lab-master", 2: "lab-master-2"}


@pytest.fixture(scope="module")
def lab():
    d = tempfile.mkdtemp(prefix="hastack-2masters-", dir="/var/tmp")
    try:
        the_lab = failoverlab.start(d, masters=2, policy={"lease": LEASE, "beacon_resend": RESEND})
    except Exception as err:  # pylint: disable=broad-except
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"the two-master self-healing lab did not start: {err}")
    try:
        yield the_lab
    finally:
        failoverlab.remove(the_lab)


@pytest.fixture(scope="module")
def buses(lab):
    both = {m: Bus(types.SimpleNamespace(events=lambda m=m: lab.events(m))) for m in (1, 2)}
    yield both
    for bus in both.values():
        bus.close()


def ends(bus, mark, node="bob"):
    """``{incident: (step, data, seen at)}`` of the incidents of ``node`` that ended."""
    out = {}
    for seen, tag, data in bus.since(mark):
        step = tag.rsplit("/", 1)[1]
        if data.get("node") == node and step in ("done", "failed", "skipped"):
            out[data["incident"]] = (step, data, seen)
    return out


def test_exactly_one_master_acts_and_the_other_finishes_after_the_acting_one_dies(lab, buses):
    marks = {m: bus.mark() for m, bus in buses.items()}
    lab.kill("bob")

    # One master's incident takes the lock and plans: that master acts.
    def planned():
        for m, bus in buses.items():
            for _, tag, data in bus.since(marks[m]):
                if data.get("node") == "bob" and tag.endswith("/planned"):
                    return m, data["incident"]
        return None

    deadline = time.monotonic() + 90
    acting = None
    while acting is None and time.monotonic() < deadline:
        acting = planned()
        time.sleep(0.1)
    # The lock was taken before the plan: no later than now.
    lock_taken = time.time()
    assert acting, {m: [t for _, t, _ in b.since(marks[m])] for m, b in buses.items()}
    actor, incident = acting
    other = 2 if actor == 1 else 1
    holder = f"incident {incident} of master {MASTER_ID[actor]} holds bob"

    # The other master's incident for the same signal ends skipped, naming the holder
    # (the second survivor's signal meanwhile is skipped as a duplicate there).
    deadline = time.monotonic() + 60
    skipped = []
    while not skipped and time.monotonic() < deadline:
        skipped = [
            d
            for s, d, _ in ends(buses[other], marks[other]).values()
            if s == "skipped" and holder in d["reason"]
        ]
        time.sleep(0.2)
    assert skipped, ends(buses[other], marks[other])
    assert not [s for s, _, _ in ends(buses[other], marks[other]).values() if s != "skipped"]

    # The acting master dies mid-way: it never reports the end of its incident.
    lab.kill_master(actor)
    survivor_mark = buses[other].mark()

    # While the lease runs, the repeated signals are skipped naming the dead holder;
    # after it, the other master takes the lock over and finishes.
    deadline = time.monotonic() + LEASE + 120
    done = None
    while done is None and time.monotonic() < deadline:
        done = next(
            ((d, seen) for s, d, seen in ends(buses[other], survivor_mark).values() if s == "done"),
            None,
        )
        time.sleep(0.5)
    assert done, ends(buses[other], survivor_mark)
    data, seen = done
    # Not before the lease ran out (counted from the lock, taken a moment before the
    # plan was seen).
    assert seen - lock_taken >= LEASE - 5, seen - lock_taken
    before = [d for s, d, _ in ends(buses[other], survivor_mark).values() if s == "skipped"]
    # While the lease ran, the repeated signals were skipped, naming the dead holder.
    assert [d for d in before if MASTER_ID[actor] in d["reason"]], before
    # Pacemaker runs bob's resources on the survivors, as the plan said.
    placement = lab.client(other).cmd("alice", "pacemaker.status", timeout=30)["alice"]["resources"]
    assert placement and "bob" not in {
        n for v in placement.values() for n in (v if isinstance(v, list) else [v])
    }, placement
    # One incident acted per master, the dead one's never reported done.
    assert not [s for s, _, _ in ends(buses[actor], marks[actor]).values() if s == "done"]

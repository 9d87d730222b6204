"""Benchmark: self-healing after a node failure, against Salt's own floor, the raw
Neutron writes it makes, and Neutron's own automatic router rescheduling.

On the end-to-end lab (lab/failoverlab.py: a real master, three minions inside the live
3-node Pacemaker cluster, the lab Neutron with two routers and four floating IPs on
alice's L3 agent), measured side by side in one run:

- incidents: ``--incidents`` times, kill alice (SIGKILL of the whole node), wait for
  ``done``, revive alice, wait for ``restored``. Per incident: node kill -> the first
  ``hastack/node/down`` on the master bus (Pacemaker's detection + the beacon), signal
  -> each step -> done (from the incident's own timings).
- Salt's floor: an event fired on the master bus -> the reactor -> ``state.orchestrate``
  -> ``test.ping`` on a minion -> its return on the bus (``--floor`` rounds).
- raw Neutron: the same writes the failover makes for the routers (DELETE from alice's
  agent + POST to a live one, per router) over one HTTP session, no Salt.
- Neutron's own failover: ``allow_automatic_l3agent_failover = True`` on the same
  neutron-server (restarted with it); alice's agent stops reporting; time from its last
  heartbeat until Neutron has moved every router off it (``--neutron-rounds``).

Target (issue 11): signal -> done within Salt's floor + 1.2x the raw Neutron writes.
Prints p50/p95 and where the time goes.

Usage: ``python -m bench.failover [--incidents 10] [--floor 10] [--neutron-rounds 1]``
"""

import argparse
import json
import os
import shutil
import tempfile
import time

import openstack.exceptions

from lab import failoverlab, neutronlab

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = ("confirmed", "planned", "shifted", "reissued", "done")


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def row(label, values, unit="s"):
    return f"  {label:<44} p50 {pct(values, 50):7.2f} {unit}   p95 {pct(values, 95):7.2f} {unit}"


class Bus:
    def __init__(self, lab):
        self.listener = lab.events()

    def wait(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.listener.get_event(wait=0.5, full=True)
            if event and predicate(event["tag"], event["data"]):
                return time.time(), event["tag"], event["data"]
        raise RuntimeError(f"no such event within {timeout} s")


def floor_rounds(lab, bus, rounds):
    import salt.utils.event  # pylint: disable=import-outside-toplevel

    opts = lab.opts()
    out = []
    for i in range(rounds):
        with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as ev:
            started = time.time()
            ev.fire_event({"round": i}, "hastack/bench/floor")
        ended, _, _ = bus.wait(
            lambda tag, data: (
                tag.startswith("salt/job/")
                and tag.endswith("/ret/bob")
                and data.get("fun") == "test.ping"
            ),
            60,
        )
        out.append(ended - started)
    return out


def raw_router_moves(lab, rounds):
    """The failover's router writes, raw: per router DELETE from alice's agent and POST
    to a live one, over one HTTP session (openstacksdk's adapter, no Salt)."""
    net = lab.conn.network
    agents = {a.host: a for a in net.agents(agent_type="L3 agent")}
    targets = ["bob", "charlie"]
    out = []
    for _ in range(rounds):
        lab.routers_on("alice")
        started = time.monotonic()
        for i, router in enumerate(lab.routers.values()):
            resp = net.delete(f"/agents/{agents['alice'].id}/l3-routers/{router.id}")
            openstack.exceptions.raise_from_response(resp)
            target = agents[targets[i % 2]]
            resp = net.post(f"/agents/{target.id}/l3-routers", json={"router_id": router.id})
            openstack.exceptions.raise_from_response(resp)
        out.append(time.monotonic() - started)
    lab.routers_on("alice")
    return out


def incidents(lab, bus, count):
    kill_to_signal, steps = [], {s: [] for s in STEPS}
    parts = {
        "pillar compiled for the policy": [],
        "Pacemaker moving the resources (settle)": [],
        "Pacemaker part (write + settle)": [],
        "Neutron part (router moves + read-back)": [],
    }
    for _ in range(count):
        lab.routers_on("alice")
        killed = time.time()
        lab.kill("alice")
        signalled, _, _ = bus.wait(
            lambda tag, data: (
                tag == "hastack/node/down" and (data.get("data") or {}).get("node") == "alice"
            ),
            60,
        )
        _, _, done = bus.wait(
            lambda tag, data: tag.endswith("/done") and data.get("node") == "alice", 120
        )
        record = next(
            r
            for r in lab.runner("failover.incidents", "alice")
            if r["incident"] == done["incident"]
        )
        kill_to_signal.append(signalled - killed)
        for step in STEPS:
            steps[step].append(record["timings"][step])
        stored = os.path.join(
            lab.dir,
            "master",
            "cache",
            "hastack",
            "failover",
            "incidents",
            f"{record['incident']}.json",
        )
        with open(stored, encoding="utf-8") as fh:
            full = json.load(fh)["steps"]
        parts["pillar compiled for the policy"].append(full["confirmed"]["policy_compiled_in"])
        parts["Pacemaker moving the resources (settle)"].append(full["shifted"]["settled_in"])
        parts["Pacemaker part (write + settle)"].append(full["shifted"]["took"])
        parts["Neutron part (router moves + read-back)"].append(full["reissued"]["took"])
        lab.revive("alice")
        bus.wait(lambda tag, data: tag.endswith("/restored") and data.get("node") == "alice", 90)
    return kill_to_signal, steps, parts


def neutron_auto_failover(lab, rounds):
    """Neutron's own rescheduling: same server, restarted with automatic L3 failover on."""
    conf = lab.neutron["conf"]
    with open(conf, encoding="utf-8") as fh:
        text = fh.read()
    neutronlab.stop_server(lab.neutron)
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(
            text.replace(
                "allow_automatic_l3agent_failover = false",
                "allow_automatic_l3agent_failover = true",
            )
        )
    neutronlab.start_server(lab.neutron)
    net = lab.conn.network
    out = []
    try:
        for _ in range(rounds):
            lab.alive.add("alice")
            neutronlab.report_l3_agents(lab.neutron, "alice", heartbeat=True)
            lab.routers_on("alice")
            # alice's agent's last heartbeat: now. Its reports stop here.
            neutronlab.report_l3_agents(lab.neutron, "alice", heartbeat=True)
            last_beat = time.monotonic()
            lab.alive.discard("alice")
            alice = next(a for a in net.agents(agent_type="L3 agent") if a.host == "alice")
            while list(net.agent_hosted_routers(alice)):
                if time.monotonic() - last_beat > 400:
                    raise RuntimeError("Neutron did not reschedule within 400 s")
                time.sleep(1)
            out.append(time.monotonic() - last_beat)
    finally:
        neutronlab.stop_server(lab.neutron)
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(text)
        neutronlab.start_server(lab.neutron)
        lab.alive.add("alice")
        neutronlab.report_l3_agents(lab.neutron, "alice", heartbeat=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--incidents", type=int, default=10)
    parser.add_argument("--floor", type=int, default=10)
    parser.add_argument("--neutron-rounds", type=int, default=1)
    args = parser.parse_args(argv)
    d = tempfile.mkdtemp(prefix="hastack-bench-failover-", dir="/var/tmp")
    started = time.monotonic()
    lab = failoverlab.start(
        d,
        extra_master={
            "file_roots": {"base": [os.path.join(HERE, "salt")]},
            "reactor": [{"hastack/bench/floor": ["salt://hastack_bench/floor_reactor.sls"]}],
        },
    )
    print(f"lab up in {time.monotonic() - started:.0f} s", flush=True)
    try:
        bus = Bus(lab)
        floor = floor_rounds(lab, bus, args.floor)
        print(row("Salt floor (event->reactor->orch->minion)", floor), flush=True)
        raw = raw_router_moves(lab, args.incidents)
        print(row("raw Neutron writes (2 routers moved)", raw), flush=True)
        kill_to_signal, steps, parts = incidents(lab, bus, args.incidents)
        auto = neutron_auto_failover(lab, args.neutron_rounds) if args.neutron_rounds else []
    finally:
        failoverlab.remove(lab)
        shutil.rmtree(d, ignore_errors=True)

    print(f"\nself-healing, {args.incidents} incidents (kill alice, heal, restore):")
    print(row("node kill -> signal on the master bus", kill_to_signal))
    previous = [0.0] * len(steps["done"])
    for step in STEPS:
        print(row(f"  signal -> {step}", steps[step]))
        took = [now - before for now, before in zip(steps[step], previous)]
        print(row(f"    of which {step} itself", took))
        previous = steps[step]
    print(row("node kill -> done", [a + b for a, b in zip(kill_to_signal, steps["done"])]))
    print("  where the time goes (p50 of each; the last two run side by side):")
    for label, values in parts.items():
        print(row(f"  {label}", values))
    if auto:
        print(row("Neutron's own rescheduling (last heartbeat -> moved)", auto))
    target = pct(floor, 50) + 1.2 * pct(raw, 50)
    done50 = pct(steps["done"], 50)
    print(
        f"\nsignal -> done p50 {done50:.2f} s; target (floor p50 + 1.2 x raw writes p50) "
        f"{target:.2f} s: {'met' if done50 <= target else 'not met'} "
        f"(ratio done/target {done50 / target:.2f})"
    )
    if auto:
        whole = pct(kill_to_signal, 50) + done50
        print(
            f"Neutron's own failover p50 {pct(auto, 50):.1f} s against hastack's node kill -> "
            f"done p50 {whole:.1f} s: {pct(auto, 50) / whole:.1f}x faster"
        )
    print("Neutron writes per incident: 2 per router (DELETE + POST), O(routers), 4 here")


if __name__ == "__main__":
    main()

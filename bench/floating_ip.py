"""Benchmark: reissuing N floating IPs, hastack vs the recipe's CLI vs raw HTTP PUTs.

One lab neutron-server (lab/neutronlab.py), the workshop's topology and N ``compute:nova``
ports on host alice, each with a floating IP. Measured side by side in one run, every
way doing the same N writes (each floating IP PUT again onto the port it has), at the
same concurrency C:

- recipe: per floating IP ``openstack floating ip unset --port ADDRESS`` then ``openstack
  floating ip set --port PORT ADDRESS`` (python-openstackclient 10.5, ``clouds.yaml``
  entry with ``auth_type: none``). ``set`` alone onto the port the address already has
  sends no change at all (the SDK drops an unchanged ``port_id``), so the CLI cannot
  reissue in one step; that makes two processes and two writes per floating IP.
- raw HTTP: ``PUT /v2.0/floatingips/ID`` with ``If-Match: revision_number=N`` over one
  pooled HTTP session (requests), the floor for any client.
- hastack: ``floating_ip.reissue host=alice`` through the Salt loader (lists, resolves
  the host's floating IPs, then the guarded PUTs), and as ``salt-call`` once.

Then hastack's time for growing N, where the time goes (neutron-server's CPU seconds
against the wall time and hastack's own CPU), and the strategy that needs the fewest
writes: the router behind all N floating IPs moved off a dead L3 agent
(``neutron_l3.move_routers``, 2 writes) against N reissue PUTs.
Ratios are peer / hastack: above 1 means hastack is faster.

Usage: ``python -m bench.floating_ip [--n 50] [--concurrency 8]``
"""

import argparse
import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
import time

import openstack
import requests
import yaml

from bench import timed
from lab import neutronlab, saltlocal


def cpu_seconds(pid):
    """User + system CPU seconds of a process (and its reaped children)."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


def parallel(fn, items, concurrency):
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        for result in pool.map(fn, items):
            if result is not None and result is not True:
                raise RuntimeError(result)


def main(argv=None):  # pylint: disable=too-many-locals,too-many-statements
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    n, conc = args.n, args.concurrency
    work = tempfile.mkdtemp(prefix="hastack-bench-fip-", dir="/var/tmp")
    os.chmod(work, 0o755)  # the lab's PostgreSQL runs as postgres
    lab_dir = os.path.join(work, "neutron")
    facts = neutronlab.start(lab_dir)
    try:
        conn = openstack.connect(**facts["cloud"])
        made = neutronlab.workshop_topology(conn)
        ports = neutronlab.vm_ports(
            conn, made["admin-net"], [f"vm{i}-port" for i in range(n)], "alice"
        )
        fips = [
            conn.network.create_ip(floating_network_id=made["ext_net"].id, port_id=p.id)
            for p in ports
        ]
        by_address = {f.floating_ip_address: f for f in fips}

        clouds = os.path.join(work, "clouds.yaml")
        with open(clouds, "w", encoding="utf-8") as fh:
            yaml.safe_dump({"clouds": {"lab": dict(facts["cloud"])}}, fh)
        osc = os.path.join(os.path.dirname(sys.executable), "openstack")
        osc_env = dict(os.environ, OS_CLIENT_CONFIG_FILE=clouds, OS_CLOUD="lab")

        def cli_one(fip):
            # `floating ip set --port` onto the port it already has sends nothing (the SDK
            # drops an unchanged port_id): the CLI way to reissue is unset, then set.
            for argv in (
                ["unset", "--port", fip.floating_ip_address],
                ["set", "--port", fip.port_id, fip.floating_ip_address],
            ):
                res = subprocess.run(
                    [osc, "floating", "ip", *argv],
                    env=osc_env,
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if res.returncode != 0:
                    return res.stderr
            return True

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=conc)
        session.mount("http://", adapter)

        def raw_one(fip):
            current = session.get(f"{facts['url']}v2.0/floatingips/{fip.id}").json()["floatingip"]
            resp = session.put(
                f"{facts['url']}v2.0/floatingips/{fip.id}",
                json={"floatingip": {"port_id": current["port_id"]}},
                headers={"If-Match": f"revision_number={current['revision_number']}"},
            )
            return True if resp.status_code == 200 else resp.text

        minion = saltlocal.Minion(
            os.path.join(work, "minion"),
            "alice",
            {"hastack": {"openstack": {"cloud": facts["cloud"]}}},
            example=False,
        )
        funcs, _ = minion.loader({"hastack": {"openstack": {"cloud": facts["cloud"]}}})

        def hastack_reissue():
            result = funcs["floating_ip.reissue"](host="alice", concurrency=conc)
            if result["failed"] or len(result["reissued"]) != n:
                raise RuntimeError(f"reissue: {result}")

        server_pid = facts["pids"]["neutron-server"]
        figures = {}

        def revisions():
            return {f.id: f.revision_number for f in conn.network.ips()}

        for name, fn in (
            ("cli", lambda: parallel(cli_one, list(by_address.values()), conc)),
            ("raw", lambda: parallel(raw_one, list(by_address.values()), conc)),
            ("hastack", hastack_reissue),
        ):
            before = revisions()
            cpu_before, own_before = cpu_seconds(server_pid), time.process_time()
            seconds, _ = timed(fn)
            figures[name] = {
                "wall": seconds,
                "neutron_cpu": cpu_seconds(server_pid) - cpu_before,
                "own_cpu": time.process_time() - own_before,
            }
            after = revisions()
            written = sum(after[i] > before[i] for i in before)
            if written != n:  # each way must really have written every floating IP
                raise RuntimeError(f"{name}: {written} of {n} floating IPs were written")

        def salt_call():
            rc, out = minion.call("floating_ip.reissue", "host=alice", f"concurrency={conc}")
            if rc != 0 or len(out["reissued"]) != n:
                raise RuntimeError(f"salt-call reissue: {minion.last_output}")

        salt_seconds, _ = timed(salt_call)

        # Growth: hastack reissue of the first k floating IPs by address.
        growth = []
        for k in sorted({max(1, n // 5), max(1, n // 2), n}):
            subset = sorted(by_address)[:k]
            seconds, _ = timed(
                lambda s=subset: funcs["floating_ip.reissue"](addresses=s, concurrency=conc)
            )
            growth.append((k, seconds))

        # The fewest writes: alice's L3 agent dies; its router (behind all N) moves.
        neutronlab.report_l3_agents(facts, "alice", "bob")
        agents = {a.host: a for a in conn.network.agents(agent_type="L3 agent")}
        conn.network.add_router_to_agent(agents["alice"], made["admin-router"])
        neutronlab.age_agent(facts, "alice")
        cpu_before = cpu_seconds(server_pid)
        move_seconds, moved = timed(lambda: funcs["neutron_l3.move_routers"]())
        move_cpu = cpu_seconds(server_pid) - cpu_before
        if (
            moved["moved"] != {"admin-router": {"from": "alice", "to": "bob"}}
            or len(moved["floating_ips"]) != n
        ):
            raise RuntimeError(f"move_routers: {moved}")

        h = figures["hastack"]
        print(
            f"hastack floating-IP benchmark: reissue of N={n} floating IPs, concurrency {conc}, "
            "one lab neutron-server"
        )
        for name, label in (
            ("cli", "openstack floating ip unset + set, per IP"),
            ("raw", "raw HTTP PUT (GET + guarded PUT)"),
        ):
            f = figures[name]
            print(
                f"  {label:44} {f['wall']:6.2f} s   hastack reissue {h['wall']:5.2f} s   "
                f"ratio {f['wall'] / h['wall']:5.2f}"
            )
        print(f"  hastack as one salt-call (Salt start-up included)  {salt_seconds:5.2f} s")
        print("  where the time goes (neutron-server CPU / wall; client CPU):")
        for name in ("cli", "raw", "hastack"):
            f = figures[name]
            client = (
                f"{2 * n} CLI processes (their CPU not counted)"
                if name == "cli"
                else f"client CPU {f['own_cpu']:5.2f} s"
            )
            print(
                f"    {name:8} neutron-server CPU {f['neutron_cpu']:5.2f} s of {f['wall']:5.2f} s wall   {client}"
            )
        print(
            "  hastack growth: "
            + ", ".join(f"N={k}: {s:5.2f} s ({1000 * s / k:4.0f} ms/IP)" for k, s in growth)
        )
        print(
            f"  fewest writes: move the router behind all {n} off the dead L3 agent: {move_seconds:5.2f} s "
            f"(neutron CPU {move_cpu:4.2f} s, 2 writes) vs reissuing {n}: {h['wall']:5.2f} s "
            f"(ratio {h['wall'] / move_seconds:5.1f})"
        )
    finally:
        neutronlab.stop(lab_dir)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

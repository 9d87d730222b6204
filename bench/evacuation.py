"""Benchmark: the VMs of a dead compute back on live hosts, hastack against the peers
it replaces, measured side by side in one run on the lab Nova (lab/novalab.py: real
nova-api, conductor, scheduler, placement and three fake-driver computes host1..3).

For each N (``--vms``), N servers boot on host1, host1's nova-compute is SIGKILLed
(the node dies), and the clock starts. Then, each on a fresh set of N servers:

- hastack evacuate: ``nova_compute.evacuate host1`` (force down, plan against
  placement, evacuate with bounded concurrency, read each back);
- the operator's CLI loop: ``openstack compute service set --down host1
  nova-compute``, then ``openstack server evacuate <id>`` for one server after another,
  as README-less operators write it;
- hastack identity: what mode identity does once Pacemaker started host1's compute
  on a survivor: a new nova-compute with ``host=host1`` (started here by the bench, as
  Pacemaker's agent would), then ``nova_compute.takeover host1`` (hard reboots where
  the guest did not come back; the fake driver never resumes one).

A watcher polls Nova every 0.2 s and notes when each server is back (ACTIVE, no task,
running guest; off host1 for the evacuations, on host1 for the identity): per VM
p50/p95/max and all back, from the kill. Not measured here: the detection and fencing
before any of them (the end-to-end figures in tests/integration/test_vm_failover.py
include them).

Masakari is not installed here; its documented timing is printed beside: masakari-
monitors' host monitor polls every ``[host] monitoring_interval`` = 60 s
(masakarimonitors/conf/host.py), and masakari-engine's host-failure flow disables the
compute service, then sleeps ``wait_period_after_service_update`` = 180 s
(masakari/conf/engine.py, engine/drivers/taskflow/host_failure.py) before the first
evacuation: 180-240 s before Nova does any work.

Targets (issue 17): 50 VMs back in at most 3x the time of one; at least 5x faster than
the sequential CLI loop.

Usage: ``python -m bench.evacuation [--vms 1,10,50] [--concurrency 8]``
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from bench.failover import pct
from lab import novalab, procs, saltlocal

MASAKARI_MONITOR_INTERVAL = 60
MASAKARI_WAIT_AFTER_SERVICE_UPDATE = 180


class Watcher:
    """When each server first counts as back, polling Nova every 0.2 s. With
    ``after_down``, a server counts only once it was seen not running first (on its own
    host Nova shows the dead guest running until the new compute looks)."""

    def __init__(self, conn, ids, back, after_down=False):
        self.conn, self.ids, self.back = conn, set(ids), back
        self.after_down = after_down
        self.down = set()
        self.at = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, t0):
        self.t0 = t0
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set() and len(self.at) < len(self.ids):
            for server in self.conn.compute.servers(details=True, all_projects=True):
                if server.id not in self.ids or server.id in self.at:
                    continue
                if not running(server):
                    self.down.add(server.id)
                if self.back(server) and (not self.after_down or server.id in self.down):
                    self.at[server.id] = time.monotonic() - self.t0
            time.sleep(0.2)

    def wait(self, timeout):
        self._thread.join(timeout)
        self._stop.set()
        missing = len(self.ids) - len(self.at)
        if missing:
            raise RuntimeError(f"{missing} of {len(self.ids)} servers not back in {timeout} s")
        return sorted(self.at.values())


def running(server):
    return server.status == "ACTIVE" and server.task_state is None and server.power_state == 1


def boot(facts, conn, n, prefix, batch=10):
    """N servers on host1 (setting up is not what is measured); their IDs."""
    names = [f"{prefix}-{i}" for i in range(n)]
    return [s.id for s in novalab.boot(facts, conn, "host1", names, batch=batch)]


def delete(conn, ids):
    """Delete the servers and wait until Nova has forgotten them."""
    for server_id in ids:
        conn.compute.delete_server(server_id)
    gone = set(ids)
    procs.until(
        lambda: not [s for s in conn.compute.servers(all_projects=True) if s.id in gone], 120, 0.5
    )


def reset(facts, conn, funcs, ids):
    """host1 back (its compute cleans up, the service is enabled), the servers deleted."""
    since = time.time()
    novalab.start_compute(facts, "host1")
    funcs["nova_compute.service_restore"]("host1", since, timeout=120)
    delete(conn, ids)


def cli(facts, *args):
    argv = [
        os.path.join(os.path.dirname(sys.executable), "openstack"),
        "--os-auth-type",
        "admin_token",
        "--os-endpoint",
        facts["compute_url"],
        "--os-token",
        facts["token"],
        "--os-compute-api-version",
        "2.90",
        *args,
    ]
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


def run_hastack(facts, conn, funcs, n, concurrency):
    ids = boot(facts, conn, n, "hv")
    novalab.stop_compute(facts, "host1", kill=True)
    t0 = time.monotonic()
    watch = Watcher(conn, ids, lambda s: running(s) and s.compute_host != "host1").start(t0)
    out = funcs["nova_compute.evacuate"]("host1", concurrency=concurrency, timeout=600)
    times = watch.wait(600)
    assert len(out["evacuated"]) == n, out
    reset(facts, conn, funcs, ids)
    return times


def run_cli_loop(facts, conn, funcs, n):
    ids = boot(facts, conn, n, "cv")
    novalab.stop_compute(facts, "host1", kill=True)
    t0 = time.monotonic()
    watch = Watcher(conn, ids, lambda s: running(s) and s.compute_host != "host1").start(t0)
    cli(facts, "compute", "service", "set", "--down", "host1", "nova-compute")
    for server_id in ids:
        cli(facts, "server", "evacuate", server_id)
    times = watch.wait(900)
    reset(facts, conn, funcs, ids)
    return times


def run_identity(facts, conn, funcs, n, concurrency):
    ids = boot(facts, conn, n, "iv")
    novalab.stop_compute(facts, "host1", kill=True)
    t0, since = time.monotonic(), time.time()
    watch = Watcher(conn, ids, lambda s: running(s) and s.compute_host == "host1", after_down=True)
    # Pacemaker's part: the identity started on a survivor (a fresh state path).
    conf = novalab.compute_conf(
        facts,
        "host1",
        path=os.path.join(facts["dir"], f"compute-host1-takeover-{n}.conf"),
        state_path=os.path.join(facts["dir"], "computes", f"host1-takeover-{n}"),
    )
    novalab.start_compute(facts, "host1", conf, wait=False)
    watch.start(t0)
    out = funcs["nova_compute.takeover"]("host1", since, timeout=300, concurrency=concurrency)
    times = watch.wait(600)
    assert not out["failed"], out
    delete(conn, ids)
    return times, out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.evacuation")
    parser.add_argument("--vms", default="1,10,50")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    sizes = [int(v) for v in args.vms.split(",")]
    d = tempfile.mkdtemp(prefix="hastack-bench-nova-", dir="/var/tmp")
    facts = novalab.start(d)
    conn = novalab.connection(facts)
    minion = saltlocal.Minion(
        os.path.join(d, "minion"),
        "bench",
        {"hastack": {"openstack": {"cloud": facts["cloud"]}}},
        example=False,
    )
    funcs, _ = minion.loader({"hastack": {"openstack": {"cloud": facts["cloud"]}}})
    results = {}
    try:
        for n in sizes:
            results[n] = {}
            results[n]["hastack evacuate"] = run_hastack(facts, conn, funcs, n, args.concurrency)
            print(
                f"N={n} hastack evacuate: all back in {max(results[n]['hastack evacuate']):.2f} s"
            )
            results[n]["CLI loop"] = run_cli_loop(facts, conn, funcs, n)
            print(f"N={n} CLI loop: all back in {max(results[n]['CLI loop']):.2f} s")
            identity, _ = run_identity(facts, conn, funcs, n, args.concurrency)
            results[n]["hastack identity"] = identity
            print(f"N={n} hastack identity: all back in {max(identity):.2f} s", flush=True)
            # run_identity left host1 served by the takeover's process: that is host1 now.
    finally:
        novalab.stop(d)
        shutil.rmtree(d, ignore_errors=True)

    print(
        f"\nVMs back after their compute died (lab Nova, fake driver, concurrency {args.concurrency})"
    )
    print("seconds from the kill; per VM p50 / p95 / max, and all back")
    print(f"{'N':>4}  {'path':<18} {'p50':>7} {'p95':>7} {'max':>7}")
    for n, paths in results.items():
        for path, times in paths.items():
            print(
                f"{n:>4}  {path:<18} {pct(times, 50):7.2f} {pct(times, 95):7.2f} {max(times):7.2f}"
            )
    floor = MASAKARI_WAIT_AFTER_SERVICE_UPDATE
    print(
        f"{'':>4}  {'Masakari (docs)':<18} first evacuate call after "
        f"{floor}-{floor + MASAKARI_MONITOR_INTERVAL} s (monitoring_interval "
        f"{MASAKARI_MONITOR_INTERVAL} s + wait_period_after_service_update {floor} s)"
    )
    print()
    one = min(sizes)
    for n, paths in results.items():
        ours, loop = max(paths["hastack evacuate"]), max(paths["CLI loop"])
        line = f"N={n}: hastack evacuate {ours:.2f} s, CLI loop {loop:.2f} s: {loop / ours:.1f}x faster"
        if n != one:
            base = max(results[one]["hastack evacuate"])
            line += f"; {ours / base:.1f}x the time of N={one} ({base:.2f} s)"
        line += f"; identity {max(paths['hastack identity']):.2f} s"
        print(line)
    print("targets: 50 VMs within 3x the time of one; at least 5x faster than the sequential loop")


if __name__ == "__main__":
    main()

"""Benchmark: how fast does a survivor learn that a node died? The two node-side ways
issue 11 names, measured side by side on the live 3-node Pacemaker lab, kill after kill.

- A Pacemaker alert agent (``<alerts>`` in the CIB, the agent run by Pacemaker on each
  node as user hacluster): the time its ``node`` alert for the dead node runs on bob.
- crm_mon polled on bob, as the ``hastack_cluster`` beacon does: the first reading that
  shows the node offline (polled every 0.1 s here: the beacon's 1 s interval adds up to
  1 s, 0.5 s on average).

What it then costs to reach the master is measured in LAB-NOTES and bench.failover: an
alert agent runs as hacluster and cannot use the minion's own connection (root's IPC
socket), so it needs a ``salt-call event.send`` (about 2.5 s of CLI start and
authentication); the beacon sends from inside the running minion (milliseconds).

Usage: ``python -m bench.detection [--kills 3]``
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

from lab import pcmklab

AGENT = """#!/bin/sh
# A Pacemaker alert agent that only records when it ran (bench.detection).
[ "$CRM_alert_kind" = node ] || exit 0
echo "$(date +%s.%N) $(hostname) $CRM_alert_node $CRM_alert_desc" >> {log}
"""


def offline_seen(facts, node, seen_from):
    out = pcmklab.crm_mon(facts, seen_from)
    if not out:
        return False
    for n in ET.fromstring(out).iter("node"):
        if n.get("name") == node:
            return n.get("online") != "true"
    return False


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args(argv)
    d = tempfile.mkdtemp(prefix="hastack-detect-", dir="/var/tmp")
    os.chmod(d, 0o755)
    shared = os.path.join(d, "shared")
    os.makedirs(shared, mode=0o777)
    os.chmod(shared, 0o777)  # the agent runs as hacluster
    log, agent = os.path.join(shared, "alerts.log"), os.path.join(shared, "agent.sh")
    with open(agent, "w", encoding="utf-8") as fh:
        fh.write(AGENT.format(log=log))
    os.chmod(agent, 0o755)
    facts = pcmklab.start(os.path.join(d, "pcmk"))
    alerts, polls = [], []
    try:
        xml = (
            f'<alerts><alert id="al_probe" path="{agent}"><select><select_nodes/></select>'
            "</alert></alerts>"
        )
        subprocess.run(
            pcmklab.node_argv(
                facts, "bob", ["cibadmin", "--create", "--scope", "configuration", "-X", xml]
            ),
            check=True,
            capture_output=True,
        )
        for _ in range(args.kills):
            time.sleep(3)
            open(log, "w").close()  # noqa: SIM115
            os.chmod(log, 0o666)  # the agent appends as hacluster
            killed = time.time()
            pcmklab.kill(facts, "alice")
            polled = None
            while polled is None and time.time() - killed < 90:
                if offline_seen(facts, "alice", "bob"):
                    polled = time.time() - killed
                time.sleep(0.1)
            time.sleep(2)
            with open(log, encoding="utf-8") as fh:
                lines = [ln.split() for ln in fh if ln.strip()]
            fired = [
                float(ln[0]) - killed
                for ln in lines
                if ln[1] == "bob" and ln[2] == "alice" and ln[3] == "lost"
            ]
            if polled is None:
                raise RuntimeError("crm_mon on bob did not show alice offline within 90 s")
            polls.append(polled)
            alerts.append(min(fired) if fired else None)
            print(
                f"kill: crm_mon on bob shows alice offline after {polled:.2f} s; "
                f"the alert agent ran on bob after {alerts[-1]:.2f} s",
                flush=True,
            )
            pcmklab.restart(facts, "alice")
    finally:
        pcmklab.stop(facts["dir"])
        shutil.rmtree(d, ignore_errors=True)
    ok = [a for a in alerts if a is not None]
    print(
        f"\nmedian: alert agent {sorted(ok)[len(ok) // 2]:.2f} s, "
        f"crm_mon poll {sorted(polls)[len(polls) // 2]:.2f} s after the kill"
    )


if __name__ == "__main__":
    main()

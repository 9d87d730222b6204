"""Benchmark: N cephx users and N pools configured by hastack vs the recipe's manual way.

Both run in one process, on the same lab cluster, one after the other, on disjoint
names (``m-*`` for manual, ``h-*`` for hastack):

- manual: the workshop's shell commands, one after the other: per pool
  ``ceph osd pool create`` + ``rbd pool init``; per user ``ceph auth get-or-create``
  writing the keyring with ``-o``, then ``chown``/``chmod``; then ceph.conf written
  by hand (one heredoc).
- hastack: ``salt-call --local state.apply hastack`` with a pillar of the same N
  users and pools (keys from pillar, exact caps, owner/group/mode, ceph.conf).

Then the idempotent re-run of each: the manual script run again (it is idempotent
at the CLI level: create on an existing pool and get-or-create are no-ops) and a
second hastack apply (reports zero changes). Ratios are manual / hastack: above 1
means hastack is faster.

Usage: ``python -m bench.ceph_client [--n N] [--rounds R]`` (``make bench``).
"""

import argparse
import base64
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile

from bench import timed
from lab import cephlab, saltlocal


def fake_key(i):
    secret = f"FAKE-bench-{i:05d}".encode()
    return base64.b64encode(struct.pack("<HIIH", 1, 0, 0, 16) + secret).decode()


def manual_script(facts, n, out_dir):
    conf = facts["conf"]
    lines = ["set -e", f"export CEPH_CONF={conf}"]
    for i in range(n):
        lines += [f"ceph osd pool create m-pool{i} 8 >/dev/null 2>&1",
                  f"rbd -c {conf} pool init m-pool{i}"]
    for i in range(n):
        keyring = os.path.join(out_dir, f"ceph.client.m-user{i}.keyring")
        lines += [
            f"ceph auth get-or-create client.m-user{i} mon 'profile rbd' "
            f"osd 'profile rbd pool=m-pool{i}' -o {keyring}",
            f"chown root:root {keyring}", f"chmod 0640 {keyring}",
        ]
    sections = "\n".join(f"[client.m-user{i}]\nkeyring = {out_dir}/ceph.client.m-user{i}.keyring"
                         for i in range(n))
    lines.append(f"cat > {out_dir}/ceph.conf <<'EOF'\n[global]\nfsid = {facts['fsid']}\n"
                 f"mon_host = {facts['mon_host']}\n{sections}\nEOF")
    return "\n".join(lines) + "\n"


def bench_pillar(facts, n, conf_dir):
    return {"hastack": {
        "site": "bench", "roles": ["controller"],
        "ceph": {
            "fsid": facts["fsid"], "mon_host": facts["mon_host"], "conf_dir": conf_dir,
            "admin_keyring": facts["admin_keyring"], "admin_minion": "bench",
            "pools": {f"h-pool{i}": {"pg_num": 8, "application": "rbd"} for i in range(n)},
            "users": {f"h-user{i}": {
                "key": fake_key(i),
                "caps": {"mon": "profile rbd", "osd": f"profile rbd pool=h-pool{i}"},
                "keyring": {"owner": "root", "group": "root", "mode": "0640"},
                "roles": ["controller"]} for i in range(n)},
        }}}



def run_bash(script):
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"manual script failed: {proc.stderr[-500:]}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10, help="users and pools (each)")
    parser.add_argument("--rounds", type=int, default=3, help="idempotent re-runs to take the median of")
    args = parser.parse_args(argv)

    work = tempfile.mkdtemp(prefix="hastack-bench-")
    facts = cephlab.start(os.path.join(work, "ceph"))
    try:
        manual_dir = os.path.join(work, "manual")
        os.makedirs(manual_dir)
        script = manual_script(facts, args.n, manual_dir)
        conf_dir = os.path.join(work, "hastack")
        minion = saltlocal.Minion(os.path.join(work, "minion"), "bench",
                                  bench_pillar(facts, args.n, conf_dir), example=False)

        t_startup, _ = timed(lambda: minion.call("test.ping"))
        t_manual, _ = timed(lambda: run_bash(script))
        t_hastack, (rc, ret) = timed(lambda: minion.call("state.apply", "hastack"))
        if rc != 0:
            raise RuntimeError(f"hastack apply failed: {ret}")
        changed = len(saltlocal.changes_by_id(ret))

        t_manual_again = statistics.median(timed(lambda: run_bash(script))[0]
                                           for _ in range(args.rounds))
        again = []
        for _ in range(args.rounds):
            t, (rc, ret) = timed(lambda: minion.call("state.apply", "hastack"))
            if rc != 0 or saltlocal.changes_by_id(ret):
                raise RuntimeError("hastack re-apply was not idempotent")
            again.append(t)
        t_hastack_again = statistics.median(again)

        print(f"hastack ceph_client benchmark: {args.n} users + {args.n} pools, one lab cluster, "
              f"{args.rounds} re-run rounds")
        print(f"  salt-call startup alone (test.ping):       {t_startup:6.2f} s")
        print(f"  first configuration   manual {t_manual:6.2f} s   hastack {t_hastack:6.2f} s "
              f"({changed} states changed)   ratio manual/hastack {t_manual / t_hastack:5.2f}")
        print(f"  idempotent re-run     manual {t_manual_again:6.2f} s   hastack {t_hastack_again:6.2f} s"
              f"                      ratio manual/hastack {t_manual_again / t_hastack_again:5.2f}")
        print("  (ratio > 1: hastack faster. hastack also verifies every change and checks keys, "
              "caps, owner, group and mode; the manual way checks nothing.)")
    finally:
        cephlab.stop(os.path.join(work, "ceph"))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

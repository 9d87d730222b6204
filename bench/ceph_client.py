"""Benchmark: N cephx users and N pools configured by hastack vs the recipe's manual way.

All in one run, on one lab cluster, on disjoint names, for each N (default 10 and 50):

- manual: the workshop's shell commands, one after the other: per pool
  ``ceph osd pool create`` + ``rbd pool init``; per user ``ceph auth get-or-create``
  writing the keyring with ``-o``, then ``chown``/``chmod``; then ceph.conf written
  by hand (one heredoc).
- hastack over the CLI and hastack over librados: ``state.apply hastack`` through the
  Salt loader in this process (a minion's work without salt-call's start-up), with a
  pillar of the same N users and pools (keys from pillar, exact caps, owner, group and
  mode, ceph.conf), ``backend: cli`` and ``backend: librados``.

Then the idempotent re-run of each (median of ``--rounds``): the manual script again (a
no-op at the CLI level: create on an existing pool and get-or-create change nothing)
and a second apply (zero changes). Ratios are manual / hastack: above 1 means hastack
is faster. For the librados re-run it also shows where the time goes: rendering the
pillar and the SLS versus running the states, and the states' Ceph share.

Usage: ``python -m bench.ceph_client [--n 10,50] [--rounds R]`` (``make bench``).
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

# Placement groups per pool, the same both ways: small enough that 3 x 60 pools stay
# under the lab's limit (mon_max_pg_per_osd 250 x 3 OSDs).
PG_NUM = 2


def fake_key(prefix, i):
    secret = f"FAKE-{prefix[:4]:<4}-{i:05d}!"[:16].encode()
    return base64.b64encode(struct.pack("<HIIH", 1, 0, 0, 16) + secret).decode()


def manual_script(facts, n, out_dir, prefix="m"):
    conf = facts["conf"]
    lines = ["set -e", f"export CEPH_CONF={conf}"]
    for i in range(n):
        lines += [
            f"ceph osd pool create {prefix}-pool{i} {PG_NUM} >/dev/null 2>&1",
            f"rbd -c {conf} pool init {prefix}-pool{i}",
        ]
    for i in range(n):
        keyring = os.path.join(out_dir, f"ceph.client.{prefix}-user{i}.keyring")
        lines += [
            f"ceph auth get-or-create client.{prefix}-user{i} mon 'profile rbd' "
            f"osd 'profile rbd pool={prefix}-pool{i}' -o {keyring}",
            f"chown root:root {keyring}",
            f"chmod 0640 {keyring}",
        ]
    sections = "\n".join(
        f"[client.{prefix}-user{i}]\nkeyring = {out_dir}/ceph.client.{prefix}-user{i}.keyring"
        for i in range(n)
    )
    lines.append(
        f"cat > {out_dir}/ceph.conf <<'EOF'\n[global]\nfsid = {facts['fsid']}\n"
        f"mon_host = {facts['mon_host']}\n{sections}\nEOF"
    )
    return "\n".join(lines) + "\n"


def bench_pillar(facts, n, conf_dir, prefix="h", backend="auto"):
    return {
        "hastack": {
            "site": "bench",
            "roles": ["controller"],
            "ceph": {
                "fsid": facts["fsid"],
                "mon_host": facts["mon_host"],
                "conf_dir": conf_dir,
                "admin_keyring": facts["admin_keyring"],
                "admin_minion": "bench",
                "backend": backend,
                "pools": {
                    f"{prefix}-pool{i}": {"pg_num": PG_NUM, "application": "rbd"} for i in range(n)
                },
                "users": {
                    f"{prefix}-user{i}": {
                        "key": fake_key(prefix, i),
                        "caps": {"mon": "profile rbd", "osd": f"profile rbd pool={prefix}-pool{i}"},
                        "keyring": {"owner": "root", "group": "root", "mode": "0640"},
                        "roles": ["controller"],
                    }
                    for i in range(n)
                },
            },
        }
    }


def run_bash(script):
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"manual script failed: {proc.stderr[-500:]}")


def applier(work, facts, n, backend, prefix):
    """state.apply hastack through the loader, as a minion with this pillar runs it."""
    minion = saltlocal.Minion(
        os.path.join(work, f"minion-{prefix}"),
        "bench",
        bench_pillar(facts, n, os.path.join(work, prefix), prefix, backend),
        example=False,
    )
    funcs, _ = minion.loader()

    def apply():
        ret = funcs["state.apply"]("hastack")
        failed = (
            [ret]
            if not isinstance(ret, dict)
            else [v["comment"] for v in ret.values() if v["result"] is False]
        )
        if failed:
            raise RuntimeError(f"hastack apply ({backend}) failed: {str(failed[0])[:500]}")
        return ret

    return minion, apply


def state_seconds(ret, modules=None):
    """Seconds the states of ``ret`` took (of the given state modules only)."""
    return (
        sum(
            v.get("duration", 0)
            for k, v in ret.items()
            if modules is None or k.split("_|-")[0] in modules
        )
        / 1000
    )


def measure(facts, work, n, rounds):
    manual_dir = os.path.join(work, f"manual{n}")
    os.makedirs(manual_dir)
    script = manual_script(facts, n, manual_dir, prefix=f"m{n}")
    row = {}
    row["manual"] = timed(lambda: run_bash(script))[0]
    row["manual_again"] = statistics.median(
        timed(lambda: run_bash(script))[0] for _ in range(rounds)
    )
    for backend in ("cli", "librados"):
        _, apply = applier(work, facts, n, backend, f"{backend[0]}{n}")
        first, ret = timed(apply)
        changed = len(saltlocal.changes_by_id(ret))
        again = []
        for _ in range(rounds):
            t, ret = timed(apply)
            if saltlocal.changes_by_id(ret):
                raise RuntimeError(f"the {backend} re-apply was not idempotent")
            again.append((t, ret))
        again.sort(key=lambda item: item[0])
        t_again, ret_again = again[len(again) // 2]
        row[backend] = first
        row[f"{backend}_again"] = t_again
        row[f"{backend}_changed"] = changed
        if backend == "librados":
            row["states"] = state_seconds(ret_again)
            row["ceph_states"] = state_seconds(ret_again, ("ceph_client",))
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", default="10,50", help="users and pools (each); a comma list")
    parser.add_argument(
        "--rounds", type=int, default=3, help="idempotent re-runs to take the median of"
    )
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.n.split(",")]

    work = tempfile.mkdtemp(prefix="hastack-bench-")
    facts = cephlab.start(os.path.join(work, "ceph"))
    try:
        rows = {n: measure(facts, work, n, args.rounds) for n in sizes}
    finally:
        cephlab.stop(os.path.join(work, "ceph"))
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"hastack ceph_client benchmark: N users + N pools on one lab cluster, hastack through "
        f"the Salt loader, re-runs: median of {args.rounds}"
    )
    print(
        f"  {'':24}{'manual':>9}{'hastack cli':>13}{'hastack librados':>18}"
        f"{'manual/cli':>12}{'manual/librados':>17}"
    )
    for n, row in rows.items():
        for label, suffix in (("first configuration", ""), ("idempotent re-run", "_again")):
            manual, cli, lib = row["manual" + suffix], row["cli" + suffix], row["librados" + suffix]
            print(
                f"  N={n:<3} {label:<18}{manual:8.2f}s{cli:12.2f}s{lib:17.2f}s"
                f"{manual / cli:12.1f}{manual / lib:17.1f}"
            )
        rest = row["librados_again"] - row["states"]
        print(
            f"        librados re-run: {row['states']:.2f} s in states ({row['ceph_states']:.2f} s "
            f"in Ceph states), {rest:.2f} s rendering pillar and SLS and compiling; first "
            f"configuration changed {row['librados_changed']} states"
        )
    print(
        "  (ratio > 1: hastack faster. hastack also verifies every change and checks keys, "
        "caps, owner, group and mode; the manual way checks nothing.)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

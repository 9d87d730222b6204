"""Benchmark: a gated rollout against Salt's own ways to apply one change to N minions.

For each N (4, 8 and 16 minions in two sites, each site with its own real Ceph cluster;
``lab.rolloutlab``: a real salt-master and real minions), the same change (each site's
client.cinder key rotated: the cluster, every keyring) is applied three ways, one after
the other on the same minions, each time to a new key:

- ``salt '*' state.apply hastack``: every minion at once, no gate;
- ``salt -b B '*' state.apply hastack``: Salt's batches of B (a sliding window);
- ``salt-run rollout.apply hastack``: sites in order, one canary each, then batches of
  B, all gates after every step (Ceph health, Pacemaker, open incidents,
  hastack.validate).

The ratio rollout / ``salt -b`` is the price of the order, the gates and the
bookkeeping. Every run is the command line an operator types.

Usage: ``python -m bench.rollout [--sizes 4 8 16] [--batch 2]``
"""

import argparse
import os
import shutil
import subprocess
import tempfile

from bench import timed
from lab import rolloutlab


def key(n, site):
    """A valid cephx key for round ``n`` of ``site`` (an obvious fake)."""
    import base64  # pylint: disable=import-outside-toplevel

    secret = f"{site}-bench-{n:06d}!"[:16].ljust(16, "!").encode()
    return base64.b64encode(bytes([1, 0]) + bytes(8) + bytes([16, 0]) + secret).decode()


def run(lab, argv):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0 or "No minions matched" in proc.stdout + proc.stderr:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def measure(size, batch, rounds):
    d = tempfile.mkdtemp(prefix="hastack-bench-rollout-", dir="/var/tmp")
    lab = rolloutlab.start(d, per_site=size // 2, libvirt=False)
    try:
        pillar = lab.base_pillar()
        for site in rolloutlab.SITES:
            pillar["common"]["hastack"]["sites"][site]["rollout"]["batch"] = batch
        salt = [os.path.join(rolloutlab.BIN, "salt"), "-c", lab.master_conf, "--out", "quiet"]
        salt_run = [
            os.path.join(rolloutlab.BIN, "salt-run"),
            "-c",
            lab.master_conf,
            "--out",
            "quiet",
        ]
        ways = {
            "salt '*'": salt + ["-t", "300", "*", "state.apply", "hastack"],
            f"salt -b {batch}": salt + ["-b", str(batch), "*", "state.apply", "hastack"],
            "rollout": salt_run + ["rollout.apply", "hastack"],
        }
        figures = {name: [] for name in ways}
        n = 0
        for _ in range(rounds):
            for name, argv in ways.items():
                n += 1
                lab.write_pillar(
                    rolloutlab.changed_pillar(pillar, **{s: key(n, s) for s in rolloutlab.SITES})
                )
                seconds, _ = timed(lambda argv=argv: run(lab, argv))
                figures[name].append(seconds)
        return {name: min(values) for name, values in figures.items()}
    finally:
        rolloutlab.remove(lab)
        shutil.rmtree(d, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    print(
        f"one key rotation over N minions in two sites, batches of {args.batch} (best of {args.rounds})"
    )
    print(
        f"{'N':>3} {'salt *':>8} {'salt -b':>8} {'rollout':>8} {'rollout/salt -b':>16} {'rollout/salt *':>15}"
    )
    for size in args.sizes:
        got = measure(size, args.batch, args.rounds)
        plain, batched, gated = got["salt '*'"], got[f"salt -b {args.batch}"], got["rollout"]
        print(
            f"{size:>3} {plain:>7.1f}s {batched:>7.1f}s {gated:>7.1f}s "
            f"{gated / batched:>15.2f}x {gated / plain:>14.2f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()

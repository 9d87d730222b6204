"""Benchmark: the libvirt secret for M computes, hastack vs the recipe's virsh commands.

Every compute is a real, isolated libvirtd (``lab.libvirtlab``); all run at once on
this machine. Measured side by side in one run:

- recipe: per compute ``virsh secret-define --file secret.xml`` then ``virsh
  secret-set-value --secret UUID --base64 KEY`` (the key in argv: what hastack
  replaces; measured here only as the peer's cost).
- hastack, whole run: per compute ``salt-call --local state.sls hastack.libvirt``
  (Salt start-up, pillar, render, validate, compare, set, verify).
- hastack, state only: ``libvirt_secret.present`` through the Salt loader in one
  process, per compute (compare, set through the API, read back and verify): the
  work a minion does beyond starting Salt.

Then a full idempotent highstate of a compute node (charlie: ceph.conf, cinder's
keyring, nova.conf, the secret) against the recipe's re-run for a compute (the two
virsh commands plus writing the keyring, ceph.conf and nova's lines by hand).
Ratios are recipe / hastack: above 1 means hastack is faster.

Usage: ``python -m bench.libvirt_secret [--computes M]``
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench import timed
from lab import cephlab, libvirtlab, saltlocal

UUID = "95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6"
CINDER_KEY = "AQAAAAAAAAAAABAARkFLRS1jaW5kZXIta2V5IQ=="


def virsh_define(uri, xml_path):
    subprocess.run(
        ["virsh", "-q", "-c", uri, "secret-define", "--file", xml_path],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["virsh", "-q", "-c", uri, "secret-set-value", "--secret", UUID, "--base64", CINDER_KEY],
        check=True,
        capture_output=True,
    )


def undefine_all(uri):
    out = subprocess.run(
        ["virsh", "-q", "-c", uri, "secret-list"], check=True, capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if line.strip():
            subprocess.run(
                ["virsh", "-q", "-c", uri, "secret-undefine", line.split()[0]],
                check=True,
                capture_output=True,
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--computes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="hastack-bench-libvirt-")
    labs = []
    facts = cephlab.start(os.path.join(work, "ceph"))
    try:
        for i in range(args.computes):
            labs.append(libvirtlab.start(os.path.join(work, f"libvirt-{i}")))
        xml = os.path.join(work, "secret.xml")
        with open(xml, "w", encoding="utf-8") as fh:
            fh.write(
                f"<secret ephemeral='no' private='no'><uuid>{UUID}</uuid><usage type='ceph'>"
                "<name>client.cinder secret</name></usage></secret>"
            )
        minions = []
        for i, lab in enumerate(labs):
            root = os.path.join(work, f"compute-{i}")
            overlay = saltlocal.lab_overlay(
                facts, os.path.join(root, "etc-ceph"), os.path.join(root, "etc"), lab["uri"]
            )
            minions.append(saltlocal.Minion(root, "charlie", overlay))

        def reset():
            for lab in labs:
                undefine_all(lab["uri"])

        recipe, whole, state_only = [], [], []
        _, states = minions[0].loader(
            pillar={"hastack": {"ceph": {"users": {"cinder": {"key": CINDER_KEY}}}}}
        )
        for _ in range(args.rounds):
            reset()
            recipe.append(timed(lambda: [virsh_define(lab["uri"], xml) for lab in labs])[0])
            reset()

            def salt_calls():
                for minion in minions:
                    rc, ret = minion.call("state.sls", "hastack.libvirt")
                    if rc != 0:
                        raise RuntimeError(f"hastack.libvirt failed: {ret}")

            whole.append(timed(salt_calls)[0])
            reset()

            def present_all():
                for lab in labs:
                    ret = states["libvirt_secret.present"](
                        name=UUID,
                        ceph_user="cinder",
                        key_pillar="hastack:ceph:users:cinder:key",
                        uri=lab["uri"],
                    )
                    if not ret["result"] or not ret["changes"]:
                        raise RuntimeError(f"libvirt_secret.present: {ret['comment']}")

            state_only.append(timed(present_all)[0])

        # A compute's idempotent highstate vs re-running the recipe's compute steps.
        charlie = minions[0]
        rc, ret = charlie.call("state.apply", "hastack")
        if rc != 0:
            raise RuntimeError(f"charlie's highstate failed: {ret}")
        rerun_dir = os.path.join(work, "recipe-compute")
        os.makedirs(rerun_dir)
        lab0 = labs[0]["uri"]
        script = (
            f"virsh -q -c {lab0} secret-define --file {xml} >/dev/null\n"
            f"virsh -q -c {lab0} secret-set-value --secret {UUID} --base64 {CINDER_KEY} >/dev/null 2>&1\n"
            f"printf '[client.cinder]\\n\\tkey = {CINDER_KEY}\\n' > {rerun_dir}/ceph.client.cinder.keyring\n"
            f"chmod 0640 {rerun_dir}/ceph.client.cinder.keyring\n"
            f"printf '[global]\\nfsid = {facts['fsid']}\\nmon_host = {facts['mon_host']}\\n' > {rerun_dir}/ceph.conf\n"
            f"printf '[libvirt]\\nimages_type = rbd\\nimages_rbd_pool = vms\\nrbd_user = cinder\\n"
            f"rbd_secret_uuid = {UUID}\\n' > {rerun_dir}/nova.conf\n"
        )
        recipe_rerun, hastack_rerun = [], []
        for _ in range(args.rounds):
            recipe_rerun.append(
                timed(lambda: subprocess.run(["bash", "-c", script], check=True))[0]
            )

            def highstate():
                rc, ret = charlie.call("state.apply", "hastack")
                if rc != 0 or saltlocal.changes_by_id(ret):
                    raise RuntimeError("charlie's re-apply was not idempotent")

            hastack_rerun.append(timed(highstate)[0])

        med = statistics.median
        print(
            f"hastack libvirt_secret benchmark: {args.computes} computes (one real libvirtd each), "
            f"median of {args.rounds} rounds"
        )
        print(
            f"  secret for {args.computes} computes   recipe (virsh) {med(recipe):6.2f} s   "
            f"hastack salt-call per compute {med(whole):6.2f} s   ratio {med(recipe) / med(whole):5.2f}"
        )
        print(
            f"  {'':25}recipe (virsh) {med(recipe):6.2f} s   "
            f"hastack state via loader     {med(state_only):6.2f} s   ratio {med(recipe) / med(state_only):5.2f}"
        )
        print(
            f"  compute node re-run       recipe (shell)  {med(recipe_rerun):5.2f} s   "
            f"hastack idempotent highstate {med(hastack_rerun):6.2f} s   "
            f"ratio {med(recipe_rerun) / med(hastack_rerun):5.2f}"
        )
        print(
            "  (ratio > 1: hastack faster. The recipe puts the key in virsh's argv and verifies "
            "nothing; hastack compares, sets through the API and reads back.)"
        )
    finally:
        for i in range(len(labs)):
            libvirtlab.stop(os.path.join(work, f"libvirt-{i}"))
        cephlab.stop(os.path.join(work, "ceph"))
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

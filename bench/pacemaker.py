"""Benchmark: the workshop's Listing 2 and one constraint shift, hastack vs crm shell and pcs.

The same configuration (Listing 2 with ``ocf:pacemaker:Dummy`` agents and no instance
parameters, which pcs refuses for Dummy) goes into a fresh CIB file that knows the nodes
alice, bob and charlie, as a live cluster's CIB does. Measured side by side in one run:

- crm shell: ``crm configure load update FILE`` (the recipe's way: one call).
- pcs: ``pcs -f CIB ...``, one call per property set, resource, clone and constraint
  (pcs has no bulk load of this shape).
- hastack, whole run: ``salt-call --local state.sls hastack.pacemaker`` (Salt start-up,
  pillar, render, validate, compare, crm_verify, one epoch-guarded patch).
- hastack, state only: ``pacemaker.configured`` through the Salt loader in one process.

Each resulting CIB is compared with the declaration through ``pacemaker.diff`` and must
hold it (else the benchmark fails). Then one shift of host1 from alice
to bob: ``crm configure location`` against ``pacemaker.location_set`` (the bare write)
and against ``pacemaker.shift_away`` (plan, two simulations, write).
Last, a shift on a layout that is not the workshop's (tests/data/cibs/four-node.xml, built
with pcs, with tests/data/four_node_pillar.yaml applied): ctl-a fails and two groups, a
clone, a promotable clone's promoted instance and a VIP that follows it move. Peer: the
same location constraints written with one ``crm configure load update`` (what an operator
who already knows the targets types); hastack: ``pacemaker.shift_away`` (allocation
scores, target choice, simulation until every target holds, one write).
Ratios are peer / hastack: above 1 means hastack is faster.

Usage: ``python -m bench.pacemaker [--rounds N]``
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from bench import timed
from lab import pcmklab, saltlocal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODES = ["alice", "bob", "charlie"]


def empty_cib(path, nodes=NODES):
    """``cibadmin --empty > path``, then the nodes (ids 1..n) as a live cluster's CIB has them."""
    with open(path, "w", encoding="utf-8") as fh:
        subprocess.run(["cibadmin", "--empty"], stdout=fh, check=True)
    env = dict(os.environ, CIB_file=path)
    for nodeid, node in enumerate(nodes, start=1):
        subprocess.run(
            ["cibadmin", "--create", "-o", "nodes", "-X", f'<node id="{nodeid}" uname="{node}"/>'],
            env=env,
            check=True,
        )


def _op_words(spec):
    words = []
    for op, attrs in (spec.get("ops") or {}).items():
        words += ["op", op] + [f"{k}={v}" for k, v in attrs.items()]
    return words


def crm_text(pcmk):
    """Listing 2 in crm shell syntax, as the workshop writes it."""
    lines = [
        "property " + " ".join(f"{k}={v}" for k, v in pcmk["properties"].items()),
        "rsc_defaults " + " ".join(f"{k}={v}" for k, v in pcmk["resource_defaults"].items()),
    ]
    for rid, spec in pcmk["primitives"].items():
        lines.append(" ".join(["primitive", rid, spec["agent"]] + _op_words(spec)))
    for gid, members in pcmk["groups"].items():
        lines.append(" ".join(["group", gid] + members))
    for cid, rid in pcmk["clones"].items():
        lines.append(f"clone {cid} {rid}")
    for lid, loc in pcmk["locations"].items():
        lines.append(f"location {lid} {loc['rsc']} {loc['score']}: {loc['node']}")
    for cid, col in pcmk["colocations"].items():
        lines.append(f"colocation {cid} {col['score']}: {col['rsc']} {col['with_rsc']}")
    for oid, order in pcmk["orders"].items():
        lines.append(f"order {oid} {order['kind']}: {order['first']} {order['then']}")
    return "\n".join(lines) + "\n"


def pcs_commands(pcmk):
    """Listing 2 as pcs commands (one process each)."""
    cmds = [
        ["property", "set"] + [f"{k}={v}" for k, v in pcmk["properties"].items()],
        ["resource", "defaults", "update"]
        + [f"{k}={v}" for k, v in pcmk["resource_defaults"].items()],
    ]
    group_of = {m: gid for gid, members in pcmk["groups"].items() for m in members}
    ordered = [m for members in pcmk["groups"].values() for m in members]
    ordered += [r for r in pcmk["primitives"] if r not in group_of]
    for rid in ordered:
        spec = pcmk["primitives"][rid]
        cmd = ["resource", "create", rid, spec["agent"], "--no-default-ops"] + _op_words(spec)
        if rid in group_of:
            cmd += ["--group", group_of[rid]]
        cmds.append(cmd)
    for cid, rid in pcmk["clones"].items():
        cmds.append(["resource", "clone", rid, cid])
    for lid, loc in pcmk["locations"].items():
        cmds.append(
            ["constraint", "location", "add", lid, loc["rsc"], loc["node"], str(loc["score"])]
        )
    for cid, col in pcmk["colocations"].items():
        cmds.append(
            [
                "constraint",
                "colocation",
                "add",
                col["rsc"],
                "with",
                col["with_rsc"],
                str(col["score"]),
                f"id={cid}",
            ]
        )
    for oid, order in pcmk["orders"].items():
        cmds.append(
            [
                "constraint",
                "order",
                "start",
                order["first"],
                "then",
                order["then"],
                f"kind={order['kind']}",
                f"id={oid}",
            ]
        )
    return cmds


def run(argv, cib):
    res = subprocess.run(
        argv, env=dict(os.environ, CIB_file=cib), capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {res.stderr.strip()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="hastack-bench-pcmk-")
    try:
        pillar = pcmklab.listing2(params=False)
        pcmk = pillar["hastack"]["pacemaker"]
        crm_file = os.path.join(work, "listing2.crm")
        with open(crm_file, "w", encoding="utf-8") as fh:
            fh.write(crm_text(pcmk))
        minion = saltlocal.Minion(os.path.join(work, "minion"), "alice", pillar, example=False)
        funcs, states = minion.loader(pillar)
        cibs = {
            name: os.path.join(work, f"{name}.xml") for name in ("crm", "pcs", "salt", "loader")
        }

        times = {name: [] for name in cibs}
        for _ in range(args.rounds):
            for cib in cibs.values():
                empty_cib(cib)
            times["crm"].append(
                timed(lambda: run(["crm", "configure", "load", "update", crm_file], cibs["crm"]))[0]
            )
            times["pcs"].append(
                timed(
                    lambda: [
                        run(["pcs", "-f", cibs["pcs"], *cmd], cibs["pcs"])
                        for cmd in pcs_commands(pcmk)
                    ]
                )[0]
            )
            minion.set_overlay({"hastack": {"pacemaker": dict(pcmk, cib_file=cibs["salt"])}})

            def salt_call():
                rc, ret = minion.call("state.sls", "hastack.pacemaker")
                if rc != 0:
                    raise RuntimeError(f"hastack.pacemaker failed: {ret}")

            times["salt"].append(timed(salt_call)[0])
            config = {k: v for k, v in pcmk.items() if k != "nodes"}

            def configured():
                ret = states["pacemaker.configured"](
                    name="bench", config=config, nodes=NODES, cib_file=cibs["loader"]
                )
                if not ret["result"] or not ret["changes"]:
                    raise RuntimeError(f"pacemaker.configured: {ret['comment']}")

            times["loader"].append(timed(configured)[0])

        # The same configuration, whichever tool wrote it: each CIB holds the declaration.
        config = {k: v for k, v in pcmk.items() if k != "nodes"}
        for name, cib in cibs.items():
            left = funcs["pacemaker.diff"](config, cib_file=cib)
            if left:
                raise RuntimeError(f"{name} wrote a different configuration: {sorted(left)}")

        # One shift of host1 from alice to bob.
        shift = {"crm": [], "set": [], "shift_away": []}
        for _ in range(args.rounds):
            empty_cib(cibs["crm"])
            run(["crm", "configure", "load", "update", crm_file], cibs["crm"])
            shift["crm"].append(
                timed(
                    lambda: run(
                        [
                            "crm",
                            "configure",
                            "location",
                            "lo_shift_host1",
                            "p_nova-compute-host1",
                            "10000:",
                            "bob",
                        ],
                        cibs["crm"],
                    )
                )[0]
            )
            funcs["pacemaker.location_remove"]("lo_shift_host1", cib_file=cibs["loader"])
            shift["set"].append(
                timed(
                    lambda: funcs["pacemaker.location_set"](
                        "lo_shift_host1",
                        "p_nova-compute-host1",
                        "bob",
                        "10000",
                        cib_file=cibs["loader"],
                    )
                )[0]
            )
            funcs["pacemaker.restore"]("alice", cib_file=cibs["loader"])
            seconds, result = timed(
                lambda: funcs["pacemaker.shift_away"](
                    "alice", NODES, fallback=["bob"], cib_file=cibs["loader"]
                )
            )
            if result["plan"]["p_nova-compute-host1"]["to"] != "bob":
                raise RuntimeError(f"shift_away planned {result['plan']}")
            shift["shift_away"].append(seconds)

        # A shift of groups and a promotable clone on the four-node layout.
        import yaml  # pylint: disable=import-outside-toplevel

        with open(
            os.path.join(REPO, "tests", "data", "four_node_pillar.yaml"), encoding="utf-8"
        ) as fh:
            four = yaml.safe_load(fh)["hastack"]["pacemaker"]
        four_nodes = four.pop("nodes")
        four_cib = os.path.join(work, "four.xml")
        shutil.copy(os.path.join(REPO, "tests", "data", "cibs", "four-node.xml"), four_cib)
        ret = states["pacemaker.configured"](
            name="bench", config=four, nodes=four_nodes, cib_file=four_cib
        )
        if ret["result"] is not True:
            raise RuntimeError(f"four-node layout: {ret['comment']}")
        planned = funcs["pacemaker.shift_away"]("ctl-a", four_nodes, cib_file=four_cib, test=True)[
            "plan"
        ]
        crm_shift = os.path.join(work, "shift.crm")
        with open(crm_shift, "w", encoding="utf-8") as fh:
            for label, step in planned.items():
                rsc = label.split(" (")[0]  # "redis-clone (Promoted)"
                role = f" role={step['role']}" if step.get("role") else ""
                fh.write(
                    f"location {step['constraint']} {rsc}{role} {step['score']}: {step['to']}\n"
                )
        crm_cib = os.path.join(work, "four-crm.xml")
        shift["four_crm"], shift["four_hastack"] = [], []
        for _ in range(args.rounds):
            shutil.copy(four_cib, crm_cib)
            shift["four_crm"].append(
                timed(lambda: run(["crm", "configure", "load", "update", crm_shift], crm_cib))[0]
            )
            funcs["pacemaker.restore"]("ctl-a", cib_file=four_cib)
            seconds, result = timed(
                lambda: funcs["pacemaker.shift_away"]("ctl-a", four_nodes, cib_file=four_cib)
            )
            if result["plan"] != planned or result["refused"]:
                raise RuntimeError(f"shift_away planned {result}")
            shift["four_hastack"].append(seconds)
        same = (
            funcs["pacemaker.configuration"](cib_file=crm_cib)["locations"]
            == funcs["pacemaker.configuration"](cib_file=four_cib)["locations"]
        )
        if not same:
            raise RuntimeError("crm and shift_away wrote different locations")

        med = {name: statistics.median(values) for name, values in {**times, **shift}.items()}
        print(
            f"hastack pacemaker benchmark: Listing 2 ({len(pcmk['primitives'])} primitives, "
            f"{len(pcs_commands(pcmk))} pcs calls), CIB files, median of {args.rounds} rounds"
        )
        print("  the three tools wrote the same configuration (read back and compared)")
        for peer in ("crm", "pcs"):
            label = {"crm": "crm configure load update", "pcs": "pcs -f, one call per item"}[peer]
            print(
                f"  load   {label:27} {med[peer]:6.2f} s   hastack salt-call state.sls "
                f"{med['salt']:5.2f} s (ratio {med[peer] / med['salt']:5.2f})   "
                f"state via loader {med['loader']:5.2f} s (ratio {med[peer] / med['loader']:5.2f})"
            )
        print(
            f"  shift  crm configure location      {med['crm']:6.2f} s   pacemaker.location_set      "
            f"{med['set']:5.2f} s (ratio {med['crm'] / med['set']:5.2f})   "
            f"shift_away {med['shift_away']:5.2f} s (ratio {med['crm'] / med['shift_away']:5.2f})"
        )
        print(f"  shift  four-node, ctl-a fails ({len(planned)} moves: {', '.join(planned)})")
        print(
            f"         crm configure load update   {med['four_crm']:6.2f} s   pacemaker.shift_away        "
            f"{med['four_hastack']:5.2f} s (ratio {med['four_crm'] / med['four_hastack']:5.2f})   "
            "the same constraints written (read back and compared)"
        )
        print(
            "  (ratio > 1: hastack faster. shift_away also chooses the targets and confirms them by "
            "simulation; crm writes the constraints only.)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

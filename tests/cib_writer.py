"""A writer for concurrency tests: ``python -m tests.cib_writer PREFIX ROUNDS RSC NODE
[CIB_FILE]`` reads the configuration and sets one location constraint per round through
hastack's pacemaker module (loaded in this process), and prints the reads and writes
that failed; with RSC ``-`` it only reads. Run two at once on one CIB (a file, or a live cluster from two nodes)."""

import json
import sys
import tempfile

from lab import saltlocal


def main(prefix, rounds, rsc, node, cib_file=None):
    with tempfile.TemporaryDirectory(prefix="hastack-writer-") as root:
        funcs, _ = saltlocal.Minion(root, prefix, {}, example=False).loader({})
        failures = []
        for i in range(int(rounds)):
            try:
                funcs["pacemaker.configuration"](cib_file=cib_file)
            except Exception as err:  # pylint: disable=broad-except
                failures.append(f"read {i}: {err}")
            if rsc == "-":  # a reader only
                continue
            try:
                funcs["pacemaker.location_set"](f"lo_{prefix}_{i}", rsc, node, i + 1, cib_file=cib_file)
            except Exception as err:  # pylint: disable=broad-except
                failures.append(f"write {i}: {err}")
    print(json.dumps(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""A writer for concurrency tests: ``python -m tests.cib_writer PREFIX ROUNDS RSC NODE
[CIB_FILE]`` reads the configuration and sets one location constraint per round through
hastack's pacemaker module (loaded in this process), and prints the reads and writes
that failed; with RSC ``-`` it only reads. Run two at once on one CIB (a file, or a live cluster from two nodes)."""

import json
import os
import subprocess
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
                funcs["pacemaker.location_set"](
                    f"lo_{prefix}_{i}", rsc, node, i + 1, cib_file=cib_file
                )
            except Exception as err:  # pylint: disable=broad-except
                failures.append(f"write {i}: {err}")
    print(json.dumps(failures))
    return 1 if failures else 0


def run_together(argvs, env=None):
    """Start the commands (writers, readers; e.g. ``[sys.executable, "-m",
    "tests.cib_writer", ...]``, possibly behind an nsenter) at once; their (rc, output)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(env or os.environ, PYTHONPATH=repo)
    procs = [
        subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo, env=env
        )
        for argv in argvs
    ]
    return [(p.wait(timeout=300), p.stdout.read()) for p in procs]


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

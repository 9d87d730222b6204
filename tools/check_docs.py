"""Check what `sys.doc` shows operators: every public function of an execution or state
module documents each of its parameters (an rST definition list: the name on its own
line, the description indented below it), and every execution function has a
``CLI Example:`` in the ``salt '*' ...`` form (one that runs on the master: ``salt-run
salt.cmd ...``; a runner: ``salt-run ...``; an engine: the master's ``engines:`` setting;
a beacon's
``beacon``: how to add it).

Usage: python tools/check_docs.py [FILE ...]
(default: _modules, _states, _runners, _beacons, _engines)
"""

import ast
import glob
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def problems(path):
    tree = ast.parse(open(path, encoding="utf-8").read())
    is_state = os.sep + "_states" + os.sep in path
    is_runner = os.sep + "_runners" + os.sep in path
    is_beacon = os.sep + "_beacons" + os.sep in path
    is_engine = os.sep + "_engines" + os.sep in path
    found = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        where = f"{os.path.relpath(path, REPO)}:{node.lineno} {node.name}"
        doc = ast.get_docstring(node) or ""
        if not doc:
            found.append(f"{where}: no docstring")
            continue
        if is_beacon and node.name == "validate":
            continue  # called by Salt's beacon machinery, not by people
        params = [a.arg for a in node.args.args + node.args.kwonlyargs]
        if is_beacon:
            params = [p for p in params if p != "config"]
        for param in params:
            # "name", or "a / b" and "a, b" lines that document several together.
            if not re.search(
                rf"^{re.escape(param)}\b.*\n    \S|^\S.*[,/] {re.escape(param)}\s*\n    \S",
                doc,
                re.M,
            ):
                found.append(f"{where}: parameter '{param}' is not documented")
        if is_engine:
            # Started by the master from its config: the example is that config.
            if not re.search(r"^ +engines:\n", doc, re.M):
                found.append(f"{where}: no example of the master's engines setting")
        elif is_runner:
            if "CLI Example:" not in doc or not re.search(r"^ +salt-run ", doc, re.M):
                found.append(f"{where}: no 'CLI Example:' in the salt-run ... form")
        elif not is_state:
            if "CLI Example:" not in doc:
                found.append(f"{where}: no 'CLI Example:'")
            elif not re.search(r"^ +salt '\*' ", doc, re.M) and not re.search(
                # a function of the master's (the reactor's gate): how salt-run calls it
                r"^ +salt-run salt\.cmd ",
                doc,
                re.M,
            ):
                found.append(f"{where}: the CLI example is not in the salt '*' ... form")
    return found


def main(paths):
    paths = paths or sorted(
        glob.glob(os.path.join(REPO, "_modules", "*.py"))
        + glob.glob(os.path.join(REPO, "_states", "*.py"))
        + glob.glob(os.path.join(REPO, "_runners", "*.py"))
        + glob.glob(os.path.join(REPO, "_beacons", "*.py"))
        + glob.glob(os.path.join(REPO, "_engines", "*.py"))
    )
    found = [p for path in paths for p in problems(os.path.abspath(path))]
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared test helpers: load a hastack module straight from its file."""

import importlib.util
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_module(kind, name):
    """Import ``_modules/<name>.py`` (or ``_states``) as a plain module for pure-logic tests."""
    path = os.path.join(REPO, kind, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"hastack_{kind.strip('_')}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply(minion, test=False, **kwargs):
    """state.apply hastack; return (retcode, state return dict or error text)."""
    return minion.call("state.apply", "hastack", test=test, **kwargs)


def admin_ceph(facts, *args):
    """The real ceph CLI as client.admin on the lab cluster (JSON output)."""
    proc = subprocess.run(
        ["ceph", "-c", facts["conf"], *args, "-f", "json"], capture_output=True, text=True,
        timeout=60, check=True,
    )
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def cluster_snapshot(facts):
    """Pools and entities (with caps and keys) of the lab cluster: to prove nothing changed."""
    pools = sorted(p["pool_name"] for p in admin_ceph(facts, "osd", "pool", "ls", "detail"))
    auth = {e["entity"]: (e["key"], e["caps"]) for e in admin_ceph(facts, "auth", "ls")["auth_dump"]}
    return pools, auth


def files_snapshot(path):
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as fh:
                out[full] = fh.read()
    return out


def rbd(conf, user, *args, keyring=None):
    """The real rbd CLI as a client user, with only the files hastack wrote."""
    argv = ["rbd", "-c", conf, "--id", user, *args]
    if keyring:
        argv += ["--keyring", keyring]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

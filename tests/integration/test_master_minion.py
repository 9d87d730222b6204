"""The two deployment paths README gives, each with a real salt-master, a real minion
over ZeroMQ on loopback and ``state.apply hastack`` against a real lab cluster:

- file_roots/gitfs: the master serves ``salt/`` only (the formula, and the loader
  directories it links); ``saltutil.sync_all`` brings the modules to the minion.
- installed: a wheel built from this checkout, installed with pip into a fresh venv
  whose Salt runs the daemons; file_roots holds the formula and no module at all.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from saltfactories.manager import FactoriesManager

from lab import saltlocal
from tests.helpers import files_snapshot

REPO = saltlocal.REPO
GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
SCRIPTS = {
    "salt-master": "salt_master",
    "salt-minion": "salt_minion",
    "salt": "salt_main",
    "salt-call": "salt_call",
    "salt-key": "salt_key",
    "salt-run": "salt_run",
}


def _apply_example_twice(master, pillar_dir, conf_dir):
    minion = master.salt_minion_daemon("alice", overrides={"master": "127.0.0.1"})
    with master.started(), minion.started():
        cli = master.salt_cli(timeout=180)
        synced = cli.run("saltutil.sync_all", minion_tgt="alice")
        assert synced.returncode == 0, synced

        first = cli.run("state.apply", "hastack", minion_tgt="alice")
        assert first.returncode == 0, first
        changed = {v["__id__"] for v in first.data.values() if v["changes"]}
        assert {
            "hastack-ceph-user-glance",
            "hastack-ceph-keyring-cinder",
            "hastack-glance-conf",
            "hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6",
        } <= changed

        second = cli.run("state.apply", "hastack", minion_tgt="alice")
        assert second.returncode == 0, second
        assert [v["__id__"] for v in second.data.values() if v["changes"]] == []

        # The returns went through the master's job cache: no key there either.
        job_cache = b"".join(
            files_snapshot(os.path.join(master.config["cachedir"], "jobs")).values()
        )
        assert b"hastack-ceph-user-glance" in job_cache
        assert GLANCE_KEY.encode() not in job_cache
        docs = cli.run(
            "sys.doc",
            "hastack.validate",
            "ceph_client.pool_create",
            "pacemaker.shift_away",
            minion_tgt="alice",
        )
        assert docs.returncode == 0, docs
    assert os.path.exists(os.path.join(conf_dir, "ceph.client.glance.keyring"))
    return synced.data, docs.data


def _lab_pillar(tmp_path, ceph_lab, libvirt_lab):
    conf_dir = str(tmp_path / "etc-ceph")
    pillar_dir = str(tmp_path / "pillar")
    overlay = saltlocal.lab_overlay(ceph_lab, conf_dir, str(tmp_path / "etc"), libvirt_lab["uri"])
    saltlocal.write_pillar_root(pillar_dir, "alice", overlay)
    return pillar_dir, conf_dir


def test_master_serves_salt_dir_and_minion_syncs_modules(
    salt_factories, ceph_lab, libvirt_lab, tmp_path
):
    pillar_dir, conf_dir = _lab_pillar(tmp_path, ceph_lab, libvirt_lab)
    master = salt_factories.salt_master_daemon(
        "hastack-master",
        overrides={
            "interface": "127.0.0.1",
            "file_roots": {"base": [os.path.join(REPO, "salt")]},
            "pillar_roots": {"base": [pillar_dir]},
        },
    )
    synced, _ = _apply_example_twice(master, pillar_dir, conf_dir)
    assert {"modules.ceph_client", "modules.pacemaker", "modules.hastack"} <= set(synced["modules"])
    assert "states.libvirt_secret" in synced["states"]
    # The pure logic comes along as a utils package that the modules import.
    assert any(name.startswith("utils.hastack_utils") for name in synced["utils"]), synced
    # Only what a minion needs is on the fileserver: not the lab, tests or benchmarks.
    with master.started():
        listed = master.salt_run_cli().run("fileserver.file_list")
    assert listed.returncode == 0, listed
    assert not [p for p in listed.data if p.split("/")[0] in ("lab", "tests", "bench", "pillar")]


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory):
    """A fresh venv with Salt and this checkout's wheel installed by pip.

    Salt and the node libraries (libvirt-python, openstacksdk, Debian's rados) reach
    the venv through a .pth file naming the test venv's site-packages, as Salt's
    onedir carries its own; hastack comes only from the wheel, and pip checks its
    declared dependencies against what is there."""
    root = tmp_path_factory.mktemp("installed")
    dist, venv = root / "dist", root / "venv"
    # Built from a copy: a build/ left in the checkout by an earlier build must not
    # leak stale files into the wheel.
    source = root / "source"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".lab", ".git", "build", "*.egg-info", "__pycache__"
        ),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        cwd=str(root),
    )
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    here = next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)
    (site / "zz_salt_from_test_venv.pth").write_text(here + "\n")
    wheel = next(dist.glob("saltext_hastack-*.whl"))
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
    )
    for script, entry in SCRIPTS.items():
        path = venv / "bin" / script
        path.write_text(
            f"#!{venv}/bin/python\nimport sys\nfrom salt.scripts import {entry}\n"
            f"sys.exit({entry}())\n"
        )
        path.chmod(0o755)
    return venv


def test_installed_wheel_loads_every_module_without_file_roots_modules(
    installed_venv, _salt_factories_config, event_listener, ceph_lab, libvirt_lab, tmp_path
):
    # Salt's IPC sockets live under the root: keep it short (AF_UNIX paths are limited).
    root = tempfile.mkdtemp(prefix="hs-wheel-", dir="/tmp")
    factories = FactoriesManager(
        **dict(
            _salt_factories_config,
            root_dir=root,
            scripts_dir=installed_venv / "bin",
            inject_sitecustomize=False,
            coverage_db_path=None,
            coverage_rc_path=None,
            code_dir=None,
        ),
        event_listener=event_listener,
    )
    pillar_dir, conf_dir = _lab_pillar(tmp_path, ceph_lab, libvirt_lab)
    formula = tmp_path / "formula"
    formula.mkdir()
    (formula / "hastack").symlink_to(os.path.join(REPO, "salt", "hastack"))
    master = factories.salt_master_daemon(
        "hastack-wheel-master",
        overrides={
            "interface": "127.0.0.1",
            "file_roots": {"base": [str(formula)]},
            "pillar_roots": {"base": [pillar_dir]},
        },
    )
    try:
        synced, docs = _apply_example_twice(master, pillar_dir, conf_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    # Nothing to sync: every module came from the installed package.
    assert not any(synced.values()), synced
    # sys.doc explains the parameters, not only the purpose.
    for function, params in (
        ("hastack.validate", ("config", "minion_id", "formula")),
        ("ceph_client.pool_create", ("name", "pg_num", "application")),
        ("pacemaker.shift_away", ("node", "nodes", "fallback", "test")),
    ):
        for param in params:
            # An rST definition: the name alone on its line, its meaning indented below.
            assert re.search(rf"^\s*{param}\n\s+\S", docs[function], re.M), (function, param)

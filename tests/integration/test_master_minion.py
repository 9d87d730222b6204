"""Every install path README offers, each with a real salt-master and a real minion over
ZeroMQ on loopback; each shows the minion's modules, the master's runner and gate, and
the self-healing's reaction (``salt://hastack/reactor/signal.sls``, or the engine)
answering a forged signal on the master's bus:

- file_roots: the master serves ``salt/`` only (the formula and the loader folders);
  ``saltutil.sync_all`` brings the modules to the minion and, with ``salt-run``, to the
  master; ``state.apply hastack`` against a real lab cluster.
- gitfs: a local git repository of this checkout, served with ``root: salt``.
- installed: a wheel built from this checkout, installed with pip into a fresh venv
  whose Salt runs the daemons; the formula served from the package
  (``salt-run failover.formula_root``), the engine wiring; no module in file_roots.
- a copied formula: the installed extension, and ``salt/hastack`` copied into
  file_roots.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml
from saltfactories.manager import FactoriesManager

from lab import saltlocal
from tests.helpers import files_snapshot

REPO = saltlocal.REPO
FILES = os.path.join(REPO, "salt", "hastack", "files")
GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
SCRIPTS = {
    "salt-master": "salt_master",
    "salt-minion": "salt_minion",
    "salt": "salt_main",
    "salt-call": "salt_call",
    "salt-key": "salt_key",
    "salt-run": "salt_run",
}


def _shipped(name):
    """A shipped master settings file (salt/hastack/files), as an operator copies it."""
    with open(os.path.join(FILES, name), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


REACTOR_WIRING = "hastack-failover-reactor.conf"
ENGINE_WIRING = "hastack-failover.conf"


def _reactor_master(factories, name, tmp_path, **fileserver):
    """A master wired as hastack-failover-reactor.conf says, with an empty pillar and
    ``fileserver`` (the install path under test) serving salt://."""
    pillar_dir = tmp_path / "pillar"
    pillar_dir.mkdir()
    (pillar_dir / "top.sls").write_text("base: {}\n")
    return factories.salt_master_daemon(
        name,
        overrides=dict(
            _shipped(REACTOR_WIRING),
            interface="127.0.0.1",
            pillar_roots={"base": [str(pillar_dir)]},
            **fileserver,
        ),
    )


def _forged_signal_is_rejected_by_the_gate(master, event_listener):
    """A signal forged the way a rogue minion's batch would carry it, fired on the
    master's bus: hastack's gate (in the reactor's rendering, or in the engine) rejects
    it as unsigned and no failover.signal job starts."""
    started = time.time()
    fired = master.salt_run_cli().run(
        "event.send",
        "hastack/node/down",
        data={"cmd": "_minion_event", "id": "bob", "data": {"node": "alice"}},
    )
    assert fired.returncode == 0, fired
    matched = event_listener.wait_for_events(
        [(master.id, "hastack/failover/rejected")], timeout=60, after_time=started
    )
    assert matched.found_all_events, "no hastack/failover/rejected on the master's bus"
    rejected = next(iter(matched.matches)).data
    assert rejected["reason"].startswith("unsigned") and rejected["sender"] == "bob", rejected
    time.sleep(1)
    jobs = event_listener.get_events([(master.id, "salt/run/*/new")], after_time=started)
    assert not [e for e in jobs if e.data.get("fun") == "runner.failover.signal"], jobs


def _master_runs_hastack(master):
    """The failover runner answers (no incident yet) and documents itself."""
    cli = master.salt_run_cli(timeout=120)
    incidents = cli.run("failover.incidents")
    assert incidents.returncode == 0 and incidents.data == [], incidents


def _minion_runs_hastack(master, minion):
    """The survivor's failover jobs are loaded on the minion."""
    functions = master.salt_cli().run("sys.list_functions", "failover", minion_tgt=minion)
    assert {"failover.survey", "failover.act"} <= set(functions.data), functions


def _sync_master(master):
    """``salt-run saltutil.sync_all`` as README says (hastack from file_roots or gitfs):
    the runner, the gate, the engine and hastack_utils land in the master's extmods."""
    synced = master.salt_run_cli(timeout=120).run("saltutil.sync_all")
    assert synced.returncode == 0, synced
    assert "runners.failover" in synced.data["runners"], synced.data
    assert "modules.failover" in synced.data["modules"], synced.data
    assert "engines.hastack_signals" in synced.data["engines"], synced.data
    assert any(name.startswith("utils.hastack_utils") for name in synced.data["utils"])


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
    salt_factories, event_listener, ceph_lab, libvirt_lab, tmp_path
):
    pillar_dir, conf_dir = _lab_pillar(tmp_path, ceph_lab, libvirt_lab)
    master = salt_factories.salt_master_daemon(
        "hastack-master",
        overrides=dict(
            _shipped(REACTOR_WIRING),
            interface="127.0.0.1",
            file_roots={"base": [os.path.join(REPO, "salt")]},
            pillar_roots={"base": [pillar_dir]},
        ),
    )
    synced, _ = _apply_example_twice(master, pillar_dir, conf_dir)
    assert {"modules.ceph_client", "modules.pacemaker", "modules.hastack"} <= set(synced["modules"])
    assert "states.libvirt_secret" in synced["states"]
    # The pure logic comes along as a utils package that the modules import.
    assert any(name.startswith("utils.hastack_utils") for name in synced["utils"]), synced
    # Only what a minion needs is on the fileserver: not the lab, tests or benchmarks;
    # the reactor SLS is a real file in it.
    with master.started():
        listed = master.salt_run_cli().run("fileserver.file_list")
        assert listed.returncode == 0, listed
        assert not [
            p for p in listed.data if p.split("/")[0] in ("lab", "tests", "bench", "pillar")
        ]
        assert "hastack/reactor/signal.sls" in listed.data
        _sync_master(master)
    # Restarted, as README says: the reactor loads what was synced.
    with master.started():
        _master_runs_hastack(master)
        _forged_signal_is_rejected_by_the_gate(master, event_listener)


def test_gitfs_serves_the_modules_the_formula_and_the_reactor(
    salt_factories, event_listener, tmp_path
):
    """gitfs with ``root: salt`` on a git repository of this checkout: the loader folders
    and the reactor SLS arrive as the real folders they are (links would arrive as
    single entries)."""
    repo = tmp_path / "hastack.git"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in (n.decode() for n in tracked if n):
        source, target = os.path.join(REPO, name), repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.islink(source):
            target.symlink_to(os.readlink(source))
        elif os.path.isfile(source):
            shutil.copy2(source, target)
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "hastack"],
    ):
        subprocess.run(argv, cwd=repo, check=True)
    master = _reactor_master(
        salt_factories,
        "hastack-gitfs-master",
        tmp_path,
        fileserver_backend=["gitfs"],
        gitfs_provider="gitpython",
        gitfs_remotes=[{f"file://{repo}": [{"root": "salt"}, {"base": "main"}]}],
    )
    minion = master.salt_minion_daemon("gitfs-minion", overrides={"master": "127.0.0.1"})
    with master.started(), minion.started():
        listed = master.salt_run_cli(timeout=120).run("fileserver.file_list")
        assert listed.returncode == 0, listed
        for path in (
            "hastack/reactor/signal.sls",
            "hastack/init.sls",
            "_modules/failover.py",
            "_runners/failover.py",
            "_engines/hastack_signals.py",
            "_utils/hastack_utils/signals.py",
        ):
            assert path in listed.data, (path, listed.data)
        synced = master.salt_cli(timeout=180).run("saltutil.sync_all", minion_tgt="gitfs-minion")
        assert synced.returncode == 0, synced
        assert {"modules.failover", "modules.pacemaker", "modules.floating_ip"} <= set(
            synced.data["modules"]
        ), synced.data
        assert "beacons.hastack_cluster" in synced.data["beacons"], synced.data
        _minion_runs_hastack(master, "gitfs-minion")
        _sync_master(master)
    with master.started():
        _master_runs_hastack(master)
        _forged_signal_is_rejected_by_the_gate(master, event_listener)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A copy of this checkout to build from: a build/ left in the checkout by an
    earlier build must not leak stale files into a wheel."""
    copy = tmp_path_factory.mktemp("source") / "hastack"
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".venv", ".lab", ".git", "build", "*.egg-info", "__pycache__"
        ),
    )
    return copy


def _venv(venv, *pth_lines):
    """A fresh venv whose Salt and node libraries (libvirt-python, openstacksdk,
    Debian's rados) come from the test venv through a .pth file, as Salt's onedir
    carries its own; hastack is not in it."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    here = next(p for p in sys.path if p.endswith("site-packages") and ".venv" in p)
    (site / "zz_salt_from_test_venv.pth").write_text("\n".join((here, *pth_lines)) + "\n")
    for script, entry in dict(SCRIPTS, **{"salt-pip": "salt_pip"}).items():
        path = venv / "bin" / script
        path.write_text(
            f"#!{venv}/bin/python\nimport sys\nfrom salt.scripts import {entry}\n"
            f"sys.exit({entry}())\n"
        )
        path.chmod(0o755)
    return venv


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory, source):
    """A fresh venv with this checkout installed by pip (which checks its declared
    dependencies against what is there)."""
    root = tmp_path_factory.mktemp("installed")
    venv = _venv(root / "venv")
    # README's command, with the extras (openstacksdk and libvirt-python are already
    # there, from the test venv: pip finds them satisfied).
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            f"{source}[openstack,libvirt]",
        ],
        check=True,
    )
    return venv


def _wheel_factories(installed_venv, salt_factories_config, event_listener):
    """A salt-factories manager whose daemons run the installed venv's Salt."""
    # Salt's IPC sockets live under the root: keep it short (AF_UNIX paths are limited).
    root = tempfile.mkdtemp(prefix="hs-wheel-", dir="/tmp")
    factories = FactoriesManager(
        **dict(
            salt_factories_config,
            root_dir=root,
            scripts_dir=installed_venv / "bin",
            inject_sitecustomize=False,
            coverage_db_path=None,
            coverage_rc_path=None,
            code_dir=None,
        ),
        event_listener=event_listener,
    )
    return factories, root


def test_installed_wheel_loads_every_module_without_file_roots_modules(
    installed_venv, _salt_factories_config, event_listener, ceph_lab, libvirt_lab, tmp_path
):
    factories, root = _wheel_factories(installed_venv, _salt_factories_config, event_listener)
    pillar_dir, conf_dir = _lab_pillar(tmp_path, ceph_lab, libvirt_lab)
    # The formula comes with the package: README's `salt-run failover.formula_root`
    # names the folder to serve; a link made once the master has said where it is.
    formula = tmp_path / "formula-root"
    master = factories.salt_master_daemon(
        "hastack-wheel-master",
        overrides=dict(
            _shipped(ENGINE_WIRING),
            interface="127.0.0.1",
            file_roots={"base": [str(formula)]},
            pillar_roots={"base": [pillar_dir]},
        ),
    )
    try:
        with master.started():
            where = master.salt_run_cli(timeout=120).run("failover.formula_root")
            assert where.returncode == 0, where
            path = where.stdout.strip().splitlines()[-1].strip('"')
            assert path.startswith(str(installed_venv)), where
            assert os.path.isfile(os.path.join(path, "hastack", "reactor", "signal.sls"))
            formula.rmdir()  # the master made the missing file_roots folder, empty
            formula.symlink_to(path)
        synced, docs = _apply_example_twice(master, pillar_dir, conf_dir)
        # The engine, the gate and the runner come from the package too (nothing synced);
        # so does the reactor rule's SLS, for a master that runs no engines.
        with master.started():
            _master_runs_hastack(master)
            _forged_signal_is_rejected_by_the_gate(master, event_listener)
            listed = master.salt_run_cli().run("fileserver.file_list")
            assert "hastack/reactor/signal.sls" in listed.data, listed
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


def test_a_copied_formula_serves_the_reactor_beside_the_installed_extension(
    installed_venv, _salt_factories_config, event_listener, tmp_path
):
    """The extension installed with pip and ``salt/hastack`` copied into file_roots
    (``cp -r``): the copy holds the reactor SLS itself, and the reaction runs."""
    factories, root = _wheel_factories(installed_venv, _salt_factories_config, event_listener)
    roots = tmp_path / "srv-salt"
    shutil.copytree(os.path.join(REPO, "salt", "hastack"), roots / "hastack")
    assert (roots / "hastack" / "reactor" / "signal.sls").is_file()
    master = _reactor_master(
        factories, "hastack-copy-master", tmp_path, file_roots={"base": [str(roots)]}
    )
    minion = master.salt_minion_daemon("copy-minion", overrides={"master": "127.0.0.1"})
    try:
        with master.started(), minion.started():
            _minion_runs_hastack(master, "copy-minion")
            _master_runs_hastack(master)
            _forged_signal_is_rejected_by_the_gate(master, event_listener)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_salt_pip_installs_the_extension_into_a_onedir(source, tmp_path):
    """README's ``salt-pip install --no-deps /srv/hastack``, run by Salt's own salt-pip.
    Stand-in: Salt's onedir cannot be downloaded here, so a venv plays it: its Python
    says it is a relenv onedir (``sys.RELENV``) and puts ``extras-3.11`` on its path, as
    the onedir's interpreter does. salt-pip installs into ``extras-3.11``, and the
    onedir's Salt loads every hastack module from there through the entry point."""
    venv = tmp_path / "onedir"
    extras = venv / "extras-3.11"
    _venv(venv, f'import sys, pathlib; sys.RELENV = pathlib.Path("{venv}")', str(extras))
    conf = tmp_path / "etc-salt"
    conf.mkdir()
    (conf / "minion").write_text(
        yaml.safe_dump(
            {
                "root_dir": str(tmp_path / "root"),
                "file_client": "local",
                "file_roots": {"base": [str(tmp_path / "empty")]},
                "pillar_roots": {"base": [str(tmp_path / "empty")]},
            }
        )
    )
    installed = subprocess.run(
        [str(venv / "bin" / "salt-pip"), "install", "-q", "--no-deps", str(source)],
        env=dict(os.environ, SALT_CONFIG_DIR=str(conf)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    assert (extras / "saltext" / "hastack" / "runners" / "failover.py").is_file()
    assert not (extras / "salt").exists()  # Salt stays the onedir's own
    listed = subprocess.run(
        [
            str(venv / "bin" / "salt-call"),
            "-c",
            str(conf),
            "--local",
            "--out=json",
            "sys.list_functions",
            "failover",
            "pacemaker",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    functions = set(json.loads(listed.stdout)["local"])
    assert {"failover.survey", "failover.act", "pacemaker.lock_read"} <= functions, listed.stdout

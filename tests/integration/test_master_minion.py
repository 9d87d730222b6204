"""The deployment path the README gives: a real salt-master serving this repository
(``salt/`` and the repo root in file_roots), a real minion over ZeroMQ on loopback,
``saltutil.sync_all``, then ``state.apply hastack`` against a real lab cluster."""

import os

from lab import saltlocal
from tests.helpers import files_snapshot

REPO = saltlocal.REPO
GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="


def test_master_syncs_modules_and_applies_on_a_minion(salt_factories, ceph_lab, libvirt_lab,
                                                      tmp_path):
    conf_dir = str(tmp_path / "etc-ceph")
    pillar_dir = str(tmp_path / "pillar")
    overlay = saltlocal.lab_overlay(ceph_lab, conf_dir, str(tmp_path / "etc"), libvirt_lab["uri"])
    saltlocal.write_pillar_root(pillar_dir, "alice", overlay)
    master = salt_factories.salt_master_daemon(
        "hastack-master",
        overrides={
            "interface": "127.0.0.1",
            "file_roots": {"base": [os.path.join(REPO, "salt"), REPO]},
            "pillar_roots": {"base": [pillar_dir]},
        },
    )
    minion = master.salt_minion_daemon("alice", overrides={"master": "127.0.0.1"})
    with master.started(), minion.started():
        cli = master.salt_cli(timeout=180)
        synced = cli.run("saltutil.sync_all", minion_tgt="alice")
        assert synced.returncode == 0, synced
        assert "modules.ceph_client" in synced.data["modules"]
        assert "states.ceph_client" in synced.data["states"]
        assert "states.libvirt_secret" in synced.data["states"]

        first = cli.run("state.apply", "hastack", minion_tgt="alice")
        assert first.returncode == 0, first
        changed = {v["__id__"] for v in first.data.values() if v["changes"]}
        assert {"hastack-ceph-user-glance", "hastack-ceph-keyring-cinder", "hastack-glance-conf",
                "hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6"} <= changed

        second = cli.run("state.apply", "hastack", minion_tgt="alice")
        assert second.returncode == 0, second
        assert [v["__id__"] for v in second.data.values() if v["changes"]] == []

        # The returns went through the master's job cache: no key there either.
        job_cache = b"".join(files_snapshot(os.path.join(master.config["cachedir"], "jobs")).values())
        assert b"hastack-ceph-user-glance" in job_cache
        assert GLANCE_KEY.encode() not in job_cache
    assert os.path.exists(os.path.join(conf_dir, "ceph.client.glance.keyring"))

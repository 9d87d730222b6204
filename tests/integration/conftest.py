"""Real services for the integration tests: a lab Ceph cluster and masterless minions.

Nothing here is mocked. A lab cluster starts in about 1.5 s, so every test that
changes the cluster gets its own; a test that cannot start one fails.
"""

import shutil
import tempfile

import pytest

from lab import cephlab, libvirtlab, novalab, saltlocal
from tests.helpers import merge


@pytest.fixture(scope="module")
def nova_lab():
    """A real Nova (lab/novalab.py: API, conductor, scheduler, placement, glance,
    three fake-driver computes host1..3 and a lab Neutron of its own), once per module:
    about 30 s to start warm."""
    d = tempfile.mkdtemp(prefix="hastack-nova-", dir="/var/tmp")
    try:
        facts = novalab.start(d)
    except novalab.LabError as err:
        novalab.stop(d)
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"the lab Nova did not start: {err}")
    facts["figures"] = {"start_s": facts["start_seconds"], "database": facts["database"]}
    try:
        yield facts
    finally:
        facts["figures"]["pss_mib"] = novalab.memory_mib(facts)
        print(f"\nnova lab figures: {facts['figures']}")
        novalab.stop(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ceph_lab(tmp_path):
    """A fresh real Ceph cluster (1 mon, 1 memstore OSD, cephx) on 127.0.0.1."""
    lab_dir = tmp_path / "ceph"
    try:
        facts = cephlab.start(str(lab_dir))
    except cephlab.LabError as err:
        cephlab.stop(str(lab_dir))
        pytest.fail(f"the lab Ceph cluster did not start: {err}")
    yield facts
    cephlab.stop(str(lab_dir))


@pytest.fixture
def libvirt_lab(tmp_path):
    """A real libvirtd (secret driver) in its own mount namespace."""
    lab_dir = tmp_path / "libvirt"
    try:
        facts = libvirtlab.start(str(lab_dir))
    except libvirtlab.LabError as err:
        pytest.fail(f"the lab libvirtd did not start: {err}")
    yield facts
    libvirtlab.stop(str(lab_dir))


@pytest.fixture
def make_minion(tmp_path, ceph_lab, libvirt_lab):
    """Build a masterless minion with the example pillar pointed at the lab services."""

    def make(minion_id="alice", overlay_extra=None):
        root = tmp_path / f"minion-{minion_id}"
        conf_dir = str(tmp_path / f"etc-ceph-{minion_id}")
        etc_dir = str(tmp_path / f"etc-{minion_id}")
        overlay = saltlocal.lab_overlay(ceph_lab, conf_dir, etc_dir, libvirt_lab["uri"])
        minion = saltlocal.Minion(str(root), minion_id, merge(overlay, overlay_extra or {}))
        minion.conf_dir = conf_dir
        minion.etc_dir = etc_dir
        minion.lab = ceph_lab
        minion.libvirt = libvirt_lab
        minion.overlay = merge(overlay, overlay_extra or {})
        return minion

    return make

"""Glance, Cinder and Nova on RBD and the libvirt secret, proven on real services: the lab
Ceph cluster, a real libvirtd, the real glance_store driver and the real rbd CLI."""

import base64
import configparser
import copy
import json
import os
import subprocess
import sys

import libvirt
import pytest

from lab import saltlocal
from tests.helpers import (
    CINDER_KEY,
    apply,
    assert_all_ok,
    cluster_snapshot,
    fake_key,
    files_snapshot,
    merge,
    our_changes,
    rbd,
    states,
)

SECRET = "95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6"
SECRET_STATE = f"hastack-libvirt-secret-{SECRET}"


def read_ini(path):
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    return parser


def secrets(minion):
    """{uuid: (usage id, value as base64)} read through the libvirt API."""
    conn = libvirt.open(minion.libvirt["uri"])
    try:
        out = {}
        for secret in conn.listAllSecrets():
            try:
                value = base64.b64encode(secret.value()).decode()
            except libvirt.libvirtError:
                value = None
            out[secret.UUIDString()] = (secret.usageID(), value)
        return out
    finally:
        conn.close()


def keyring_from(tmp_path, user, key):
    path = tmp_path / f"from-libvirt-{user}.keyring"
    path.write_text(f"[client.{user}]\n\tkey = {key}\n")
    return str(path)


def test_services_and_libvirt_secret_work_for_real(make_minion, tmp_path):
    alice = make_minion("alice")
    # Settings hastack does not manage survive.
    glance_conf = os.path.join(alice.etc_dir, "glance", "glance-api.conf")
    with open(glance_conf, "w", encoding="utf-8") as fh:
        fh.write(
            "[DEFAULT]\n# operator's note\ndebug = True\n\n[database]\nconnection = postgresql://x\n"
        )
    assert_all_ok(*apply(alice))

    # The secret: right usage, and its value (read back through libvirt) authenticates
    # to the cluster as client.cinder.
    usage, value = secrets(alice)[SECRET]
    assert usage == "client.cinder secret"
    assert value == CINDER_KEY
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    made = rbd(
        conf,
        "cinder",
        "create",
        "volumes/from-libvirt-secret",
        "--size",
        "1M",
        keyring=keyring_from(tmp_path, "cinder", value),
    )
    assert made.returncode == 0, made.stderr

    # Glance: the rendered file drives the real glance_store RBD driver as client.glance.
    glance = read_ini(glance_conf)
    assert glance["DEFAULT"]["debug"] == "True" and glance["database"]["connection"]
    assert glance["DEFAULT"]["enabled_backends"] == "ceph:rbd"
    assert glance["ceph"]["rbd_store_user"] == "glance"
    with open(glance_conf, encoding="utf-8") as fh:
        assert "# operator's note" in fh.read()
    check = subprocess.run(
        [sys.executable, "-m", "lab.glance_check", glance_conf],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=saltlocal.REPO,
    )
    assert check.returncode == 0, check.stderr[-2000:]
    result = json.loads(check.stdout.strip().splitlines()[-1])
    assert result["read_back_equal"] and result["location"].startswith(
        f"rbd://{alice.lab['fsid']}/images/"
    )

    # Cinder and Nova: the rendered user, pool, conf and secret work with the real rbd CLI.
    cinder = read_ini(os.path.join(alice.etc_dir, "cinder", "cinder.conf"))
    backend = cinder["ceph"]
    assert cinder["DEFAULT"]["enabled_backends"] == "ceph"
    assert backend["volume_driver"] == "cinder.volume.drivers.rbd.RBDDriver"
    assert backend["rbd_secret_uuid"] == SECRET
    nova = read_ini(os.path.join(alice.etc_dir, "nova", "nova.conf"))["libvirt"]
    assert nova["images_type"] == "rbd" and nova["rbd_secret_uuid"] == SECRET
    for user, pool, ceph_conf in (
        (backend["rbd_user"], backend["rbd_pool"], backend["rbd_ceph_conf"]),
        (nova["rbd_user"], nova["images_rbd_pool"], nova["images_rbd_ceph_conf"]),
    ):
        made = rbd(ceph_conf, user, "create", f"{pool}/rendered-check", "--size", "1M")
        assert made.returncode == 0, made.stderr
        assert "rendered-check" in rbd(ceph_conf, user, "ls", pool).stdout.split()
    dropin = os.path.join(
        alice.etc_dir, "systemd", "system", "cinder-volume.service.d", "hastack-ceph.conf"
    )
    with open(dropin, encoding="utf-8") as fh:
        assert "Environment=CEPH_ARGS=--id cinder" in fh.read()


def test_cinder_key_rotation_reaches_cluster_keyring_and_secret_in_one_apply(make_minion, tmp_path):
    alice = make_minion("alice")
    assert_all_ok(*apply(alice))
    new_key = fake_key("FAKE-cinder-2nd!")
    overlay = copy.deepcopy(alice.overlay)
    overlay["hastack"]["ceph"]["users"]["cinder"]["key"] = new_key
    alice.set_overlay(overlay)
    rc, predicted = apply(alice, test=True)
    rc, rotated = apply(alice)
    assert_all_ok(rc, rotated)
    hidden = {"old": "(hidden)", "new": "(hidden)"}
    assert (
        our_changes(rotated)
        == our_changes(predicted)
        == {
            "hastack-ceph-user-cinder": {"key": hidden},
            "hastack-ceph-keyring-cinder": {"key": hidden},
            f"hastack-libvirt-secret-{SECRET}": {"value": hidden},
        }
    )
    assert secrets(alice)[SECRET][1] == new_key
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    old = rbd(conf, "cinder", "ls", "volumes", keyring=keyring_from(tmp_path, "cinder", CINDER_KEY))
    assert old.returncode != 0
    assert (
        rbd(
            conf, "cinder", "ls", "volumes", keyring=keyring_from(tmp_path, "cinder", new_key)
        ).returncode
        == 0
    )
    assert saltlocal.changes_by_id(apply(alice)[1]) == {}


def test_workshop_release_uses_folsom_names(make_minion):
    alice = make_minion(
        "alice",
        {"hastack": {"openstack": {"release": "folsom"}, "nova": {"images_type": "default"}}},
    )
    assert_all_ok(*apply(alice))
    glance = read_ini(os.path.join(alice.etc_dir, "glance", "glance-api.conf"))["DEFAULT"]
    assert glance["default_store"] == "rbd" and glance["rbd_store_pool"] == "images"
    assert "enabled_backends" not in glance
    cinder = read_ini(os.path.join(alice.etc_dir, "cinder", "cinder.conf"))
    assert cinder["DEFAULT"]["volume_driver"] == "cinder.volume.driver.RBDDriver"
    assert cinder["DEFAULT"]["rbd_secret_uuid"] == SECRET and cinder.sections() == []
    with open(
        os.path.join(alice.etc_dir, "init", "cinder-volume.override"), encoding="utf-8"
    ) as fh:
        assert fh.read().strip() == 'env CEPH_ARGS="--id cinder"'
    # Folsom's nova took the volume's rbd user and secret from cinder: no nova.conf lines.
    assert not os.path.exists(os.path.join(alice.etc_dir, "nova", "nova.conf"))


def define_other_secret(minion, uuid, usage):
    conn = libvirt.open(minion.libvirt["uri"])
    try:
        conn.secretDefineXML(
            f"<secret ephemeral='no' private='no'><uuid>{uuid}</uuid>"
            f"<usage type='ceph'><name>{usage}</name></usage></secret>"
        )
    finally:
        conn.close()


OTHER = "11111111-2222-4333-8444-555555555555"


def test_usage_held_by_another_secret_is_an_error_unless_replacing(make_minion, ceph_lab):
    alice = make_minion("alice")
    define_other_secret(alice, OTHER, "client.cinder secret")
    before = cluster_snapshot(ceph_lab)
    etc_before = files_snapshot(alice.etc_dir)
    for test in (True, False):
        rc, ret = apply(alice, test=test)
        assert rc != 0
        assert (
            f"libvirt secret {OTHER} already holds usage 'client.cinder secret'"
            in alice.last_output
        )
        assert f"hastack:libvirt:secrets:{SECRET}:replace_usage" in alice.last_output
    # The preflight stopped the run first: nothing changed anywhere.
    assert set(secrets(alice)) == {OTHER}
    assert cluster_snapshot(ceph_lab) == before
    assert not os.path.exists(alice.conf_dir)
    assert files_snapshot(alice.etc_dir) == etc_before

    alice.set_overlay(
        merge(
            alice.overlay, {"hastack": {"libvirt": {"secrets": {SECRET: {"replace_usage": True}}}}}
        )
    )
    rc, ret = apply(alice)
    assert_all_ok(rc, ret)
    assert states(ret)[SECRET_STATE].changes["replaced"] == {"old": OTHER, "new": None}
    assert set(secrets(alice)) == {SECRET}


BAD_INPUT = [
    (
        {"cinder": {"backends": {"ceph": {"secret_uuid": "not-a-uuid"}}}},
        "hastack:cinder:backends:ceph:secret_uuid: not a UUID",
    ),
    (
        {"nova": {"secret_uuid": "22222222-3333-4444-8555-666666666666"}},
        "hastack:nova:secret_uuid: 22222222-3333-4444-8555-666666666666 is not defined in hastack:libvirt:secrets",
    ),
    (
        {"glance": {"pool": "imagez"}},
        "hastack:glance:pool: 'imagez' is not defined in hastack:ceph:pools",
    ),
    (
        {"nova": {"user": "glance"}},
        f"hastack:nova:secret_uuid: secret {SECRET} holds the key of 'cinder' in cluster 'ceph', "
        "not of the rbd user 'glance' in 'ceph'",
    ),
    (
        {"cinder": {"backends": {"ceph": {"pool": "images"}}}},
        "hastack:cinder:backends:ceph:pool: client.cinder's osd caps do not let it write to pool 'images'",
    ),
    ({"openstack": {"release": "grizzly"}}, "hastack:openstack:release: unknown release 'grizzly'"),
    (
        {"openstack": {"release": "folsom"}},
        "hastack:nova:images_type: RBD-backed instance disks need a release after folsom",
    ),
]


@pytest.mark.parametrize(
    "overlay, message", BAD_INPUT, ids=[m.split(": ")[0] for _, m in BAD_INPUT]
)
def test_bad_service_input_is_named_and_changes_nothing(make_minion, ceph_lab, overlay, message):
    alice = make_minion("alice", {"hastack": overlay})
    before = cluster_snapshot(ceph_lab)
    etc_before = files_snapshot(alice.etc_dir)  # the lab's empty CIB file only
    rc, ret = apply(alice)
    assert rc != 0
    assert message in alice.last_output, alice.last_output
    assert cluster_snapshot(ceph_lab) == before
    assert not os.path.exists(alice.conf_dir)
    assert files_snapshot(alice.etc_dir) == etc_before
    assert secrets(alice) == {}


def test_services_restart_only_when_managed_and_only_on_their_changes(make_minion):
    alice = make_minion(
        "alice",
        {
            "hastack": {
                "glance": {"service": {"manage": True}},
                "cinder": {"service": {"manage": True}},
            }
        },
    )
    rc, shown = alice.call("state.show_sls", "hastack")
    assert rc == 0, shown
    glance = shown["hastack-glance-service"]["service"]
    watch = next(item["watch"] for item in glance if isinstance(item, dict) and "watch" in item)
    assert watch == [
        {"hastack": "hastack-glance-conf"},
        {"ceph_client": "hastack-ceph-keyring-glance"},
    ]
    cinder = shown["hastack-cinder-service"]["service"]
    watch = next(item["watch"] for item in cinder if isinstance(item, dict) and "watch" in item)
    assert {"ceph_client": "hastack-ceph-keyring-glance"} not in watch
    assert {"file": "hastack-cinder-ceph-args"} in watch
    # nova's service is not managed on this node: no service state at all.
    assert "hastack-nova-service" not in shown


BACKUP_SECRET = "33333333-4444-4555-8666-777777777777"


@pytest.fixture
def second_ceph_lab(tmp_path):
    """Another real Ceph cluster, for a cinder backend in a second cluster."""
    from lab import cephlab  # pylint: disable=import-outside-toplevel

    lab_dir = str(tmp_path / "ceph-backup")
    try:
        facts = cephlab.start(lab_dir)
    except cephlab.LabError as err:
        cephlab.stop(lab_dir)
        pytest.fail(f"the second lab Ceph cluster did not start: {err}")
    yield facts
    cephlab.stop(lab_dir)


def test_cinder_backends_in_two_clusters_with_their_own_secrets(
    make_minion, second_ceph_lab, tmp_path
):
    backup_key = fake_key("FAKE-backup-cind")
    backup = {
        "fsid": second_ceph_lab["fsid"],
        "mon_host": second_ceph_lab["mon_host"],
        "admin_minion": "alice",
        "admin_keyring": second_ceph_lab["admin_keyring"],
        "pools": {"backups": {"pg_num": 8}},
        "users": {
            "cinder": {
                "key": backup_key,
                "roles": ["controller", "compute"],
                "caps": {"mon": "profile rbd", "osd": "profile rbd pool=backups"},
            }
        },
    }
    extra = {
        "hastack": {
            "ceph_clusters": {"backup": backup},
            "cinder": {
                "backends": {
                    "backup": {
                        "cluster": "backup",
                        "pool": "backups",
                        "user": "cinder",
                        "secret_uuid": BACKUP_SECRET,
                    }
                }
            },
            "libvirt": {"secrets": {BACKUP_SECRET: {"ceph_user": "cinder", "cluster": "backup"}}},
        }
    }
    alice = make_minion("alice", extra)
    rc, predicted = apply(alice, test=True)
    rc, applied = apply(alice)
    assert_all_ok(rc, applied)
    assert our_changes(applied) == our_changes(predicted)
    assert {
        "hastack-ceph-backup-pool-backups",
        "hastack-ceph-backup-user-cinder",
        "hastack-ceph-backup-keyring-cinder",
        "hastack-ceph-pool-volumes",
    } <= set(our_changes(applied))
    assert saltlocal.changes_by_id(apply(alice)[1]) == {}

    cinder = read_ini(os.path.join(alice.etc_dir, "cinder", "cinder.conf"))
    assert cinder["DEFAULT"]["enabled_backends"] == "backup,ceph"
    backup_conf = os.path.join(alice.conf_dir, "backup.conf")
    assert cinder["backup"]["rbd_ceph_conf"] == backup_conf
    assert cinder["ceph"]["rbd_ceph_conf"] == os.path.join(alice.conf_dir, "ceph.conf")
    assert os.path.exists(os.path.join(alice.conf_dir, "backup.client.cinder.keyring"))
    made = rbd(backup_conf, "cinder", "create", "backups/v1", "--size", "1M")
    assert made.returncode == 0, made.stderr
    # Each cluster's secret, under its own usage name, authenticates to its own cluster.
    held = secrets(alice)
    assert held[BACKUP_SECRET] == ("backup.client.cinder secret", backup_key)
    assert held[SECRET] == ("client.cinder secret", CINDER_KEY)
    assert (
        rbd(
            backup_conf,
            "cinder",
            "ls",
            "backups",
            keyring=keyring_from(tmp_path, "cinder", held[BACKUP_SECRET][1]),
        ).returncode
        == 0
    )
    assert (
        rbd(
            backup_conf,
            "cinder",
            "ls",
            "backups",
            keyring=keyring_from(tmp_path, "cinder", held[SECRET][1]),
        ).returncode
        != 0
    )

    # Nova's disks in another cluster than Glance's images: refused before any change.
    alice.set_overlay(
        merge(
            alice.overlay,
            {
                "hastack": {
                    "nova": {"cluster": "backup", "pool": "backups", "secret_uuid": BACKUP_SECRET}
                }
            },
        )
    )
    rc, _ = apply(alice)
    assert rc != 0
    assert (
        "hastack:nova:cluster: instance disks in cluster 'backup' and Glance images in 'ceph': "
        "copy-on-write clones need one cluster"
    ) in alice.last_output

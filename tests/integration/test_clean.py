"""hastack.clean removes what the pillar no longer names, and only that: a user, its
keyring, its ceph.conf section and a libvirt secret dropped from the pillar go; what an
operator made by hand stays; a highstate never removes anything; test=True predicts."""

import copy
import os
import subprocess

from tests.helpers import admin_ceph, apply, assert_all_ok, fake_key, our_changes

SPARE_SECRET = "5b2c7a3e-0d41-4c55-9c3f-2f0d8e1a6b77"
EXTRA = {
    "hastack": {
        "ceph": {
            "users": {
                "reporter": {
                    "key": fake_key("FAKE-reporter-k!"),
                    "caps": {"mon": "profile rbd", "osd": "profile rbd-read-only pool=images"},
                    "roles": ["controller"],
                }
            }
        },
        "libvirt": {"secrets": {SPARE_SECRET: {"ceph_user": "glance"}}},
    }
}


def entities(lab):
    return {e["entity"] for e in admin_ceph(lab, "auth", "ls")["auth_dump"]}


def secrets(uri):
    import libvirt  # pylint: disable=import-outside-toplevel

    conn = libvirt.open(uri)
    try:
        return {s.UUIDString() for s in conn.listAllSecrets()}
    finally:
        conn.close()


def test_clean_removes_only_what_the_pillar_dropped(make_minion, ceph_lab):
    alice = make_minion("alice", EXTRA)
    assert_all_ok(*apply(alice))
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    reporter_keyring = os.path.join(alice.conf_dir, "ceph.client.reporter.keyring")
    assert "client.reporter" in entities(ceph_lab) and os.path.exists(reporter_keyring)
    assert SPARE_SECRET in secrets(alice.libvirt["uri"])
    # An operator's own user, keyring and section, made by hand beside hastack's.
    subprocess.run(
        [
            "ceph",
            "-c",
            ceph_lab["conf"],
            "auth",
            "get-or-create",
            "client.operator",
            "mon",
            "allow r",
            "-o",
            os.path.join(alice.conf_dir, "ceph.client.operator.keyring"),
        ],
        check=True,
        capture_output=True,
    )
    with open(conf, "a", encoding="utf-8") as fh:
        fh.write("\n[client.operator]\nkeyring = /etc/ceph/ceph.client.operator.keyring\n")

    # reporter and the spare secret leave the pillar.
    overlay = copy.deepcopy(alice.overlay)
    del overlay["hastack"]["ceph"]["users"]["reporter"]
    del overlay["hastack"]["libvirt"]["secrets"]
    alice.set_overlay(overlay)
    rc, ret = apply(alice)
    assert_all_ok(rc, ret)
    assert our_changes(ret) == {}  # a highstate removes nothing
    assert "client.reporter" in entities(ceph_lab) and os.path.exists(reporter_keyring)

    rc, predicted = alice.call("state.apply", "hastack.clean", test=True)
    assert rc == 0, alice.last_output
    rc, cleaned = alice.call("state.apply", "hastack.clean")
    assert rc == 0, alice.last_output
    expected = {
        "hastack-ceph-clean-user-client.reporter": {
            "entity": {"old": "client.reporter", "new": None}
        },
        f"hastack-ceph-clean-keyring-{reporter_keyring}": {
            "keyring": {"old": reporter_keyring, "new": None}
        },
        f"hastack-ceph-clean-conf-{conf}": {"[client.reporter]": {"old": "present", "new": None}},
        f"hastack-libvirt-clean-secret-{SPARE_SECRET}": {
            "uuid": {"old": SPARE_SECRET, "new": None}
        },
    }
    assert our_changes(cleaned) == our_changes(predicted) == expected

    assert "client.reporter" not in entities(ceph_lab)
    assert not os.path.exists(reporter_keyring)
    assert SPARE_SECRET not in secrets(alice.libvirt["uri"])
    with open(conf, encoding="utf-8") as fh:
        text = fh.read()
    assert "[client.reporter]" not in text
    # What the pillar still names, and what the operator made, stay.
    assert {"client.glance", "client.cinder", "client.operator"} <= entities(ceph_lab)
    assert "[client.operator]" in text and "[client.glance]" in text
    assert os.path.exists(os.path.join(alice.conf_dir, "ceph.client.operator.keyring"))
    # Nothing left to clean.
    rc, again = alice.call("state.apply", "hastack.clean")
    assert rc == 0 and our_changes(again) == {}, alice.last_output

"""Pure logic behind hastack.clean (what is stale) and INI section removal."""

from hastack_utils import ini, registry


def tree(users=("glance",), local=("glance",), admin=True, secrets=(), libvirt_applies=True):
    return {
        "clusters": {
            "ceph": {
                "users": {
                    u: {"keyring": {"path": f"/etc/ceph/ceph.client.{u}.keyring"}} for u in users
                },
                "local_users": list(local),
                "conf": "/etc/ceph/ceph.conf",
                "is_admin_minion": admin,
            }
        },
        "libvirt": {"secrets": {s: {} for s in secrets}, "applies": libvirt_applies},
    }


def recorded():
    record = registry.empty()
    for user in ("glance", "reporter"):
        registry.add(record, "users", f"client.{user}", "ceph")
        registry.add(record, "keyrings", f"/etc/ceph/ceph.client.{user}.keyring")
        registry.add(record, "conf_sections", f"client.{user}", "/etc/ceph/ceph.conf")
    registry.add(record, "libvirt_secrets", "uuid-a", "qemu:///system")
    return record


def test_stale_is_what_was_created_and_is_no_longer_named():
    assert registry.stale(recorded(), tree(secrets=("uuid-b",))) == {
        "users": {"ceph": ["client.reporter"]},
        "keyrings": ["/etc/ceph/ceph.client.reporter.keyring"],
        "conf_sections": {"/etc/ceph/ceph.conf": ["client.reporter"]},
        "libvirt_secrets": {"qemu:///system": ["uuid-a"]},
    }


def test_users_are_only_stale_on_the_admin_minion_and_named_ones_never():
    stale = registry.stale(
        recorded(), tree(users=("glance", "reporter"), admin=False, secrets=("uuid-a",))
    )
    assert stale["users"] == {} and stale["libvirt_secrets"] == {}
    # reporter is still a user, but its keyring no longer reaches this minion.
    assert stale["keyrings"] == ["/etc/ceph/ceph.client.reporter.keyring"]


def test_forget_removes_and_empties_scopes():
    record = recorded()
    registry.forget(record, "libvirt_secrets", "uuid-a", "qemu:///system")
    assert record["libvirt_secrets"] == {}


def test_remove_sections_keeps_every_other_line():
    text = (
        "# operator notes\n[global]\nfsid = f\n\n[client.reporter]\n# why\nkeyring = /k/r\n\n"
        "[client.operator]\nkeyring = /k/o\n"
    )
    assert ini.remove_sections(text, ["client.reporter"]) == (
        "# operator notes\n[global]\nfsid = f\n\n[client.operator]\nkeyring = /k/o\n"
    )
    assert ini.remove_sections(text, ["client.none"]) == text


def test_stale_across_two_clusters_this_minion_administers_only_one_of():
    # A layout beyond the example: a second cluster "backup" whose admin is elsewhere.
    tree = {
        "clusters": {
            "ceph": {
                "users": {"glance": {"keyring": {"path": "/etc/ceph/ceph.client.glance.keyring"}}},
                "local_users": ["glance"],
                "conf": "/etc/ceph/ceph.conf",
                "is_admin_minion": True,
            },
            "backup": {
                "users": {
                    "cinder": {"keyring": {"path": "/etc/ceph/backup.client.cinder.keyring"}}
                },
                "local_users": ["cinder"],
                "conf": "/etc/ceph/backup.conf",
                "is_admin_minion": False,
            },
        },
        "libvirt": {"secrets": {}, "applies": False},
    }
    record = registry.empty()
    for cluster, user in (
        ("ceph", "glance"),
        ("ceph", "old"),
        ("backup", "cinder"),
        ("backup", "gone"),
    ):
        registry.add(record, "users", f"client.{user}", cluster)
        registry.add(record, "keyrings", f"/etc/ceph/{cluster}.client.{user}.keyring")
        registry.add(record, "conf_sections", f"client.{user}", f"/etc/ceph/{cluster}.conf")
    stale = registry.stale(record, tree)
    # Users go only where this minion is the admin; files go on both clusters.
    assert stale["users"] == {"ceph": ["client.old"]}
    assert stale["keyrings"] == [
        "/etc/ceph/backup.client.gone.keyring",
        "/etc/ceph/ceph.client.old.keyring",
    ]
    assert stale["conf_sections"] == {
        "/etc/ceph/backup.conf": ["client.gone"],
        "/etc/ceph/ceph.conf": ["client.old"],
    }

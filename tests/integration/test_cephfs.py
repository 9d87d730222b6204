"""CephFS for the shared instances directory, on a real lab cluster with an MDS.

A layout that is not the workshop's: a cluster called ``store``, a filesystem called
``shared`` with two directories (``/nova`` for the computes' instances, ``/rabbitmq``
for the broker), each mounted by its own cephx user with path-restricted caps, as
``ceph fs authorize`` grants them. The admin minion (``ops``) creates pools, the
filesystem, its directories and the users; two computes (``cmp1``, ``cmp2``), each in
its own mount namespace as two machines would be, mount ``/nova`` with ceph-fuse (the
kernel client cannot load here: no ceph module, no modprobe).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from lab import cephlab, saltlocal
from tests.helpers import apply, assert_all_ok, cluster_snapshot, states

NOVA_CAPS = {
    "mds": "allow rw fsname=shared path=/nova",
    "mon": "allow r fsname=shared",
    "osd": "allow rw tag cephfs data=shared",
}
RABBIT_CAPS = {
    "mds": "allow rw fsname=shared path=/rabbitmq",
    "mon": "allow r fsname=shared",
    "osd": "allow rw tag cephfs data=shared",
}


def gen_key():
    return subprocess.run(
        ["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture(scope="module")
def cephfs_lab(tmp_path_factory):
    """A real Ceph cluster with a metadata server, once for the module."""
    lab_dir = tmp_path_factory.mktemp("cephfs") / "ceph"
    try:
        facts = cephlab.start(str(lab_dir), mds=True)
    except cephlab.LabError as err:
        cephlab.stop(str(lab_dir))
        pytest.fail(f"the lab Ceph cluster with an MDS did not start: {err}")
    yield facts
    cephlab.stop(str(lab_dir))


class Node:
    """A machine's mount and UTS namespaces (its own mounts and host name): a process
    holds them, and a salt-call run inside mounts there and nowhere else. Ending the
    holder ends the node's mounts, and the ceph-fuse processes serving them are
    stopped by PID first."""

    def __init__(self, hostname):
        self.holder = subprocess.Popen(  # pylint: disable=consider-using-with
            [
                "unshare",
                "-m",
                "-u",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"hostname {hostname} && exec sleep infinity",
            ]
        )
        self.wrap = ["nsenter", "-t", str(self.holder.pid), "-m", "-u", "--"]

    def run(self, *argv, check=True, timeout=60):
        return subprocess.run(
            self.wrap + list(argv), capture_output=True, text=True, check=check, timeout=timeout
        )

    def fuse_pids(self):
        """The ceph-fuse daemons of this namespace (ours: started by our salt-call runs)."""
        ns = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    if not fh.read().startswith(b"ceph-fuse\0"):
                        continue
                if os.readlink(f"/proc/{pid}/ns/mnt") == ns:
                    found.append(int(pid))
            except OSError:
                continue
        return found

    def mounted(self, path):
        with open(f"/proc/{self.holder.pid}/mountinfo", encoding="utf-8") as fh:
            return any(line.split()[4] == path for line in fh)

    def stop(self):
        for pid in self.fuse_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.holder.kill()
        self.holder.wait()


@pytest.fixture(scope="module")
def site(cephfs_lab, tmp_path_factory):
    """The pillar, the admin minion and two compute nodes."""
    root = tmp_path_factory.mktemp("cephfs-site")
    instances = str(root / "instances")
    cib = root / "cib.xml"
    with open(cib, "w", encoding="utf-8") as fh:
        subprocess.run(["cibadmin", "--empty"], stdout=fh, check=True)
    pillar = {
        "hastack": {
            "site": "fs1",
            "ceph": {
                "cluster": "store",
                "fsid": cephfs_lab["fsid"],
                "mon_host": cephfs_lab["mon_host"],
                "admin_minion": "ops",
                "admin_keyring": cephfs_lab["admin_keyring"],
                "pools": {
                    "fs_meta": {"pg_num": 8, "application": "cephfs"},
                    "fs_data": {"pg_num": 8, "application": "cephfs"},
                },
                "filesystems": {"shared": {"metadata_pool": "fs_meta", "data_pool": "fs_data"}},
                "users": {
                    "nova": {"key": gen_key(), "caps": NOVA_CAPS, "roles": ["compute"]},
                    "rabbit": {"key": gen_key(), "caps": RABBIT_CAPS, "roles": ["controller"]},
                },
            },
            "cephfs": {
                "mounts": {
                    instances: {
                        "fs": "shared",
                        "path": "/nova",
                        "user": "nova",
                        "owner": "nobody",
                        "group": "nogroup",
                        "mode": "0750",
                    },
                    # The broker's directory, on the controllers only.
                    str(root / "rabbitmq"): {
                        "fs": "shared",
                        "path": "/rabbitmq",
                        "user": "rabbit",
                        "roles": ["controller"],
                    },
                },
            },
            # The compute identities: two that move with Pacemaker (their VMs come back
            # from the shared directory), one that stays home (evacuated per VM).
            "pacemaker": {
                "nodes": ["cmp1", "cmp2", "cmp3"],
                "cib_file": str(cib),
                "properties": {"stonith-enabled": "false"},
                "primitives": {"p_api": {"agent": "ocf:pacemaker:Dummy"}},
            },
            "computes": {
                "identities": {
                    "vh-a": {"node": "cmp1"},
                    "vh-b": {"node": "cmp2"},
                    "vh-c": {"node": "cmp3", "mode": "evacuate"},
                },
                "instances_path": instances,
                "config_file": str(root / "NODE" / "nova" / "nova.conf"),
                "conf_dir": str(root / "NODE" / "nova"),
            },
        }
    }
    minions, nodes = {}, {}
    for name, roles in (("ops", ["controller"]), ("cmp1", ["compute"]), ("cmp2", ["compute"])):
        tree = saltlocal_pillar(pillar, roles, str(root / name / "etc-ceph"))
        nodes[name] = Node(name)
        minions[name] = saltlocal.Minion(
            str(root / name), name, tree, example=False, wrap=nodes[name].wrap
        )
    yield {
        "pillar": pillar,
        "minions": minions,
        "nodes": nodes,
        "instances": instances,
        "rabbitmq": str(root / "rabbitmq"),
    }
    for node in nodes.values():
        node.stop()


def saltlocal_pillar(pillar, roles, conf_dir):
    """The site's pillar as one minion gets it: its roles, its own Ceph and Nova files
    (several minions share this machine's file system)."""
    tree = {"hastack": dict(pillar["hastack"], roles=roles)}
    tree["hastack"]["ceph"] = dict(pillar["hastack"]["ceph"], conf_dir=conf_dir)
    node = os.path.basename(os.path.dirname(conf_dir))
    computes = dict(pillar["hastack"]["computes"])
    for key in ("config_file", "conf_dir"):
        computes[key] = computes[key].replace("NODE", node)
    tree["hastack"]["computes"] = computes
    return tree


def mount_changes(ret):
    return {
        sid: result.changes
        for sid, result in states(ret).items()
        if sid.startswith("hastack-cephfs-mount-")
    }


def test_the_admin_minion_creates_the_filesystem_its_directories_and_users(site, cephfs_lab):
    ops = site["minions"]["ops"]
    rc, predicted = apply(ops, test=True)
    assert rc == 0, ops.last_output
    rc, ret = apply(ops)
    assert_all_ok(rc, ret)
    made = saltlocal.changes_by_id(ret)
    assert made == saltlocal.changes_by_id(predicted)
    assert {"hastack-ceph-fs-shared", "hastack-ceph-fs-dir-shared:/nova"} <= set(made)
    assert "hastack-ceph-fs-dir-shared:/rabbitmq" in made
    fs_ls = subprocess.run(
        ["ceph", "-c", cephfs_lab["conf"], "fs", "ls", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert '"name":"shared"' in fs_ls.replace(" ", "")

    # A controller mounts the broker's directory, not the instances.
    assert list(mount_changes(ret)) == [f"hastack-cephfs-mount-{site['rabbitmq']}"]
    assert site["nodes"]["ops"].mounted(site["rabbitmq"])
    assert not site["nodes"]["ops"].mounted(site["instances"])
    assert saltlocal.changes_by_id(apply(ops)[1]) == {}


def admin_sessions(cephfs_lab):
    sessions = subprocess.run(
        ["ceph", "-c", cephfs_lab["conf"], "tell", "mds.a", "session", "ls", "-f", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [
        session["id"]
        for session in json.loads(sessions)
        if session.get("client_metadata", {}).get("entity_id") == "admin"
    ]


def admin_calls(site):
    """The ops minion's functions, called in-process, and the connection arguments
    that reach the lab cluster as client.admin (mon_host and keyring given)."""
    ceph = site["pillar"]["hastack"]["ceph"]
    funcs, _ = site["minions"]["ops"].loader()
    conn = {
        "cluster": "store",
        "mon_host": ceph["mon_host"],
        "admin_keyring": ceph["admin_keyring"],
        "conf_dir": "/nonexistent",
    }
    return funcs, conn


def test_the_admins_session_is_closed_when_a_call_returns(site, cephfs_lab):
    """A salt-minion's job process ends without Python's clean-up: a CephFS session left
    open would hold its capabilities on the new directory, and every mount would block
    on them until the MDS evicts it (60 s). The call closes it itself."""
    funcs, conn = admin_calls(site)
    assert funcs["ceph_client.fs_dir_create"]("shared", "/scratch", **conn) is True
    assert funcs["ceph_client.fs_dir_info"]("shared", "/scratch", **conn)["mode"] == "0755"
    assert admin_sessions(cephfs_lab) == []


def test_computes_mount_the_shared_directory_and_see_each_others_files(site):
    cmp1, cmp2 = site["minions"]["cmp1"], site["minions"]["cmp2"]
    instances = site["instances"]
    rc, predicted = apply(cmp1, test=True)
    assert rc == 0, cmp1.last_output
    assert not site["nodes"]["cmp1"].mounted(instances)
    rc, ret = apply(cmp1)
    assert_all_ok(rc, ret)
    assert mount_changes(ret) == mount_changes(predicted)
    assert mount_changes(ret)[f"hastack-cephfs-mount-{instances}"] == {
        "mount": {
            "old": None,
            "new": {
                "fs": "shared",
                "path": "/nova",
                "user": "nova",
                "client": "fuse",
                "owner": "nobody",
                "group": "nogroup",
                "mode": "0750",
            },
        }
    }
    # Only /nova: the rabbitmq mount is for controllers.
    assert len(mount_changes(ret)) == 1

    rc, ret = apply(cmp2)
    assert_all_ok(rc, ret)
    node1, node2 = site["nodes"]["cmp1"], site["nodes"]["cmp2"]
    assert node1.mounted(instances) and node2.mounted(instances)
    # Not mounted on the host: each node's mount stays in its namespace.
    assert not os.path.ismount(instances)

    node1.run("sh", "-c", f"echo guest-disk > {instances}/disk.info && sync")
    assert node2.run("cat", f"{instances}/disk.info").stdout == "guest-disk\n"
    # The owner set through one node is the filesystem's: the other sees it too.
    assert node2.run("stat", "-c", "%U:%G %a", instances).stdout.split() == [
        "nobody:nogroup",
        "750",
    ]

    for minion in (cmp1, cmp2):
        rc, ret = apply(minion)
        assert_all_ok(rc, ret)
        assert saltlocal.changes_by_id(ret) == {}


def test_each_compute_gets_the_identities_it_may_run(site):
    """After the mount (the test above): cmp1 may run vh-a and vh-b (they move), never
    vh-c (it stays on cmp3)."""
    root = os.path.dirname(site["instances"])
    nova = os.path.join(root, "cmp1", "nova")
    assert sorted(os.listdir(nova)) == [
        "nova-compute-vh-a.conf",
        "nova-compute-vh-b.conf",
        "nova.conf",
    ]
    with open(os.path.join(nova, "nova-compute-vh-b.conf"), encoding="utf-8") as fh:
        assert fh.read().split() == ["[DEFAULT]", "host", "=", "vh-b"]
    with open(os.path.join(nova, "nova.conf"), encoding="utf-8") as fh:
        assert fh.read().split() == [
            "[DEFAULT]",
            "instances_path",
            "=",
            site["instances"],
            "resume_guests_state_on_host_boot",
            "=",
            "True",
        ]


def test_the_identities_move_with_pacemaker_except_the_one_evacuated(site):
    """The primitives and preferences the identities declared, on the controller's CIB
    file, as the real crm_simulate places them."""
    ops = site["minions"]["ops"]
    cib = site["pillar"]["hastack"]["pacemaker"]["cib_file"]
    nodes = ["cmp1", "cmp2", "cmp3"]

    def placement(failed):
        rc, out = ops.call(
            "pacemaker.simulate", f"online={nodes}", f"failed={failed}", f"cib_file={cib}"
        )
        assert rc == 0, out
        return {name: out[f"p_nova-compute-{name}"] for name in ("vh-a", "vh-b", "vh-c")}

    assert placement([]) == {"vh-a": "cmp1", "vh-b": "cmp2", "vh-c": "cmp3"}
    after = placement(["cmp1"])
    assert after["vh-a"] in ("cmp2", "cmp3") and after["vh-c"] == "cmp3"
    # The evacuate-mode identity never runs elsewhere: its VMs are evacuated instead.
    assert placement(["cmp3"]) == {"vh-a": "cmp1", "vh-b": "cmp2", "vh-c": None}

    # The failover's shift: vh-a off cmp1; vh-c is bound to cmp3, which is no failure.
    rc, shift = ops.call(
        "pacemaker.shift_away", "cmp1", f"nodes={nodes}", f"cib_file={cib}", "test=True"
    )
    assert rc == 0, shift
    assert list(shift["plan"]) == ["p_nova-compute-vh-a"]
    rc, shift = ops.call(
        "pacemaker.shift_away", "cmp3", f"nodes={nodes}", f"cib_file={cib}", "test=True"
    )
    assert rc == 0, shift
    assert shift["plan"] == {} and shift["refused"] == {}
    assert shift["skipped"]["p_nova-compute-vh-c"] == (
        "bound to cmp3: a -INFINITY location on every other node"
    )


def test_a_user_without_the_paths_caps_is_refused(site):
    """client.rabbit's caps name /rabbitmq: the MDS refuses it /nova."""
    cmp2 = site["minions"]["cmp2"]
    elsewhere = os.path.join(os.path.dirname(site["instances"]), "intruder")
    os.makedirs(elsewhere, exist_ok=True)
    # client.rabbit's files as the controller has them.
    ops_conf = site["minions"]["ops"].root + "/etc-ceph"
    rc, out = cmp2.call(
        "ceph_client.fs_mount",
        elsewhere,
        "shared",
        "/nova",
        "rabbit",
        f"{ops_conf}/store.client.rabbit.keyring",
        f"{ops_conf}/store.conf",
    )
    assert rc != 0
    assert "cannot mount /nova of CephFS 'shared' as client.rabbit" in str(out)
    assert "Operation not permitted" in str(out) or "rejected" in str(out)
    assert not site["nodes"]["cmp2"].mounted(elsewhere)


def test_a_mount_point_with_files_is_refused_and_nothing_changes(site, cephfs_lab, tmp_path):
    cmp1 = site["minions"]["cmp1"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "local-guest.img").write_text("someone's data")
    pillar = saltlocal_pillar(site["pillar"], ["compute"], cmp1.root + "/etc-ceph")
    mounts = dict(site["pillar"]["hastack"]["cephfs"]["mounts"])
    mounts[str(busy)] = {"fs": "shared", "path": "/nova", "user": "nova"}
    pillar["hastack"]["cephfs"] = {"mounts": mounts}
    before = cluster_snapshot(cephfs_lab)
    cmp1.set_overlay(pillar)
    try:
        rc, ret = apply(cmp1)
    finally:
        cmp1.set_overlay(saltlocal_pillar(site["pillar"], ["compute"], cmp1.root + "/etc-ceph"))
    assert rc != 0
    failed = [r.comment for r in states(ret).values() if r.result is False]
    assert failed == [
        f"hastack:cephfs:mounts:{busy}: mount point {busy} is not empty: its files would be "
        "hidden under the mount; move them away (or into the CephFS directory) first"
    ]
    assert not site["nodes"]["cmp1"].mounted(str(busy))
    assert os.listdir(busy) == ["local-guest.img"]
    assert cluster_snapshot(cephfs_lab) == before


@pytest.mark.parametrize(
    "mount, key, message",
    [
        (
            {"fs": "shared", "path": "../etc", "user": "nova"},
            "path",
            "'../etc' is outside filesystem shared",
        ),
        (
            {"fs": "shared", "path": "/rabbitmq", "user": "nova"},
            "user",
            "client.nova's mds caps do not let it read and write /rabbitmq of shared",
        ),
        ({"fs": "other", "path": "/nova", "user": "nova"}, "fs", "'other' is not defined in"),
        (
            {"fs": "shared", "path": "/nova", "user": "nova", "client": "nfs"},
            "client",
            "fuse or kernel",
        ),
    ],
)
def test_a_bad_mount_is_named_and_nothing_changes(site, cephfs_lab, mount, key, message):
    cmp2 = site["minions"]["cmp2"]
    pillar = saltlocal_pillar(site["pillar"], ["compute"], cmp2.root + "/etc-ceph")
    pillar["hastack"]["cephfs"] = {"mounts": {"/srv/instances": mount}}
    before = cluster_snapshot(cephfs_lab)
    cmp2.set_overlay(pillar)
    try:
        rc, out = apply(cmp2)
    finally:
        cmp2.set_overlay(saltlocal_pillar(site["pillar"], ["compute"], cmp2.root + "/etc-ceph"))
    assert rc != 0
    text = "\n".join(out) if isinstance(out, list) else str(out)
    assert f"hastack:cephfs:mounts:/srv/instances:{key}: " in text
    assert message in text
    assert not os.path.exists("/srv/instances")
    assert cluster_snapshot(cephfs_lab) == before


def test_a_fenced_machines_sessions_are_evicted_and_the_share_is_free_at_once(site, cephfs_lab):
    """cmp1 dies with a file open for writing in /nova (its ceph-fuse killed, as a
    fenced machine's is). cmp2 would block on that file until the MDS dropped cmp1's
    session (60 s); the admin minion evicts cmp1's sessions by host name and cmp2
    goes on at once. Runs last: cmp1's mount is dead afterwards."""
    instances = site["instances"]
    node1, node2 = site["nodes"]["cmp1"], site["nodes"]["cmp2"]
    writer = subprocess.Popen(  # pylint: disable=consider-using-with
        node1.wrap
        + [
            "sh",
            "-c",
            f"exec 3>>{instances}/held.img; echo cmp1 >&3; sync {instances}/held.img; "
            "exec sleep infinity",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while "cmp1" not in node2.run("cat", f"{instances}/held.img", check=False).stdout:
            assert time.monotonic() < deadline, "cmp1's write never showed on cmp2"
            time.sleep(0.2)
        (fuse,) = node1.fuse_pids()
        os.kill(fuse, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
    funcs, conn = admin_calls(site)
    # Through the ceph CLI here (ops's own ceph.conf); the incident's runs in
    # test_vm_failover go through libcephfs.
    cli = dict(
        conn, backend="cli", conf_dir=os.path.join(os.path.dirname(instances), "ops", "etc-ceph")
    )
    evicted = funcs["ceph_client.fs_evict"]("cmp1", **cli)
    assert [(e["entity"], e["root"]) for e in evicted["shared"]] == [("client.nova", "/nova")]
    assert list(evicted) == ["shared"]
    started = time.monotonic()
    node2.run("sh", "-c", f"echo cmp2 >> {instances}/held.img", timeout=30)
    assert time.monotonic() - started < 10
    assert node2.run("cat", f"{instances}/held.img").stdout.split()[-1] == "cmp2"
    # cmp2's session is not cmp1's: it stays; a second call finds nothing left.
    assert funcs["ceph_client.fs_evict"]("cmp1", fs="shared", **conn) == {}
    assert node2.run("ls", instances, timeout=10).returncode == 0

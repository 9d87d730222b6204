"""The example pillar applied with masterless salt-call against a real lab Ceph cluster."""

import base64
import copy
import os
import re
import shutil
import stat
import subprocess
import threading
import time

import pytest

from lab import saltlocal
from tests.helpers import (
    CINDER_KEY,
    GLANCE_KEY,
    admin_ceph,
    apply,
    assert_all_ok,
    cluster_snapshot,
    fake_key,
    files_snapshot,
    our_changes,
    rbd,
    states,
)


def image_cycle(conf, user, pool, name="hastack-check"):
    """Create, list and remove an image as ``user``; return the rbd results."""
    create = rbd(conf, user, "create", f"{pool}/{name}", "--size", "1M")
    listed = rbd(conf, user, "ls", pool)
    remove = rbd(conf, user, "rm", f"{pool}/{name}", "--no-progress")
    return create, listed, remove


def assert_can_use(conf, user, pool):
    create, listed, remove = image_cycle(conf, user, pool)
    assert create.returncode == 0, create.stderr
    assert "hastack-check" in listed.stdout.split()
    assert remove.returncode == 0, remove.stderr


def assert_refused(result):
    assert result.returncode != 0
    assert "Operation not permitted" in result.stderr or "Permission denied" in result.stderr, (
        result.stderr
    )


def test_apply_is_predicted_idempotent_and_gives_working_clients(make_minion):
    alice = make_minion("alice")
    rc, predicted = apply(alice, test=True)
    assert rc == 0 and isinstance(predicted, dict), predicted
    assert all(v["result"] in (None, True) for v in predicted.values())
    assert not os.path.exists(alice.conf_dir), "test=True must not write anything"
    assert cluster_snapshot(alice.lab)[0] == []

    rc, applied = apply(alice)
    assert_all_ok(rc, applied)
    # test=True predicted exactly what the real run did.
    assert our_changes(applied) == our_changes(predicted)
    assert set(saltlocal.changes_by_id(applied)) == set(saltlocal.changes_by_id(predicted))
    assert set(our_changes(applied)) == {
        "hastack-ceph-pool-images",
        "hastack-ceph-pool-volumes",
        "hastack-ceph-pool-vms",
        "hastack-ceph-user-glance",
        "hastack-ceph-user-cinder",
        "hastack-ceph-conf",
        "hastack-ceph-keyring-glance",
        "hastack-ceph-keyring-cinder",
        "hastack-glance-conf",
        "hastack-cinder-conf",
        "hastack-nova-conf",
        "hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6",
    }

    rc, again = apply(alice)
    assert_all_ok(rc, again)
    assert saltlocal.changes_by_id(again) == {}
    rc, again_test = apply(alice, test=True)
    assert rc == 0 and all(v["result"] is True for v in again_test.values())
    # The pre-rollout check by hand: the normalized tree, keys replaced by their pillar paths.
    rc, checked = alice.call("hastack.validate")
    assert (
        rc == 0
        and checked["ceph"]["users"]["glance"]["key_pillar"] == "hastack:ceph:users:glance:key"
    )
    assert GLANCE_KEY not in alice.last_output

    # The files: the keyrings have the pillar's owner, group and mode.
    glance_keyring = os.path.join(alice.conf_dir, "ceph.client.glance.keyring")
    st = os.stat(glance_keyring)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 65534, 65534)

    # Using only the files hastack wrote, the real rbd CLI works per the caps.
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    assert_can_use(conf, "glance", "images")
    assert_refused(rbd(conf, "glance", "create", "volumes/nope", "--size", "1M"))
    assert_refused(rbd(conf, "glance", "ls", "volumes"))
    assert_can_use(conf, "cinder", "volumes")
    assert_can_use(conf, "cinder", "vms")
    assert rbd(conf, "cinder", "ls", "images").returncode == 0  # read-only on images
    assert_refused(rbd(conf, "cinder", "create", "images/nope", "--size", "1M"))


def test_compute_node_gets_only_what_its_roles_need(make_minion, ceph_lab):
    alice = make_minion("alice")
    assert_all_ok(*apply(alice))
    # charlie is compute only and no admin minion: ceph.conf and cinder's keyring, nothing else;
    # glance's keyring owner need not exist there.
    charlie = make_minion(
        "charlie",
        {
            "hastack": {
                "ceph": {"users": {"glance": {"keyring": {"owner": "glance-only-on-controllers"}}}}
            }
        },
    )
    before = cluster_snapshot(ceph_lab)
    rc, ret = apply(charlie)
    assert_all_ok(rc, ret)
    assert not any("cluster-reachable" in k or "-user-" in k or "-pool-" in k for k in ret)
    assert sorted(os.listdir(charlie.conf_dir)) == ["ceph.client.cinder.keyring", "ceph.conf"]
    assert cluster_snapshot(ceph_lab) == before
    conf = os.path.join(charlie.conf_dir, "ceph.conf")
    assert_can_use(conf, "cinder", "volumes")
    with open(conf, encoding="utf-8") as fh:
        assert "[client.glance]" not in fh.read()


def test_key_rotation_reaches_cluster_and_keyring_and_old_key_is_refused(make_minion, tmp_path):
    alice = make_minion("alice")
    assert_all_ok(*apply(alice))
    old_keyring = str(tmp_path / "old-glance.keyring")
    shutil.copy(os.path.join(alice.conf_dir, "ceph.client.glance.keyring"), old_keyring)

    new_key = fake_key("FAKE-rotated-k3y")
    overlay = copy.deepcopy(alice.overlay)
    overlay["hastack"]["ceph"]["users"]["glance"]["key"] = new_key
    alice.set_overlay(overlay)

    rc, predicted = apply(alice, test=True)
    rc, rotated = apply(alice)
    assert_all_ok(rc, rotated)
    assert (
        our_changes(rotated)
        == our_changes(predicted)
        == {
            "hastack-ceph-user-glance": {"key": {"old": "(hidden)", "new": "(hidden)"}},
            "hastack-ceph-keyring-glance": {"key": {"old": "(hidden)", "new": "(hidden)"}},
        }
    )
    assert "rotated" in states(rotated)["hastack-ceph-user-glance"].comment
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    assert_can_use(conf, "glance", "images")
    refused = rbd(conf, "glance", "ls", "images", keyring=old_keyring)
    assert refused.returncode != 0
    assert saltlocal.changes_by_id(apply(alice)[1]) == {}


class ArgvRecorder:
    """Every command line this test's processes ran: from PATH shims that log the argv of
    each ceph/rbd call (exact), and from sampling /proc (catches anything else). Only
    descendants of this test process count: other work on the machine is not ours."""

    def __init__(self, tmp_path):
        self.shim_dir = tmp_path / "shims"
        self.shim_dir.mkdir()
        self.shim_log = tmp_path / "shim-argv.log"
        for tool in ("ceph", "rbd", "rados", "ceph-authtool"):
            real = shutil.which(tool)
            shim = self.shim_dir / tool
            shim.write_text(
                f'#!/bin/sh\nprintf "%s\\n" "$0 $*" >> {self.shim_log}\nexec {real} "$@"\n'
            )
            shim.chmod(0o755)
        self.seen = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def env(self):
        env = dict(os.environ)
        env["PATH"] = f"{self.shim_dir}:{env['PATH']}"
        return env

    def _sample(self):
        me = os.getpid()
        while not self._stop.is_set():
            parents, cmdlines = {}, {}
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/stat", "rb") as fh:
                            # ppid is the 2nd field after the ')' that closes the name.
                            parents[int(pid)] = int(fh.read().rsplit(b")", 1)[1].split()[1])
                        with open(f"/proc/{pid}/cmdline", "rb") as fh:
                            cmdlines[int(pid)] = fh.read().replace(b"\0", b" ")
                    except (OSError, IndexError, ValueError):
                        pass
            for pid, cmdline in cmdlines.items():
                ancestor = parents.get(pid)
                while ancestor not in (None, 0, 1, me):
                    ancestor = parents.get(ancestor)
                if ancestor == me:
                    self.seen.add(cmdline)
            time.sleep(0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def calls(self):
        return self.shim_log.read_text() if self.shim_log.exists() else ""


@pytest.mark.parametrize("backend", ["librados", "cli"])
def test_keys_appear_in_no_argv_output_log_or_job_cache(make_minion, tmp_path, backend):
    alice = make_minion("alice", {"hastack": {"ceph": {"backend": backend}}})
    secrets = [GLANCE_KEY, CINDER_KEY, base64.b64decode(GLANCE_KEY)[12:].decode()]
    with ArgvRecorder(tmp_path) as recorder:
        rc, ret = apply(alice, env=recorder.env(), log_level="debug")
        output = alice.last_output
        rc2, ret2 = apply(alice, test=True, env=recorder.env(), log_level="debug")
        output += alice.last_output
    assert_all_ok(rc, ret)
    # The apply set the libvirt secret too (the recipe's virsh put the key in argv there).
    assert states(ret)["hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6"].changes
    calls = recorder.calls()
    with open(alice.log_file, encoding="utf-8") as fh:
        debug_log = fh.read()
    # The apply really sent the commands (so the checks below are not vacuous)...
    assert any(b"salt-call" in argv for argv in recorder.seen)
    if backend == "cli":
        assert "auth import -i -" in calls and "osd pool create" in calls
        assert any(b"/ceph " in argv or b"bin/ceph " in argv for argv in recorder.seen)
        assert "ceph_client: running" in debug_log
    else:
        # ...through the binding, without a single ceph process.
        assert "librados mon_command auth import -i -" in debug_log
        assert "librados mon_command osd pool create" in debug_log
        assert calls == "" and not [a for a in recorder.seen if b"bin/ceph " in a]
    cached = files_snapshot(alice.cachedir)
    job_returns = [data for path, data in cached.items() if "/minion_jobs/" in path]
    assert len(job_returns) == 2 and all(b"hastack-ceph-user-glance" in r for r in job_returns)
    job_cache = b"".join(cached.values())
    for secret in secrets:
        assert secret not in calls
        assert not [argv for argv in recorder.seen if secret.encode() in argv]
        assert secret not in output
        assert secret not in debug_log
        assert secret.encode() not in job_cache
    # ...and the keys did reach the cluster and the keyrings.
    with open(os.path.join(alice.conf_dir, "ceph.client.glance.keyring"), encoding="utf-8") as fh:
        assert GLANCE_KEY in fh.read()


UNREACHABLE = "[v2:127.0.0.1:9/0,v1:127.0.0.1:7/0]"

BAD_INPUT = [
    ({"users": {"glance": {"key": None}}}, None, "hastack:ceph:users:glance:key: missing"),
    (
        {"users": {"glance": {"key": "AQAAAAAAAAAAABAA"}}},
        None,
        "hastack:ceph:users:glance:key: not a cephx key",
    ),
    (
        {"users": {"cinder": {"caps": {"osd": "profile rbd pool=backups"}}}},
        None,
        "hastack:ceph:users:cinder:caps:osd: pool 'backups' is not defined in hastack:ceph:pools",
    ),
    (
        {"users": {"cinder": {"caps": {"osd": "allow rwz pool=volumes"}}}},
        None,
        "hastack:ceph:users:cinder:caps:osd: unexpected 'rwz'",
    ),
    (
        {"users": {"glance": {"keyring": {"mode": "0964"}}}},
        None,
        "hastack:ceph:users:glance:keyring:mode",
    ),
    (
        {"users": {"glance": {"keyring": {"owner": "no-such-user"}}}},
        None,
        "hastack:ceph:users:glance:keyring:owner: user 'no-such-user' does not exist",
    ),
    (
        {"users": {"cinder": {"keyring": {"group": "no-such-group"}}}},
        None,
        "hastack:ceph:users:cinder:keyring:group: group 'no-such-group' does not exist",
    ),
    ({}, ["controller", "compte"], "hastack:roles: unknown role 'compte'"),
    (
        {"users": {"glance": {"roles": ["glance-api"]}}},
        None,
        "hastack:ceph:users:glance:roles: unknown role",
    ),
    # Found by trying README's documented forms as a new user: each used to get past
    # validation and fail later, or be applied silently.
    (
        {"users": {"backup": {"key": "AQAAAAAAAAAAABAARkFLRS1iYWNrdXAta2V5IQ==", "caps": {}}}},
        None,
        "hastack:ceph:users:backup:caps: required",
    ),
    (
        {"mon_host": "not-an-address"},
        ["controller"],
        "hastack:ceph:mon_host: host name 'not-an-address'",
    ),
    (
        {"pools": {"images": {"application": "rdb"}}},
        None,
        "hastack:ceph:pools:images:application: unknown pool application 'rdb'",
    ),
    (
        {"users": {"glance": {"keyring": {"mode": "0644"}}}},
        None,
        "hastack:ceph:users:glance:keyring:mode: 0644 lets every local user read the key",
    ),
    (
        {"mon_host": UNREACHABLE, "timeout": 2},
        None,
        f"at mon_host {UNREACHABLE} did not answer within 2 s (check hastack:ceph:mon_host",
    ),
]


@pytest.mark.parametrize(
    "ceph_overlay, roles, message",
    BAD_INPUT,
    ids=[m.split(":")[-1].strip()[:30] or m for _, _, m in BAD_INPUT],
)
def test_bad_input_is_named_and_changes_nothing(
    make_minion, ceph_lab, ceph_overlay, roles, message
):
    overlay = {"hastack": {"ceph": ceph_overlay}}
    if roles:
        overlay["hastack"]["roles"] = roles
    alice = make_minion("alice", overlay)
    before = cluster_snapshot(ceph_lab)
    for test in (True, False):
        started = time.monotonic()
        rc, ret = apply(alice, test=test)
        elapsed = time.monotonic() - started
        assert rc != 0
        text = alice.last_output
        assert message in text, text
        # An unreachable cluster is an error in bounded time, not a hang.
        assert elapsed < 60
    assert not os.path.exists(alice.conf_dir)
    assert cluster_snapshot(ceph_lab) == before
    # A render-time error stops everything: no state ran at all.
    if "mon_host" not in message:
        assert isinstance(ret, list) and re.search(r"Rendering SLS .* failed", ret[0])
        # The same check runs by hand before a rollout.
        rc, _ = alice.call("hastack.validate")
        assert rc != 0 and message in alice.last_output


def test_pool_serving_another_application_is_refused_naming_the_key(make_minion, ceph_lab):
    # An operator's pool that already serves rgw: hastack must not add rbd beside it
    # (Ceph asks "Are you SURE?") nor predict success it cannot deliver.
    admin_ceph(ceph_lab, "osd", "pool", "create", "images", "8")
    admin_ceph(ceph_lab, "osd", "pool", "application", "enable", "images", "rgw")
    alice = make_minion("alice")
    results = {}
    for test in (True, False):
        rc, ret = apply(alice, test=test)
        assert rc != 0
        results[test] = states(ret)["hastack-ceph-pool-images"]
    for state in results.values():
        assert state.result is False and state.changes == {}
        assert state.comment.startswith(
            "hastack:ceph:pools:images:application: pool images serves rgw, not rbd"
        )
    pools = {p["pool_name"]: p for p in admin_ceph(ceph_lab, "osd", "pool", "ls", "detail")}
    assert list(pools["images"]["application_metadata"]) == ["rgw"]
    # The user that needs the pool waited for it; nothing was made for it.
    assert admin_ceph(ceph_lab, "auth", "ls")["auth_dump"] and not [
        e for e in admin_ceph(ceph_lab, "auth", "ls")["auth_dump"] if e["entity"] == "client.glance"
    ]


def test_drift_in_any_managed_attribute_is_found_and_only_it_is_fixed(make_minion, ceph_lab):
    import libvirt  # pylint: disable=import-outside-toplevel

    alice = make_minion("alice")
    assert_all_ok(*apply(alice))
    # Out-of-band changes, one per kind of thing hastack manages.
    subprocess.run(
        ["ceph", "-c", ceph_lab["conf"], "auth", "caps", "client.glance", "mon", "allow r"],
        check=True,
        capture_output=True,
    )
    glance_keyring = os.path.join(alice.conf_dir, "ceph.client.glance.keyring")
    os.chmod(glance_keyring, 0o644)
    conf = os.path.join(alice.conf_dir, "ceph.conf")
    with open(conf, encoding="utf-8") as fh:
        text = fh.read()
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(
            text.replace(f"mon_host = {ceph_lab['mon_host']}", "mon_host = 127.0.0.1:1")
            + "\n# an operator's comment\n"
        )
    subprocess.run(
        [
            "ceph",
            "-c",
            ceph_lab["conf"],
            "osd",
            "pool",
            "application",
            "disable",
            "vms",
            "rbd",
            "--yes-i-really-mean-it",
        ],
        check=True,
        capture_output=True,
    )
    conn = libvirt.open(alice.libvirt["uri"])
    try:
        conn.listAllSecrets()[0].setValue(b"not the key")
    finally:
        conn.close()

    rc, predicted = apply(alice, test=True)
    rc, fixed = apply(alice)
    assert_all_ok(rc, fixed)
    hidden = {"old": "(hidden)", "new": "(hidden)"}
    assert (
        our_changes(fixed)
        == our_changes(predicted)
        == {
            "hastack-ceph-user-glance": {
                "caps": {
                    "old": {"mon": "allow r"},
                    "new": {"mon": "profile rbd", "osd": "profile rbd pool=images"},
                }
            },
            "hastack-ceph-keyring-glance": {"mode": {"old": "0644", "new": "0640"}},
            "hastack-ceph-conf": {
                "[global] mon_host": {"old": "127.0.0.1:1", "new": ceph_lab["mon_host"]}
            },
            "hastack-ceph-pool-vms": {"application": {"old": None, "new": "rbd"}},
            "hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6": {"value": hidden},
        }
    )
    # The operator's comment in ceph.conf stays.
    with open(conf, encoding="utf-8") as fh:
        assert "# an operator's comment" in fh.read()
    assert_can_use(conf, "glance", "images")
    assert saltlocal.changes_by_id(apply(alice)[1]) == {}

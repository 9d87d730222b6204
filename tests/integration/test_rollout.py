"""Pillar-based rollouts end to end: a real salt-master, six real minions in two
sites (osl-1..3, ber-1..3, each on its own loopback address; -1 is the site's Ceph
admin minion, -3 its canary), one real Ceph cluster per site, a real libvirtd per
minion. Each site's Pacemaker configuration is
a CIB file run by the real tools (``crm_simulate`` stands in for a live cluster here;
the failover tests run the live one).

The change rolled is the README's worked example: each site's client.cinder key
rotated, in the cluster, every keyring and every libvirt secret. The lab's first
apply ran before these tests (``rolloutlab.start``)."""

import base64
import configparser
import copy
import json
import os
import shutil
import subprocess
import tempfile

import libvirt
import pytest

from lab import rolloutlab
from tests.integration.bus import Bus

NEW = {
    # Obvious fakes: "osl-NEW-cinder!!", "ber-NEW-cinder!!".
    "osl": "AQAAAAAAAAAAABAAb3NsLU5FVy1jaW5kZXIhIQ==",
    "ber": "AQAAAAAAAAAAABAAYmVyLU5FVy1jaW5kZXIhIQ==",
}
THIRD = {
    # "osl-3rd-cinder!!", "ber-3rd-cinder!!".
    "osl": "AQAAAAAAAAAAABAAb3NsLTNyZC1jaW5kZXIhIQ==",
    "ber": "AQAAAAAAAAAAABAAYmVyLTNyZC1jaW5kZXIhIQ==",
}
# The admin minion first (the cluster's side of the change), then the canary, then
# the batch.
ORDER = [
    ("osl", "canary", ["osl-1"]),
    ("osl", "canary", ["osl-3"]),
    ("osl", "batch", ["osl-2"]),
    ("ber", "canary", ["ber-1"]),
    ("ber", "canary", ["ber-3"]),
    ("ber", "batch", ["ber-2"]),
]
APPLIED = [minions[0] for _, _, minions in ORDER]


@pytest.fixture(scope="module")
def lab():
    d = tempfile.mkdtemp(prefix="hastack-rollout-", dir="/var/tmp")
    try:
        the_lab = rolloutlab.start(d)
    except rolloutlab.LabError as err:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"the rollout lab did not start: {err}")
    the_lab.pillar = the_lab.base_pillar()
    try:
        yield the_lab
    finally:
        rolloutlab.remove(the_lab)


@pytest.fixture(scope="module")
def bus(lab):
    watching = Bus(lab)
    yield watching
    watching.close()


@pytest.fixture(autouse=True)
def converged(lab):
    """Every test starts and ends with the lab's pillar applied and healthy sites (a
    test that ended with ``lab.pillar`` rolled out leaves nothing to do)."""
    yield
    converged_already = (
        lab.written == lab.pillar and (lab.runner("rollout.status") or {}).get("state") == "done"
    )
    for site in rolloutlab.SITES:
        lab.ceph_cmd(site, "osd", "set-full-ratio", "0.95")
        lab.clear_failures(site)
    if not converged_already:
        lab.write_pillar(lab.pillar)
        got = lab.runner("rollout.apply", "hastack", restart=True)
        assert got["state"] == "done", got


def keyring(lab, minion):
    path = os.path.join(lab.conf_dir(minion), "ceph.client.cinder.keyring")
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def cluster_key(lab, site):
    out = lab.ceph_cmd(site, "auth", "get-key", "client.cinder")
    return out.strip()


def secret_value(lab, minion):
    conn = libvirt.open(lab.libvirt[minion]["uri"])
    try:
        return base64.b64encode(conn.secretLookupByUUIDString(rolloutlab.SECRET).value()).decode()
    finally:
        conn.close()


def snapshot(lab):
    return {
        "keyrings": {m: keyring(lab, m) for m in lab.minions},
        "secrets": {m: secret_value(lab, m) for m in lab.minions},
        "clusters": {s: cluster_key(lab, s) for s in rolloutlab.SITES},
    }


def rollout_events(bus, mark):
    return [(tag.rsplit("/", 1)[1], data) for _, tag, data in bus.since(mark, "hastack/rollout/")]


def apply_returns(bus, mark):
    """The minions whose state.apply returned since ``mark``, in the order the master
    received their returns."""
    return [
        data["id"]
        for _, tag, data in bus.since(mark, "salt/job/")
        if "/ret/" in tag and data.get("fun") == "state.apply"
    ]


def rotated(lab, **keys):
    return rolloutlab.changed_pillar(lab.pillar, **keys)


def test_a_key_rotation_previews_exactly_then_rolls_site_by_site_canary_first(lab, bus):
    before = snapshot(lab)
    lab.write_pillar(rotated(lab, **NEW))

    preview = lab.runner("rollout.apply", "hastack", test=True)
    assert preview["state"] == "done", preview
    assert snapshot(lab) == before  # test=True changes nothing

    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "done", got
    # The preview named exactly the states that then changed, minion by minion.
    assert got["changes"] == preview["changes"]
    assert set(got["changes"]) == set(lab.minions)
    assert "hastack-ceph-user-cinder" in got["changes"]["osl-1"]  # the admin minion

    events = rollout_events(bus, mark)
    kinds = [k for k, _ in events if k != "gate"]
    assert kinds == ["started", "canary", "canary", "batch", "canary", "canary", "batch", "done"]
    steps = [(d["site"], k, d["minions"]) for k, d in events if k in ("canary", "batch")]
    assert steps == ORDER
    assert [d["done"] for k, d in events if k in ("canary", "batch")] == [1, 2, 3, 4, 5, 6]
    gates = {(d["site"], d["step"], d["gate"]) for k, d in events if k == "gate"}
    assert ("osl", "canary 0", "ceph") in gates and ("ber", "batch 2", "pacemaker") in gates
    assert ("osl", "canary 1", "validate") in gates  # the next step's minions
    # The minions' own job returns came back in the same order.
    assert apply_returns(bus, mark) == APPLIED

    after = snapshot(lab)
    for minion in lab.minions:
        key = NEW[lab.site_of(minion)]
        assert key in after["keyrings"][minion]
        assert after["secrets"][minion] == key
    assert after["clusters"] == NEW

    again = lab.runner("rollout.apply", "hastack")
    assert again["state"] == "done" and again["changes"] == {}
    # No key in the events, the returns or the rollout's record on the master.
    record = os.path.join(
        lab.dir, "master", "cache", "hastack", "rollout", f"{got['rollout']}.json"
    )
    with open(record, encoding="utf-8") as fh:
        seen = fh.read() + json.dumps([rollout_events(bus, mark), got, preview], default=str)
    for key in (*NEW.values(), *rolloutlab.KEYS.values()):
        assert key not in seen
    # Each site's key reaches that site's minions only (README's pillar layout).
    pillars = lab.client().cmd(
        lab.minions, "pillar.items", kwarg={"unmask": True}, tgt_type="list", timeout=60
    )
    for minion, items in pillars.items():
        mine, other = ("osl", "ber") if minion.startswith("osl") else ("ber", "osl")
        assert NEW[mine] in json.dumps(items) and NEW[other] not in json.dumps(items)
    lab.pillar = rotated(lab, **NEW)


def test_a_change_that_breaks_in_the_first_sites_canary_touches_nothing_else(lab, bus):
    before = snapshot(lab)
    broken = rotated(lab, osl=THIRD["osl"], ber=THIRD["ber"])
    # The canary's files cannot be written there: the change breaks on osl-3.
    broken["node_osl_3"]["hastack"]["minion"]["ceph"]["conf_dir"] = "/proc/hastack-nowhere"
    lab.write_pillar(broken)
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted"
    assert got["halted"]["site"] == "osl" and got["halted"]["step"] == "canary 1"
    assert got["halted"]["minion"] == "osl-3" and got["halted"]["state"].startswith("hastack-ceph")
    assert got["retcode"] == 1
    assert apply_returns(bus, mark) == ["osl-1", "osl-3"]
    kinds = [k for k, _ in rollout_events(bus, mark) if k != "gate"]
    assert kinds == ["started", "canary", "halted"]
    after = snapshot(lab)
    # The site's cluster went with its canary (its admin minion first); nothing else.
    assert after["clusters"] == dict(before["clusters"], osl=THIRD["osl"])
    for minion in ("osl-2", "ber-1", "ber-2", "ber-3"):
        assert after["keyrings"][minion] == before["keyrings"][minion]
        assert after["secrets"][minion] == before["secrets"][minion]
    # A halted rollout is not started over by accident.
    again = lab.runner("rollout.apply", "hastack")
    assert "rollout.resume" in again["error"] and again["retcode"] == 1


def test_ceph_health_err_in_the_second_site_halts_after_the_first_then_resume_finishes(lab, bus):
    lab.write_pillar(rotated(lab, **THIRD))
    lab.ceph_cmd("ber", "osd", "set-full-ratio", "0.5")  # OSD_OUT_OF_ORDER_FULL: HEALTH_ERR
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted", got
    halted = got["halted"]
    assert (halted["site"], halted["step"], halted["gate"]) == ("ber", "canary 0", "ceph")
    assert "ber-1: Ceph is HEALTH_ERR" in halted["message"]
    # After osl's last batch, before ber's first step: ber is not touched.
    assert apply_returns(bus, mark) == APPLIED[:3]
    assert cluster_key(lab, "ber") == NEW["ber"]

    lab.ceph_cmd("ber", "osd", "set-full-ratio", "0.95")
    mark = bus.mark()
    done = lab.runner("rollout.resume")
    assert done["state"] == "done", done
    assert done["rollout"] == got["rollout"]
    # What was done is not applied again: only ber's steps ran.
    assert apply_returns(bus, mark) == APPLIED[3:]
    kinds = [k for k, _ in rollout_events(bus, mark) if k != "gate"]
    assert kinds == ["resumed", "canary", "canary", "batch", "done"]
    assert cluster_key(lab, "ber") == THIRD["ber"]
    lab.pillar = rotated(lab, **THIRD)


def test_a_failed_pacemaker_action_halts_before_the_site_is_touched(lab, bus):
    lab.write_pillar(rotated(lab, osl=NEW["osl"]))
    lab.fail_resource("osl", "p_api_osl", "osl-2")
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted", got
    halted = got["halted"]
    assert (halted["site"], halted["step"], halted["gate"]) == ("osl", "canary 0", "pacemaker")
    assert "failed action p_api_osl_monitor_10000 on osl-2" in halted["message"]
    assert apply_returns(bus, mark) == []
    lab.clear_failures("osl")
    mark = bus.mark()
    done = lab.runner("rollout.resume", got["rollout"])
    assert done["state"] == "done", done
    assert apply_returns(bus, mark) == APPLIED
    lab.pillar = rotated(lab, osl=NEW["osl"])


def test_a_resource_the_change_adds_and_the_cluster_does_not_start_halts_the_next_step(lab, bus):
    changed = copy.deepcopy(lab.pillar)
    pcmk = changed["common"]["hastack"]["sites"]["osl"]["pacemaker"]
    pcmk["primitives"]["p_worker_osl"] = {"agent": "ocf:pacemaker:Dummy"}
    lab.write_pillar(changed)
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted", got
    halted = got["halted"]
    # osl-1 wrote it into the CIB; nothing runs it (until the cluster does).
    assert (halted["site"], halted["step"], halted["gate"]) == ("osl", "canary 1", "pacemaker")
    assert "resource p_worker_osl is not started" in halted["message"]
    assert apply_returns(bus, mark) == APPLIED[:1]
    lab.run_cluster("osl")
    mark = bus.mark()
    done = lab.runner("rollout.resume")
    assert done["state"] == "done", done
    assert apply_returns(bus, mark) == APPLIED[1:]
    lab.pillar = changed


def test_an_operator_gate_holds_the_site_until_it_passes(lab, bus):
    ready = os.path.join(lab.dir, "osl-ready")
    gated = copy.deepcopy(lab.pillar)
    gated["common"]["hastack"]["sites"]["osl"]["rollout"]["gates"] = {
        "ready": {"fun": "cmd.run", "args": [f"test -e {ready}"], "tgt": "site"}
    }
    lab.write_pillar(gated)
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted", got
    assert (got["halted"]["site"], got["halted"]["gate"]) == ("osl", "ready")
    with open(ready, "w", encoding="utf-8"):
        pass
    done = lab.runner("rollout.resume")
    assert done["state"] == "done", done
    lab.pillar = gated


def test_a_bad_minion_pillar_in_the_second_site_halts_before_that_minion(lab, bus):
    bad = copy.deepcopy(lab.pillar)
    bad["node_ber_3"]["hastack"]["roles"] = ["compute", "kitchen"]
    lab.write_pillar(bad)
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert got["state"] == "halted", got
    halted = got["halted"]
    assert (halted["site"], halted["step"], halted.get("gate")) == (
        "ber",
        "canary 1",
        "validate",
    ), halted
    assert "ber-3: hastack:roles: unknown role 'kitchen'" in halted["message"]
    # ber-3 was validated before its step: nothing ran there.
    assert apply_returns(bus, mark) == APPLIED[:4]
    lab.write_pillar(lab.pillar)
    done = lab.runner("rollout.resume")
    assert done["state"] == "done", done


@pytest.mark.parametrize(
    "change, error",
    [
        (
            lambda p: p["common"]["hastack"]["sites"]["osl"]["rollout"].update(canary=["ber-1"]),
            "hastack:sites:osl:rollout:canary: not minions of site osl: ber-1",
        ),
        (
            lambda p: p["node_ber_2"]["hastack"].pop("site"),
            "hastack:site: minion ber-2 is in no site",
        ),
        (
            lambda p: p["node_ber_2"]["hastack"].update(site="par"),
            "hastack:site: unknown site 'par' for minion ber-2",
        ),
        (
            lambda p: p["common"]["hastack"]["sites"]["ber"].pop("ceph"),
            "hastack:sites:ber:ceph: required",
        ),
    ],
)
def test_bad_site_pillars_are_named_and_nothing_runs(lab, bus, change, error):
    bad = copy.deepcopy(lab.pillar)
    change(bad)
    lab.write_pillar(bad)
    mark = bus.mark()
    got = lab.runner("rollout.apply", "hastack")
    assert error in got["error"] and got["retcode"] == 1
    assert apply_returns(bus, mark) == []
    assert rollout_events(bus, mark) == []


def test_salt_run_prints_progress_and_the_final_table(lab):
    rc, out = lab.salt_run("rollout.apply", "hastack", "test=True")
    assert rc == 0, out
    assert "osl canary 1: osl-3" in out and "ber batch 2: ber-2" in out
    assert "site       step      state    minions" in out


SECRET_2 = "0b9a6a3c-1d2e-4f5a-8b7c-9d0e1f2a3b4c"
CINDER_2 = {
    # "osl-cinder-two!!", "ber-cinder-two!!".
    "osl": "AQAAAAAAAAAAABAAb3NsLWNpbmRlci10d28hIQ==",
    "ber": "AQAAAAAAAAAAABAAYmVyLWNpbmRlci10d28hIQ==",
}


def with_consumers(lab, pillar, user, secret):
    """Cinder and Nova on every minion use ``user`` and libvirt secret ``secret``."""
    out = copy.deepcopy(pillar)
    common = out["common"]["hastack"]
    common["cinder"] = {
        "backends": {"ceph": {"pool": "volumes", "user": user, "secret_uuid": secret}}
    }
    common["nova"] = {"pool": "volumes", "user": user, "secret_uuid": secret}
    for minion in lab.minions:
        etc = os.path.join(lab.dir, "minions", minion, "etc")
        own = out[f"node_{minion.replace('-', '_')}"]["hastack"]["minion"]
        own["cinder"] = {
            "config_file": os.path.join(etc, "cinder", "cinder.conf"),
            "systemd_dir": os.path.join(etc, "systemd"),
            "upstart_dir": os.path.join(etc, "init"),
        }
        own["nova"] = {"config_file": os.path.join(etc, "nova", "nova.conf")}
        for sub in ("cinder", "nova", "systemd", "init"):
            os.makedirs(os.path.join(etc, sub), exist_ok=True)
    return out


def authenticates(lab, minion, user):
    """Whether the site's cluster accepts ``user`` with the key in ``minion``'s keyring
    (``rbd ls`` as that user, as Cinder would connect)."""
    facts = lab.ceph[lab.site_of(minion)]
    keyring_path = os.path.join(lab.conf_dir(minion), f"ceph.client.{user}.keyring")
    proc = subprocess.run(
        [
            "rbd",
            "-m",
            facts["mon_host"],
            "--id",
            user,
            "--keyring",
            keyring_path,
            "--conf",
            "/dev/null",
            "-p",
            "volumes",
            "ls",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0


def ini_value(path, section, option):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(path)
    return parser.get(section, option, fallback=None)


def test_the_readme_rotation_the_old_key_is_refused_only_when_every_consumer_holds_the_new(lab):
    before = with_consumers(lab, lab.pillar, "cinder", rolloutlab.SECRET)
    lab.write_pillar(before)
    rc, out = lab.salt_run("rollout.apply", "hastack")
    assert rc == 0, out

    # 1. A second user with the new key; every consumer moves to it, site by site.
    moving = with_consumers(lab, lab.pillar, "cinder-2", SECRET_2)
    common = moving["common"]["hastack"]
    common["ceph"]["users"]["cinder-2"] = copy.deepcopy(common["ceph"]["users"]["cinder"])
    common["libvirt"]["secrets"][SECRET_2] = {"ceph_user": "cinder-2"}
    for site, key in CINDER_2.items():
        common["sites"][site]["ceph"]["users"]["cinder-2"] = {"key": key}
    lab.write_pillar(moving)
    rc, out = lab.salt_run("rollout.apply", "hastack", "test=True")
    assert rc == 0, out
    rc, out = lab.salt_run("rollout.apply", "hastack")
    assert rc == 0, out
    for minion in lab.minions:
        etc = os.path.join(lab.dir, "minions", minion, "etc")
        assert (
            ini_value(os.path.join(etc, "nova", "nova.conf"), "libvirt", "rbd_user") == "cinder-2"
        )
        assert (
            ini_value(os.path.join(etc, "nova", "nova.conf"), "libvirt", "rbd_secret_uuid")
            == SECRET_2
        )
        assert (
            ini_value(os.path.join(etc, "cinder", "cinder.conf"), "ceph", "rbd_user") == "cinder-2"
        )
        assert authenticates(lab, minion, "cinder-2")
        # The old key still works for anything not yet moved (instances started
        # with the old secret): nothing is refused yet.
        assert authenticates(lab, minion, "cinder")

    # 2. Every consumer holds the new key: the old user leaves the pillar, and the
    # clean SLS removes it, its keyrings and its secret.
    done = copy.deepcopy(moving)
    common = done["common"]["hastack"]
    del common["ceph"]["users"]["cinder"]
    del common["libvirt"]["secrets"][rolloutlab.SECRET]
    for site in rolloutlab.SITES:
        del common["sites"][site]["ceph"]["users"]["cinder"]
    lab.write_pillar(done)
    rc, out = lab.salt_run("rollout.apply", "hastack.clean")
    assert rc == 0, out
    for site in rolloutlab.SITES:
        assert "client.cinder\n" not in lab.ceph_cmd(site, "auth", "ls") + "\n"
    for minion in lab.minions:
        assert not os.path.exists(os.path.join(lab.conf_dir(minion), "ceph.client.cinder.keyring"))
        assert authenticates(lab, minion, "cinder-2")
    conn = libvirt.open(lab.libvirt["osl-2"]["uri"])
    try:
        assert conn.listSecrets() == [SECRET_2]
    finally:
        conn.close()

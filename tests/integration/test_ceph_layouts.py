"""A Ceph layout other than the workshop's, applied from scratch on a real lab cluster:
another cluster name, other pools and users, grants mixing read-write, read-only and
plain ``allow`` across several pools, keyring modes 0600 and 0640. The real ``rbd`` CLI,
as each user with only the files hastack wrote, gets exactly the access its caps grant."""

import os
import stat
import subprocess

import pytest

from lab import saltlocal
from tests.helpers import admin_ceph, apply, rbd

USERS = {
    # read-write on gold, read-only on silver, nothing on backups
    "app1": {
        "caps": {
            "mon": "profile rbd",
            "osd": "profile rbd pool=gold, profile rbd-read-only pool=silver",
        },
        "keyring": {"owner": "root", "group": "nogroup", "mode": "0640"},
    },
    # read-only everywhere it is allowed
    "reporter": {
        "caps": {
            "mon": "profile rbd",
            "osd": "profile rbd-read-only pool=gold, profile rbd-read-only pool=silver",
        },
        "keyring": {"mode": "0600"},
    },
    # plain allow grants: rwx on backups, read on gold (listing images calls a class
    # method: plain "r" is not enough, Ceph wants class-read too)
    "backup": {
        "caps": {"mon": "allow r", "osd": "allow rwx pool=backups, allow r class-read pool=gold"},
        "keyring": {"mode": "0600"},
    },
}
# (user, pool): can it write (create an image)? can it read (list images)?
ACCESS = {
    ("app1", "gold"): (True, True),
    ("app1", "silver"): (False, True),
    ("app1", "backups"): (False, False),
    ("reporter", "gold"): (False, True),
    ("reporter", "silver"): (False, True),
    ("reporter", "backups"): (False, False),
    ("backup", "backups"): (True, True),
    ("backup", "gold"): (False, True),
    ("backup", "silver"): (False, False),
}


def gen_key():
    return subprocess.run(
        ["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def prod_minion(ceph_lab, tmp_path):
    conf_dir = str(tmp_path / "etc-ceph")
    users = {name: dict(spec, key=gen_key(), roles=["storage"]) for name, spec in USERS.items()}
    pillar = {
        "hastack": {
            "site": "lab2",
            "roles": ["storage"],
            "ceph": {
                "cluster": "prod",
                "conf_dir": conf_dir,
                "fsid": ceph_lab["fsid"],
                "mon_host": ceph_lab["mon_host"],
                "admin_minion": "ops1",
                "admin_keyring": ceph_lab["admin_keyring"],
                "pools": {"gold": {"pg_num": 8}, "silver": {"pg_num": 8}, "backups": {"pg_num": 8}},
                "users": users,
            },
        }
    }
    minion = saltlocal.Minion(str(tmp_path / "minion"), "ops1", pillar, example=False)
    minion.conf_dir = conf_dir
    return minion


def test_other_layout_gives_each_user_exactly_its_access(prod_minion, ceph_lab):
    rc, predicted = apply(prod_minion, test=True)
    assert rc == 0, prod_minion.last_output
    rc, ret = apply(prod_minion)
    assert rc == 0, prod_minion.last_output
    assert saltlocal.changes_by_id(apply(prod_minion)[1]) == {}
    assert set(saltlocal.changes_by_id(predicted)) == set(saltlocal.changes_by_id(ret))

    # Files named by the cluster, with the modes asked for.
    conf_dir = prod_minion.conf_dir
    assert sorted(os.listdir(conf_dir)) == [
        "prod.client.app1.keyring",
        "prod.client.backup.keyring",
        "prod.client.reporter.keyring",
        "prod.conf",
    ]
    modes = {
        name: stat.S_IMODE(os.stat(os.path.join(conf_dir, f"prod.client.{name}.keyring")).st_mode)
        for name in USERS
    }
    assert modes == {"app1": 0o640, "reporter": 0o600, "backup": 0o600}
    pools = {p["pool_name"]: p for p in admin_ceph(ceph_lab, "osd", "pool", "ls", "detail")}
    assert {"gold", "silver", "backups"} <= set(pools)
    assert all(
        list(pools[p]["application_metadata"]) == ["rbd"] for p in ("gold", "silver", "backups")
    )

    conf = os.path.join(conf_dir, "prod.conf")
    # Each pool holds an image made by the admin, so that reading has something to list.
    for pool in ("gold", "silver", "backups"):
        subprocess.run(
            ["rbd", "-c", ceph_lab["conf"], "create", f"{pool}/seed", "--size", "1M"],
            check=True,
            capture_output=True,
        )
    seen = {}
    for (user, pool), _ in ACCESS.items():
        created = rbd(conf, user, "create", f"{pool}/by-{user}", "--size", "1M")
        listed = rbd(conf, user, "ls", pool)
        seen[(user, pool)] = (
            created.returncode == 0,
            listed.returncode == 0 and "seed" in listed.stdout.split(),
        )
    assert seen == ACCESS

"""Pure logic of the ceph_client module: keys, caps, modes, pillar checks."""

import base64
import copy
import struct

import pytest
from salt.exceptions import SaltInvocationError

from tests.helpers import load_module

cc = load_module("_modules", "ceph_client")

GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
POOLS = ["images", "volumes", "vms"]


def make_key(secret=b"0123456789abcdef", ctype=1, length=16):
    return base64.b64encode(struct.pack("<HIIH", ctype, 0, 0, length) + secret).decode()


class TestKeys:
    def test_real_and_fake_keys_are_valid(self):
        assert cc.key_valid(GLANCE_KEY)
        assert cc.key_valid("AQBy7gRrGTiOCBAAElZWfyqYXJ3LLjux/1oetw==")  # made by ceph-authtool

    @pytest.mark.parametrize("bad", [
        "", "not base64!", base64.b64encode(b"short").decode(),
        make_key(ctype=2), make_key(length=32), make_key(secret=b"x" * 15), None, 42,
    ])
    def test_malformed_keys_are_refused(self, bad):
        assert not cc.key_valid(bad)


class TestCaps:
    def test_workshop_caps_normalize(self):
        caps = cc.parse_caps(
            {"mon": "profile rbd",
             "osd": "profile rbd pool=volumes,profile rbd  pool=vms, profile rbd-read-only pool images"},
            pools=POOLS,
        )
        assert caps == {
            "mon": "profile rbd",
            "osd": "profile rbd pool=volumes, profile rbd pool=vms, profile rbd-read-only pool=images",
        }

    @pytest.mark.parametrize("caps", [
        {"mon": "allow r", "osd": "allow class-read object_prefix rbd_children, allow rwx pool=images"},
        {"mon": "allow *", "osd": "allow *", "mgr": "allow *", "mds": "allow *"},
        {"mon": 'allow command "auth get"'},
        {"mon": "allow service mgr r"},
        {"osd": "allow rw pool=images namespace=ns1"},
        {"osd": "allow rwx tag rbd data=images"},
        {"mgr": "profile rbd pool=images"},
    ])
    def test_accepted_forms(self, caps):
        assert set(cc.parse_caps(caps, pools=POOLS)) == set(caps)

    @pytest.mark.parametrize("caps, message", [
        ({"osd": "profile rbd pool=backups"}, "pool 'backups' is not defined in hastack:ceph:pools"),
        ({"osd": "profile rdb pool=images"}, "unknown osd profile 'rdb'"),
        ({"osd": "grant rwx"}, "starts with 'allow' or 'profile'"),
        ({"osd": "allow pool=images"}, "'allow' needs permissions"),
        ({"osd": "allow rwq"}, "unexpected 'rwq'"),
        ({"osd": "allow rw, "}, "empty grant"),
        ({"osd": 'allow "rw'}, "cannot parse"),
        ({"rgw": "allow *"}, "unknown daemon type"),
        ({"mon": ""}, "must be a non-empty string"),
        ("profile rbd", "must be a mapping"),
    ])
    def test_errors_name_the_key(self, caps, message):
        with pytest.raises(SaltInvocationError) as err:
            cc.parse_caps(caps, pools=POOLS, where="hastack:ceph:users:glance:caps")
        assert str(err.value).startswith("hastack:ceph:users:glance:caps")
        assert message in str(err.value)

    def test_cluster_spelling_compares_equal(self):
        # What the cluster hands back for caps someone set with other spacing.
        assert cc.caps_normalize({"osd": "profile rbd  pool images,profile rbd pool=vms"}) == {
            "osd": "profile rbd pool=images, profile rbd pool=vms"
        }


class TestMode:
    @pytest.mark.parametrize("given, wanted", [("0640", "0640"), ("640", "0640"), (0o640, "0640"),
                                               ("0o600", "0600"), ("0400", "0400")])
    def test_normalized(self, given, wanted):
        assert cc.keyring_mode(given) == wanted

    @pytest.mark.parametrize("bad", ["0648", "rw-r-----", 640, "01777", True, None])
    def test_refused(self, bad):
        with pytest.raises(SaltInvocationError, match="hastack:ceph:users:glance:keyring:mode"):
            cc.keyring_mode(bad, "hastack:ceph:users:glance:keyring:mode")


def example_ceph():
    return {
        "cluster": "ceph", "conf_dir": "/etc/ceph", "timeout": 10,
        "fsid": "4b5c8c0a-ff60-454b-a1b4-9747aa737d19", "mon_host": "127.0.0.1:6789",
        "admin_minion": "alice",
        "pools": {"images": {"pg_num": 32}, "volumes": {}, "vms": {"application": "rbd"}},
        "users": {
            "glance": {"key": GLANCE_KEY, "caps": {"mon": "profile rbd", "osd": "profile rbd pool=images"},
                       "keyring": {"owner": "root", "group": "root", "mode": "0640"},
                       "roles": ["controller"]},
        },
    }


ROLES = ("controller", "compute", "network", "storage")


class TestValidate:
    def test_normalized_without_keys(self):
        out = cc.validate(example_ceph(), roles=["controller"], known_roles=ROLES)
        glance = out["users"]["glance"]
        assert "key" not in glance and glance["key_pillar"] == "hastack:ceph:users:glance:key"
        assert glance["keyring"]["path"] == "/etc/ceph/ceph.client.glance.keyring"
        assert out["pools"]["volumes"] == {"pg_num": 32, "application": "rbd"}
        assert out["admin_keyring"] == "/etc/ceph/ceph.client.admin.keyring"
        assert GLANCE_KEY not in repr(out)

    @pytest.mark.parametrize("path, value, message", [
        (("users", "glance", "key"), None, "hastack:ceph:users:glance:key: missing"),
        (("users", "glance", "key"), "AQAAAAAAAAAAABAA", "hastack:ceph:users:glance:key: not a cephx key"),
        (("users", "glance", "caps", "osd"), "profile rbd pool=backups", "hastack:ceph:users:glance:caps:osd: pool 'backups'"),
        (("users", "glance", "caps", "osd"), "allow pool=images", "hastack:ceph:users:glance:caps:osd: 'allow' needs"),
        (("users", "glance", "keyring", "mode"), "0964", "hastack:ceph:users:glance:keyring:mode"),
        (("users", "glance", "keyring", "owner"), "no-such-user", "hastack:ceph:users:glance:keyring:owner: user 'no-such-user'"),
        (("users", "glance", "keyring", "group"), "no-such-group", "hastack:ceph:users:glance:keyring:group: group 'no-such-group'"),
        (("users", "glance", "roles"), ["controler"], "hastack:ceph:users:glance:roles: unknown role 'controler'"),
        (("users", "glance", "colour"), "blue", "hastack:ceph:users:glance: unknown setting(s): colour"),
        (("fsid",), "not-a-uuid", "hastack:ceph:fsid"),
        (("mon_host",), "", "hastack:ceph:mon_host: required"),
        (("conf_dir",), "etc/ceph", "hastack:ceph:conf_dir: must be an absolute path"),
        (("pools", "images", "pg_num"), "32", "hastack:ceph:pools:images:pg_num"),
        (("timeout",), 0, "hastack:ceph:timeout"),
        (("mon_hosts",), "127.0.0.1", "hastack:ceph: unknown setting(s): mon_hosts"),
    ])
    def test_each_error_names_its_key(self, path, value, message):
        ceph = copy.deepcopy(example_ceph())
        node = ceph
        for part in path[:-1]:
            node = node[part]
        if value is None:
            del node[path[-1]]
        else:
            node[path[-1]] = value
        with pytest.raises(SaltInvocationError) as err:
            cc.validate(ceph, roles=["controller"], known_roles=ROLES)
        assert message in str(err.value)

    def test_owner_only_checked_where_the_keyring_goes(self):
        ceph = example_ceph()
        ceph["users"]["glance"]["keyring"]["owner"] = "glance-on-controllers-only"
        # A compute node does not get glance's keyring: its owner need not exist there.
        cc.validate(ceph, roles=["compute"], known_roles=ROLES)
        with pytest.raises(SaltInvocationError, match="keyring:owner"):
            cc.validate(ceph, roles=["controller"], known_roles=ROLES)

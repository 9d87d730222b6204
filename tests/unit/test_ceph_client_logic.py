"""The cephx grammar (keys, caps, modes, mon_host) and the Ceph pillar schema, imported
without Salt's loader."""

import base64
import copy
import struct

import pytest
from salt.exceptions import SaltInvocationError

from hastack_utils import cephx, schema
from tests.helpers import load_module

GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
POOLS = ["images", "volumes", "vms"]


def make_key(secret=b"0123456789abcdef", ctype=1, length=16):
    return base64.b64encode(struct.pack("<HIIH", ctype, 0, 0, length) + secret).decode()


class TestKeys:
    def test_real_and_fake_keys_are_valid(self):
        assert cephx.key_valid(GLANCE_KEY)
        assert cephx.key_valid("AQBy7gRrGTiOCBAAElZWfyqYXJ3LLjux/1oetw==")  # made by ceph-authtool

    @pytest.mark.parametrize(
        "bad",
        [
            "",
            "not base64!",
            base64.b64encode(b"short").decode(),
            make_key(ctype=2),
            make_key(length=32),
            make_key(secret=b"x" * 15),
            None,
            42,
        ],
    )
    def test_malformed_keys_are_refused(self, bad):
        assert not cephx.key_valid(bad)


class TestCaps:
    def test_workshop_caps_normalize(self):
        caps = cephx.parse_caps(
            {
                "mon": "profile rbd",
                "osd": "profile rbd pool=volumes,profile rbd  pool=vms, profile rbd-read-only pool images",
            },
            pools=POOLS,
        )
        assert caps == {
            "mon": "profile rbd",
            "osd": "profile rbd pool=volumes, profile rbd pool=vms, profile rbd-read-only pool=images",
        }

    @pytest.mark.parametrize(
        "caps",
        [
            {
                "mon": "allow r",
                "osd": "allow class-read object_prefix rbd_children, allow rwx pool=images",
            },
            {"mon": "allow *", "osd": "allow *", "mgr": "allow *", "mds": "allow *"},
            {"mon": 'allow command "auth get"'},
            {"mon": "allow service mgr r"},
            {"osd": "allow rw pool=images namespace=ns1"},
            {"osd": "allow rwx tag rbd data=images"},
            {"mgr": "profile rbd pool=images"},
        ],
    )
    def test_accepted_forms(self, caps):
        assert set(cephx.parse_caps(caps, pools=POOLS)) == set(caps)

    @pytest.mark.parametrize(
        "caps, message",
        [
            (
                {"osd": "profile rbd pool=backups"},
                "pool 'backups' is not defined in hastack:ceph:pools",
            ),
            ({"osd": "profile rdb pool=images"}, "unknown osd profile 'rdb'"),
            ({"osd": "grant rwx"}, "starts with 'allow' or 'profile'"),
            ({"osd": "allow pool=images"}, "'allow' needs permissions"),
            ({"osd": "allow rwq"}, "unexpected 'rwq'"),
            ({"osd": "allow rw, "}, "empty grant"),
            ({"osd": 'allow "rw'}, "cannot parse"),
            ({"rgw": "allow *"}, "unknown daemon type"),
            ({"mon": ""}, "must be a non-empty string"),
            ("profile rbd", "must be a mapping"),
        ],
    )
    def test_errors_name_the_key(self, caps, message):
        with pytest.raises(SaltInvocationError) as err:
            cephx.parse_caps(caps, pools=POOLS, where="hastack:ceph:users:glance:caps")
        assert str(err.value).startswith("hastack:ceph:users:glance:caps")
        assert message in str(err.value)

    def test_cluster_spelling_compares_equal(self):
        # What the cluster hands back for caps someone set with other spacing.
        assert cephx.caps_normalize({"osd": "profile rbd  pool images,profile rbd pool=vms"}) == {
            "osd": "profile rbd pool=images, profile rbd pool=vms"
        }


class TestMode:
    @pytest.mark.parametrize(
        "given, wanted",
        [("0640", "0640"), ("640", "0640"), (0o640, "0640"), ("0o600", "0600"), ("0400", "0400")],
    )
    def test_normalized(self, given, wanted):
        assert cephx.file_mode(given) == wanted

    @pytest.mark.parametrize("bad", ["0648", "rw-r-----", 640, "01777", True, None])
    def test_refused(self, bad):
        with pytest.raises(SaltInvocationError, match="hastack:ceph:users:glance:keyring:mode"):
            cephx.file_mode(bad, "hastack:ceph:users:glance:keyring:mode")


def example_ceph():
    return {
        "cluster": "ceph",
        "conf_dir": "/etc/ceph",
        "timeout": 10,
        "fsid": "4b5c8c0a-ff60-454b-a1b4-9747aa737d19",
        "mon_host": "127.0.0.1:6789",
        "admin_minion": "alice",
        "pools": {"images": {"pg_num": 32}, "volumes": {}, "vms": {"application": "rbd"}},
        "users": {
            "glance": {
                "key": GLANCE_KEY,
                "caps": {"mon": "profile rbd", "osd": "profile rbd pool=images"},
                "keyring": {"owner": "root", "group": "root", "mode": "0640"},
                "roles": ["controller"],
            },
        },
    }


ROLES = ("controller", "compute", "network", "storage")


class TestValidate:
    def test_normalized_without_keys(self):
        out = schema.validate_ceph(example_ceph(), roles=["controller"], known_roles=ROLES)
        glance = out["users"]["glance"]
        assert "key" not in glance and glance["key_pillar"] == "hastack:ceph:users:glance:key"
        assert glance["keyring"]["path"] == "/etc/ceph/ceph.client.glance.keyring"
        assert out["pools"]["volumes"] == {"pg_num": 32, "application": "rbd"}
        assert out["admin_keyring"] == "/etc/ceph/ceph.client.admin.keyring"
        assert GLANCE_KEY not in repr(out)

    @pytest.mark.parametrize(
        "path, value, message",
        [
            (("users", "glance", "key"), None, "hastack:ceph:users:glance:key: missing"),
            (
                ("users", "glance", "key"),
                "AQAAAAAAAAAAABAA",
                "hastack:ceph:users:glance:key: not a cephx key",
            ),
            (
                ("users", "glance", "caps", "osd"),
                "profile rbd pool=backups",
                "hastack:ceph:users:glance:caps:osd: pool 'backups'",
            ),
            (
                ("users", "glance", "caps", "osd"),
                "allow pool=images",
                "hastack:ceph:users:glance:caps:osd: 'allow' needs",
            ),
            (
                ("users", "glance", "keyring", "mode"),
                "0964",
                "hastack:ceph:users:glance:keyring:mode",
            ),
            (
                ("users", "glance", "keyring", "owner"),
                "no-such-user",
                "hastack:ceph:users:glance:keyring:owner: user 'no-such-user'",
            ),
            (
                ("users", "glance", "keyring", "group"),
                "no-such-group",
                "hastack:ceph:users:glance:keyring:group: group 'no-such-group'",
            ),
            (
                ("users", "glance", "roles"),
                ["controler"],
                "hastack:ceph:users:glance:roles: unknown role 'controler'",
            ),
            (
                ("users", "glance", "colour"),
                "blue",
                "hastack:ceph:users:glance: unknown setting(s): colour",
            ),
            (("fsid",), "not-a-uuid", "hastack:ceph:fsid"),
            (("mon_host",), "", "hastack:ceph:mon_host: required"),
            (("conf_dir",), "etc/ceph", "hastack:ceph:conf_dir: must be an absolute path"),
            (("pools", "images", "pg_num"), "32", "hastack:ceph:pools:images:pg_num"),
            (("timeout",), 0, "hastack:ceph:timeout"),
            (("mon_hosts",), "127.0.0.1", "hastack:ceph: unknown setting(s): mon_hosts"),
            # Ceph refuses a user without caps; found when README's "caps: {}" was tried.
            (("users", "glance", "caps"), {}, "hastack:ceph:users:glance:caps: required"),
            # A mon_host Ceph cannot read breaks every client on the node, silently.
            (("mon_host",), "not-an-address", "hastack:ceph:mon_host: host name 'not-an-address'"),
            (
                ("mon_host",),
                "[v2:127.0.0.1:3300,v1:127.0.0.1:6789",
                "hastack:ceph:mon_host: unbalanced",
            ),
            (("mon_host",), "127.0.0.1:70000", "hastack:ceph:mon_host: bad port"),
            # A typo here used to create a pool the corrected pillar could never converge.
            (
                ("pools", "images", "application"),
                "rdb",
                "hastack:ceph:pools:images:application: unknown pool application 'rdb'",
            ),
            # A keyring every local user can read hands them the key.
            (
                ("users", "glance", "keyring", "mode"),
                "0644",
                "hastack:ceph:users:glance:keyring:mode: 0644 lets every local user read the key",
            ),
            (
                ("users", "glance", "keyring", "mode"),
                "0604",
                "hastack:ceph:users:glance:keyring:mode: 0604 lets",
            ),
        ],
    )
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
            schema.validate_ceph(ceph, roles=["controller"], known_roles=ROLES)
        assert message in str(err.value)

    def test_owner_only_checked_where_the_keyring_goes(self):
        ceph = example_ceph()
        ceph["users"]["glance"]["keyring"]["owner"] = "glance-on-controllers-only"
        # A compute node does not get glance's keyring: its owner need not exist there.
        schema.validate_ceph(ceph, roles=["compute"], known_roles=ROLES)
        with pytest.raises(SaltInvocationError, match="keyring:owner"):
            schema.validate_ceph(ceph, roles=["controller"], known_roles=ROLES)


class TestMonHost:
    @pytest.mark.parametrize(
        "text, entries",
        [
            ("127.0.0.1", ["127.0.0.1"]),
            ("127.0.0.1:6789,127.0.0.2:6789", ["127.0.0.1:6789", "127.0.0.2:6789"]),
            ("[v2:127.0.0.1:3300,v1:127.0.0.1:6789]", ["[v2:127.0.0.1:3300,v1:127.0.0.1:6789]"]),
            (
                "[v2:127.0.0.1:3300,v1:127.0.0.1:6789] [v2:127.0.0.2:3300]",
                ["[v2:127.0.0.1:3300,v1:127.0.0.1:6789]", "[v2:127.0.0.2:3300]"],
            ),
            ("v2:127.0.0.1:3300;localhost", ["v2:127.0.0.1:3300", "localhost"]),
            ("[v2:[::1]:3300,v1:[::1]:6789]", ["[v2:[::1]:3300,v1:[::1]:6789]"]),
            (
                "[v2:127.0.0.1:3300/0,v1:127.0.0.1:6789/0]",
                ["[v2:127.0.0.1:3300/0,v1:127.0.0.1:6789/0]"],
            ),
        ],
    )
    def test_forms_ceph_reads_are_accepted(self, text, entries):
        assert cephx.parse_mon_host(text) == entries


class TestPoolAccess:
    @pytest.mark.parametrize(
        "osd, pool, writable",
        [
            ("profile rbd pool=volumes, profile rbd-read-only pool=images", "volumes", True),
            ("profile rbd pool=volumes, profile rbd-read-only pool=images", "images", False),
            ("profile rbd", "anything", True),
            ("profile read-only", "images", False),
            ("allow r pool=images", "images", False),
            ("allow rwx pool=images", "images", True),
            ("allow rw pool=vms, allow r", "images", False),
            ("allow *", "images", True),
            ("allow class-read, allow class-write pool=images", "images", False),
        ],
    )
    def test_write_access_follows_the_grants(self, osd, pool, writable):
        assert cephx.pool_writable(osd, pool) is writable


class TestCephFS:
    """Filesystems, path-restricted caps and mounts: each error names its pillar key."""

    NOVA_CAPS = {
        "mds": "allow rw fsname=cephfs path=/nova",
        "mon": "allow r fsname=cephfs",
        "osd": "allow rw tag cephfs data=cephfs",
    }

    @pytest.mark.parametrize(
        "mds, fs, path, writable",
        [
            ("allow rw fsname=cephfs path=/nova", "cephfs", "/nova", True),
            ("allow rw fsname=cephfs path=/nova", "cephfs", "/nova/host1", True),
            ("allow rw fsname=cephfs path=/nova", "cephfs", "/novax", False),
            ("allow rw fsname=cephfs path=/nova", "other", "/nova", False),
            ("allow rw fsname=cephfs path=/nova", "cephfs", "/", False),
            ("allow r fsname=cephfs path=/nova", "cephfs", "/nova", False),
            ("allow rw path=/nova root_squash", "cephfs", "/nova", False),
            ("allow r, allow rw path=/nova", "any", "/nova", True),
            ("allow *", "cephfs", "/", True),
        ],
    )
    def test_path_access_follows_the_mds_grants(self, mds, fs, path, writable):
        assert cephx.fs_path_writable(mds, fs, path) is writable

    def test_caps_as_ceph_fs_authorize_grants_them_are_accepted(self):
        assert cephx.parse_caps(self.NOVA_CAPS) == self.NOVA_CAPS

    def test_fsname_is_refused_for_osd_caps(self):
        with pytest.raises(SaltInvocationError, match="caps:osd: unexpected 'fsname=cephfs'"):
            cephx.parse_caps({"osd": "allow rw fsname=cephfs"})

    def pillar(self):
        ceph = example_ceph()
        ceph["pools"].update(
            cephfs_metadata={"pg_num": 8, "application": "cephfs"},
            cephfs_data={"pg_num": 8, "application": "cephfs"},
        )
        ceph["filesystems"] = {
            "cephfs": {"metadata_pool": "cephfs_metadata", "data_pool": "cephfs_data"}
        }
        ceph["users"]["nova"] = {"key": GLANCE_KEY, "caps": self.NOVA_CAPS, "roles": ["compute"]}
        mount = {"fs": "cephfs", "path": "/nova", "user": "nova", "owner": "root", "group": "root"}
        return {
            "site": "dc1",
            "roles": ["compute"],
            "ceph": ceph,
            "cephfs": {
                "client": "fuse",
                "roles": ["compute"],
                "mounts": {"/var/lib/nova/instances": mount},
            },
        }

    def test_mount_normalized_and_directory_planned_for_the_admin(self):
        out = schema.validate(self.pillar(), "alice")
        mount = out["cephfs"]["mounts"]["/var/lib/nova/instances"]
        assert mount == {
            "cluster": "ceph",
            "conf": "/etc/ceph/ceph.conf",
            "fs": "cephfs",
            "path": "/nova",
            "user": "nova",
            "keyring": "/etc/ceph/ceph.client.nova.keyring",
            "client": "fuse",
            "owner": "root",
            "group": "root",
            "mode": "0755",
            "applies": True,
            "pillar_key": "hastack:cephfs:mounts:/var/lib/nova/instances",
        }
        assert out["ceph"]["fs_dirs"] == {"cephfs": ["/nova"]}
        # A controller does not mount the instances directory, and need not have nova's user.
        tree = self.pillar()
        tree["roles"] = ["controller"]
        tree["cephfs"]["mounts"]["/var/lib/nova/instances"]["owner"] = "no-such-user-here"
        assert schema.validate(tree, "alice")["cephfs"]["applies"] is False

    MOUNT = "hastack:cephfs:mounts:/var/lib/nova/instances"

    @pytest.mark.parametrize(
        "change, message",
        [
            (("path", "../etc"), f"{MOUNT}:path: '../etc' is outside filesystem cephfs"),
            (("path", "nova"), f"{MOUNT}:path: 'nova' is outside filesystem cephfs"),
            (("path", "/nova/../etc"), f"{MOUNT}:path: '/nova/../etc' is outside"),
            (
                ("fs", "cephfs2"),
                f"{MOUNT}:fs: 'cephfs2' is not defined in hastack:ceph:filesystems",
            ),
            (("user", "glance"), f"{MOUNT}:user: client.glance's mds caps do not let it"),
            (("path", "/rabbitmq"), f"{MOUNT}:user: client.nova's mds caps do not let it"),
            (("client", "nfs"), f"{MOUNT}:client: fuse or kernel, got 'nfs'"),
            (("owner", "no-such-user"), f"{MOUNT}:owner: user 'no-such-user' does not exist"),
            (("mode", "0999"), f"{MOUNT}:mode"),
            (("roles", ["computer"]), f"{MOUNT}:roles: a list of roles"),
            (("size", 10), f"{MOUNT}: unknown setting(s): size"),
        ],
    )
    def test_each_bad_mount_is_named(self, change, message):
        tree = self.pillar()
        tree["cephfs"]["mounts"]["/var/lib/nova/instances"][change[0]] = change[1]
        with pytest.raises(SaltInvocationError) as err:
            schema.validate(tree, "alice")
        assert message in str(err.value)

    @pytest.mark.parametrize("mountpoint", ["var/lib/nova", "/", "/var/lib/../nova", "/a//b"])
    def test_a_mount_point_must_be_an_absolute_normalized_path(self, mountpoint):
        tree = self.pillar()
        tree["cephfs"]["mounts"] = {mountpoint: tree["cephfs"]["mounts"]["/var/lib/nova/instances"]}
        with pytest.raises(SaltInvocationError, match="must be an absolute, normalized path"):
            schema.validate(tree, "alice")

    def test_the_user_s_keyring_must_reach_the_mounting_minion(self):
        tree = self.pillar()
        tree["ceph"]["users"]["nova"]["roles"] = ["controller"]
        with pytest.raises(SaltInvocationError, match=f"{self.MOUNT}:user: client.nova's keyring"):
            schema.validate(tree, "alice")

    @pytest.mark.parametrize(
        "change, message",
        [
            (
                ("metadata_pool", "images"),
                "hastack:ceph:filesystems:cephfs:metadata_pool: pool 'images' must have "
                "application: cephfs",
            ),
            (("data_pool", "nope"), "data_pool: 'nope' is not defined in hastack:ceph:pools"),
            (("data_pool", "cephfs_metadata"), "metadata_pool and data_pool must be two pools"),
            (("standby", 1), "hastack:ceph:filesystems:cephfs: unknown setting(s): standby"),
        ],
    )
    def test_each_bad_filesystem_is_named(self, change, message):
        tree = self.pillar()
        tree["ceph"]["filesystems"]["cephfs"][change[0]] = change[1]
        with pytest.raises(SaltInvocationError) as err:
            schema.validate(tree, "alice")
        assert message in str(err.value)


class TestKernelClient:
    """The kernel client cannot load here (no ceph module, no modprobe): its command
    line and the reading of its mounts are checked without a mount."""

    @pytest.fixture
    def mod(self, monkeypatch):
        module = load_module("_modules", "ceph_client")
        calls = []
        module.__salt__ = {
            "cmd.run_all": lambda argv, **kw: (
                calls.append(argv) or {"retcode": 0, "stdout": "", "stderr": ""}
            )
        }
        monkeypatch.setattr(module.salt.utils.path, "which", lambda tool: f"/sbin/{tool}")
        module.calls = calls
        return module

    def test_the_key_is_read_through_the_conf_never_given_on_the_command_line(self, mod):
        mod.fs_mount("/mnt/i", "cephfs", "/nova", "nova", "/k/nova.keyring", "/c.conf", "kernel")
        assert mod.calls == [
            [
                "mount",
                "-t",
                "ceph",
                ":/nova",
                "/mnt/i",
                "-o",
                "name=nova,mds_namespace=cephfs,conf=/c.conf,mount_timeout=10",
            ]
        ]

    @pytest.mark.parametrize(
        "source, superopts",
        [
            ("nova@4b5c8c0a-ff60-454b-a1b4-9747aa737d19.cephfs=/nova", "rw,name=nova"),
            ("127.0.0.1:6789,127.0.0.2:6789:/nova", "rw,name=nova,mds_namespace=cephfs"),
            ("127.0.0.1:6789:/nova/", "rw,name=nova,fs=cephfs"),
        ],
    )
    def test_both_forms_of_a_kernel_mount_are_read(
        self, mod, monkeypatch, tmp_path, source, superopts
    ):
        monkeypatch.setattr(mod, "_mount_entry", lambda mp: ("ceph", source, superopts))
        info = mod.mount_info(str(tmp_path))
        assert {k: info[k] for k in ("client", "fs", "path", "user")} == {
            "client": "kernel",
            "fs": "cephfs",
            "path": "/nova",
            "user": "nova",
        }


class TestComputeIdentities:
    """hastack:computes: identities checked against the Pacemaker nodes, their
    primitives and preferences declared once, nova.conf's settings by mode."""

    NODES = ["n1", "n2", "n3", "n4"]

    def pillar(self, identities=None, roles=("compute",)):
        tree = TestCephFS().pillar()
        tree["roles"] = list(roles)
        tree["cephfs"]["mounts"]["/var/lib/nova/instances"]["roles"] = ["compute"]
        tree["pacemaker"] = {
            "nodes": list(self.NODES),
            "cib_file": None,
            "remove_undeclared": False,
            "roles": ["controller"],
            "primitives": {"p_api": {"agent": "ocf:heartbeat:Dummy"}},
        }
        tree["computes"] = {
            "identities": identities
            if identities is not None
            else {
                "c1": {"node": "n1"},
                "c2": {"node": "n2"},
                "c9": {"node": "n4", "mode": "evacuate"},
            },
            "instances_path": "/var/lib/nova/instances",
            "config_file": "/etc/nova/nova.conf",
            "conf_dir": "/etc/nova",
            "resource": {
                "agent": "ocf:heartbeat:anything",
                "command": "/usr/bin/nova-compute",
                "user": "nova",
                "score": 10000,
                "ops": {"monitor": {"interval": "10s", "timeout": "20s"}},
            },
            "roles": ["compute"],
        }
        return tree

    def test_each_identity_gets_its_primitive_and_home_preference(self):
        out = schema.validate(self.pillar(), "n2")
        config = out["pacemaker"]["config"]
        assert set(config["primitives"]) == {
            "p_api",
            "p_nova-compute-c1",
            "p_nova-compute-c2",
            "p_nova-compute-c9",
        }
        assert config["primitives"]["p_nova-compute-c1"]["params"] == {
            "binfile": "/usr/bin/nova-compute",
            "cmdline_options": "--config-file /etc/nova/nova.conf "
            "--config-file /etc/nova/nova-compute-c1.conf",
            "user": "nova",
        }
        locations = config["locations"]
        assert str(locations["lo_c1_prefer_n1"]["score"]) == "10000"
        # Mode evacuate: the identity never leaves its node.
        assert {lid for lid in locations if lid.startswith("lo_c9_avoid_")} == {
            "lo_c9_avoid_n1",
            "lo_c9_avoid_n2",
            "lo_c9_avoid_n3",
        }
        computes = out["computes"]
        # n2 may run c1 and c2 (identity mode), never c9.
        assert computes["here"] == ["c1", "c2"]
        assert computes["settings"] == {
            "DEFAULT": {
                "instances_path": "/var/lib/nova/instances",
                "resume_guests_state_on_host_boot": "True",
            }
        }
        # n4 runs only its own evacuate-mode identity and the identity-mode ones.
        assert schema.validate(self.pillar(), "n4")["computes"]["here"] == ["c1", "c2", "c9"]
        evac_only = schema.validate(self.pillar({"c9": {"node": "n4", "mode": "evacuate"}}), "n4")
        assert evac_only["computes"]["settings"] == {
            "DEFAULT": {"instances_path": "/var/lib/nova/instances"}
        }

    KEY = "hastack:computes:identities"

    @pytest.mark.parametrize(
        "identities, message",
        [
            ({"c1": {}}, f"{KEY}:c1:node: required"),
            ({"c1": None}, f"{KEY}:c1:node: required"),
            ({"c1": {"node": "n7"}}, f"{KEY}:c1:node: 'n7' is not in hastack:pacemaker:nodes"),
            (
                {"c1": {"node": "n1"}, "c2": {"node": "n1", "mode": "evacuate"}},
                f"{KEY}:c2:node: 'n1' is already the home of identity 'c1'",
            ),
            (
                {"c1": {"node": "n1", "mode": "migrate"}},
                f"{KEY}:c1:mode: unknown failover mode 'migrate' (known: identity, evacuate)",
            ),
            ({"c1": {"node": "n1", "weight": 3}}, f"{KEY}:c1: unknown setting(s): weight"),
            ({"bad name": {"node": "n1"}}, f"{KEY}:bad name: not a host name"),
            ({}, f"{KEY}: a mapping of identity"),
        ],
    )
    def test_each_bad_identity_is_named(self, identities, message):
        with pytest.raises(SaltInvocationError) as err:
            schema.validate(self.pillar(identities), "n1")
        assert message in str(err.value)

    def test_identity_mode_needs_the_instances_directory_shared(self):
        tree = self.pillar()
        del tree["cephfs"]
        with pytest.raises(
            SaltInvocationError, match="hastack:computes:instances_path: /var/lib/nova/instances"
        ):
            schema.validate(tree, "n1")
        # A node that runs only its own evacuate-mode identity needs no shared directory.
        evac = self.pillar({"c9": {"node": "n4", "mode": "evacuate"}})
        del evac["cephfs"]
        assert schema.validate(evac, "n4")["computes"]["applies"]

    def test_a_primitive_also_declared_by_hand_is_named(self):
        tree = self.pillar()
        tree["pacemaker"]["primitives"]["p_nova-compute-c1"] = {"agent": "ocf:heartbeat:Dummy"}
        with pytest.raises(SaltInvocationError) as err:
            schema.validate(tree, "n1")
        assert str(err.value) == (
            "hastack:pacemaker:primitives:p_nova-compute-c1: hastack:computes:identities:c1 "
            "declares 'p_nova-compute-c1' too: remove one of them"
        )

    @pytest.mark.parametrize(
        "key, value, message",
        [
            ("instances_path", "nova/instances", "hastack:computes:instances_path: must be an"),
            ("resource", {"command": "nova-compute"}, "hastack:computes:resource:command"),
            ("colour", "red", "hastack:computes: unknown setting(s): colour"),
        ],
    )
    def test_each_bad_setting_is_named(self, key, value, message):
        tree = self.pillar()
        if key == "resource":
            tree["computes"]["resource"].update(value)
        else:
            tree["computes"][key] = value
        with pytest.raises(SaltInvocationError) as err:
            schema.validate(tree, "n1")
        assert message in str(err.value)

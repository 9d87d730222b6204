"""Sites in the pillar (hastack_utils.sites): the layers (global, site, minion), the
rollout settings of each site, and errors naming the pillar key. The layout is not
the workshop's: sites osl and ber, each with its own Ceph cluster and keys, the
global pillar holding what they share."""

import pytest
from salt.exceptions import SaltInvocationError

from hastack_utils import schema, sites

OSL_KEY = "AQAAAAAAAAAAABAAb3NsLWNpbmRlci1rZXkhIQ=="
BER_KEY = "AQAAAAAAAAAAABAAYmVyLWNpbmRlci1rZXkhIQ=="


def pillar(**over):
    tree = {
        "site": "ber",
        "roles": ["compute"],
        "ceph": {
            "pools": {"volumes": {"pg_num": 8}},
            "users": {"cinder": {"caps": {"mon": "profile rbd"}, "roles": ["compute"]}},
        },
        "sites": {
            "osl": {
                "ceph": {
                    "fsid": "11111111-1111-4111-8111-111111111111",
                    "mon_host": "127.0.0.11",
                    "users": {"cinder": {"key": OSL_KEY}},
                },
                "rollout": {"canary": ["osl-c1"], "batch": 2},
            },
            "ber": {
                "ceph": {
                    "fsid": "22222222-2222-4222-8222-222222222222",
                    "mon_host": "127.0.0.12",
                    "admin_minion": "ber-c1",
                    "users": {"cinder": {"key": BER_KEY}},
                },
                "rollout": {"order": 0, "batch": "50%", "ceph_health": "HEALTH_OK"},
            },
        },
    }
    tree.update(over)
    return tree


def test_sites_in_rollout_order_an_order_first_then_pillar_order():
    got = sites.defined(pillar())
    assert list(got) == ["ber", "osl"]
    assert got["osl"]["canary"] == ["osl-c1"] and got["osl"]["batch"] == 2
    assert got["ber"]["ceph_health"] == "HEALTH_OK" and got["osl"]["ceph_health"] == "HEALTH_WARN"
    assert "rollout" not in got["ber"]["settings"]


def test_site_layer_over_global_and_minion_layer_over_site():
    given = pillar(minion={"ceph": {"mon_host": "127.0.0.99"}})
    tree, origins = sites.layered(given, "ber-c1")
    assert tree["ceph"]["fsid"] == "22222222-2222-4222-8222-222222222222"
    assert tree["ceph"]["mon_host"] == "127.0.0.99"
    assert tree["ceph"]["pools"] == {"volumes": {"pg_num": 8}}  # global, kept
    assert tree["ceph"]["users"]["cinder"] == {
        "caps": {"mon": "profile rbd"},
        "roles": ["compute"],
        "key": BER_KEY,
    }
    assert "sites" not in tree and "minion" not in tree
    assert sites.where("hastack:ceph:users:cinder:key", origins) == (
        "hastack:sites:ber:ceph:users:cinder:key"
    )
    assert sites.where("hastack:ceph:pools:volumes", origins) == "hastack:ceph:pools:volumes"
    assert sites.where("hastack:ceph:mon_host", origins) == "hastack:minion:ceph:mon_host"
    # The given pillar is not changed by the merge.
    assert "key" not in given["ceph"]["users"]["cinder"]


def test_no_sites_is_one_site_the_global_pillar():
    given = {"site": "dc1", "ceph": {"fsid": "x"}}
    tree, _ = sites.layered(given, "alice")
    assert tree == given
    assert sites.site_of(given, "alice") is None


def test_validate_reads_a_site_key_where_it_is_and_names_a_site_error_there():
    tree, origins = sites.layered(pillar(), "ber-c1")
    tree["ceph"].update(cluster="ceph", conf_dir="/etc/ceph", timeout=10, backend="auto")
    out = schema.validate(tree, "ber-c1", origins)
    assert out["ceph"]["users"]["cinder"]["key_pillar"] == "hastack:sites:ber:ceph:users:cinder:key"
    bad = pillar()
    bad["sites"]["ber"]["ceph"]["fsid"] = "not-a-uuid"
    tree, origins = sites.layered(bad, "ber-c1")
    tree["ceph"].update(cluster="ceph", conf_dir="/etc/ceph", timeout=10, backend="auto")
    with pytest.raises(SaltInvocationError, match=r"^hastack:sites:ber:ceph:fsid: "):
        schema.validate(tree, "ber-c1", origins)


@pytest.mark.parametrize(
    "change, minion, error",
    [
        (lambda p: p.pop("site"), "x1", r"^hastack:site: minion x1 is in no site: .*ber, osl"),
        (lambda p: p.update(site="par"), "x1", r"^hastack:site: unknown site 'par' for minion x1"),
        (lambda p: p["sites"]["ber"].pop("ceph"), "x1", r"^hastack:sites:ber:ceph: required"),
        (lambda p: p.update(sites=[]), "x1", r"^hastack:sites: a mapping"),
        (lambda p: p["sites"].update({"o sl": {}}), "x1", r"^hastack:sites:o sl: a site name"),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(batch="150%"),
            "x1",
            r"^hastack:sites:osl:rollout:batch: ",
        ),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(canary="osl-c1"),
            "x1",
            r"^hastack:sites:osl:rollout:canary: a list",
        ),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(order="first"),
            "x1",
            r"^hastack:sites:osl:rollout:order: a whole number",
        ),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(ceph_health="HEALTH_ERR"),
            "x1",
            r"^hastack:sites:osl:rollout:ceph_health: ",
        ),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(gates={"g": {"fun": "nodot"}}),
            "x1",
            r"^hastack:sites:osl:rollout:gates:g:fun: ",
        ),
        (
            lambda p: p["sites"]["osl"]["rollout"].update(serial=1),
            "x1",
            r"^hastack:sites:osl:rollout:serial: unknown setting",
        ),
        (lambda p: p["sites"]["osl"].update(site="x"), "x1", r"^hastack:sites:osl:site: "),
        (lambda p: p.update(minion={"site": "osl"}), "x1", r"^hastack:minion:site: "),
    ],
)
def test_bad_site_pillars_are_named(change, minion, error):
    given = pillar()
    change(given)
    with pytest.raises(SaltInvocationError, match=error):
        sites.layered(given, minion)


def test_operator_gates_are_checked_and_normalized():
    given = pillar()
    given["sites"]["osl"]["rollout"]["gates"] = {
        "api": {"fun": "http.query", "args": ["http://127.0.0.1:9/"], "tgt": "site"},
        "disk": {"fun": "disk.usage"},
    }
    got = sites.defined(given)["osl"]["gates"]
    assert got["api"] == {
        "fun": "http.query",
        "args": ["http://127.0.0.1:9/"],
        "kwargs": {},
        "tgt": "site",
    }
    assert got["disk"]["tgt"] == "step"


def test_a_minion_needs_only_its_own_sites_settings():
    given = pillar()
    given["sites"]["osl"] = {"rollout": given["sites"]["osl"]["rollout"]}  # no keys of osl
    tree, _ = sites.layered(given, "ber-c1")
    assert tree["ceph"]["users"]["cinder"]["key"] == BER_KEY
    assert sites.rollouts(sites.defined(given)) == sites.rollouts(sites.defined(pillar()))


def test_a_setting_is_read_from_the_layered_tree():
    given = pillar(minion={"openstack": {"cloud": "ber-edge"}})
    given["sites"]["ber"]["openstack"] = {"cloud": "ber"}
    assert sites.setting(given, "ber-c1", "openstack:cloud") == "ber-edge"
    del given["minion"]
    assert sites.setting(given, "ber-c1", "openstack:cloud") == "ber"
    assert sites.setting(given, "ber-c1", "openstack:external_network") is None
    assert sites.setting({"openstack": {"cloud": "one"}}, "x", "openstack:cloud") == "one"


def test_a_sites_floating_ip_errors_name_the_site():
    given = pillar()
    given["sites"]["ber"]["openstack"] = {"cloud": "ber", "external_network": "ext"}
    given["sites"]["ber"]["floating_ips"] = {
        "roles": ["compute"],
        "addresses": {"web": {"server": "web1"}},
    }
    tree, origins = sites.layered(given, "ber-c1")
    tree["ceph"].update(cluster="ceph", conf_dir="/etc/ceph", timeout=10, backend="auto")
    out = schema.validate(tree, "ber-c1", origins)
    assert out["floating_ips"]["addresses"]["web"]["pillar_key"] == (
        "hastack:sites:ber:floating_ips:addresses:web"
    )
    assert "pillar_key" not in given["sites"]["ber"]["floating_ips"]["addresses"]["web"]

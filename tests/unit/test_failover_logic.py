"""The failover decisions that need no backend: the policy pillar, confirmation, the
gates and the drill's table (which signals to trust: test_signals.py). Layouts beyond the workshop's
three nodes: five controllers with other names, two of them down, a pillar with
floating IPs and standbys."""

import pytest
from salt.exceptions import SaltInvocationError

from hastack_utils import failover

FIVE = ["ctl-a", "ctl-b", "ctl-c", "ctl-d", "ctl-e"]
ADDRESSES = {"web": {"server": "web", "standby": {"server": "web-standby"}}, "db": {"port": "db"}}


def view(online, quorum=True, unclean=()):
    return {
        "quorum": quorum,
        "nodes": {n: {"online": n in online, "unclean": n in unclean} for n in FIVE},
    }


class TestPolicy:
    def test_defaults_follow_the_cluster(self):
        pol = failover.policy(None, FIVE)
        assert pol["reporters"] == FIVE and pol["max_down"] == 2 and pol["mode"] == "act"
        assert failover.policy({}, ["a", "b", "c"])["max_down"] == 1

    @pytest.mark.parametrize(
        "settings,key",
        [
            ({"mode": "dry"}, "hastack:failover:mode"),
            ({"max_down": 5}, "hastack:failover:max_down"),
            ({"max_down": True}, "hastack:failover:max_down"),
            ({"confirm_timeout": 0}, "hastack:failover:confirm_timeout"),
            ({"fallback": ["ctl-z"]}, "hastack:failover:fallback"),
            ({"move": {"ctl-a": ["nope"]}}, "hastack:failover:move:ctl-a"),
            ({"move": {"ctl-a": ["db"]}}, "hastack:failover:move:ctl-a"),
            ({"move": {"ctl-z": ["web"]}}, "hastack:failover:move:ctl-z"),
            ({"restore": "later"}, "hastack:failover:restore"),
            ({"reporters": "ctl-a"}, "hastack:failover:reporters"),
            ({"routers": "yes"}, "hastack:failover:routers"),
            ({"colour": "red"}, "hastack:failover:colour"),
            ({"beacon_resend": 0}, "hastack:failover:beacon_resend"),
            ({"neutron_deadline": -1}, "hastack:failover:neutron_deadline"),
        ],
    )
    def test_bad_settings_name_their_key(self, settings, key):
        with pytest.raises(SaltInvocationError) as err:
            failover.policy(settings, FIVE, ADDRESSES)
        assert str(err.value).startswith(f"{key}:"), err.value

    def test_a_cluster_needs_two_nodes(self):
        with pytest.raises(SaltInvocationError, match="^hastack:pacemaker:nodes:"):
            failover.policy({}, ["lonely"])

    def test_move_names_entries_with_a_standby(self):
        pol = failover.policy({"move": {"ctl-b": ["web"]}}, FIVE, ADDRESSES)
        assert pol["move"] == {"ctl-b": ["web"]}


class TestConfirmAndGates:
    def test_offline_and_silent_is_confirmed(self):
        ok, facts = failover.confirm("ctl-a", view(FIVE[1:]), stonith=False, minion_silent=True)
        assert ok and facts["pacemaker"] == "offline"

    @pytest.mark.parametrize(
        "the_view,stonith,silent,reason",
        [
            (view(FIVE), False, True, "sees 'ctl-a' online"),
            (view(FIVE[1:], unclean=["ctl-a"]), True, True, "not fenced yet"),
            (view(FIVE[1:]), False, False, "still answers"),
        ],
    )
    def test_not_confirmed(self, the_view, stonith, silent, reason):
        ok, why = failover.confirm("ctl-a", the_view, stonith, silent)
        assert not ok and reason in why

    def test_unclean_without_fencing_is_down(self):
        ok, _ = failover.confirm("ctl-a", view(FIVE[1:], unclean=["ctl-a"]), False, True)
        assert ok

    def test_gates(self):
        assert failover.gates("ctl-a", view(FIVE[1:]), FIVE, 2) == {}
        assert failover.gates("ctl-a", view(FIVE[2:]), FIVE, 2) == {}
        held = failover.gates("ctl-a", view(FIVE[3:], quorum=False), FIVE, 2)
        assert set(held) == {"quorum", "blast_radius"}
        assert "3 nodes down (ctl-a, ctl-b, ctl-c)" in held["blast_radius"]


def test_the_drill_table_lists_what_moves_and_the_gates():
    table = failover.plan_table(
        {
            "node": "ctl-a",
            "pacemaker": {"g_api": {"from": "ctl-a", "to": "ctl-c"}},
            "pacemaker_skipped": {"p_off": "stopped on purpose"},
            "routers": {"r1": {"from": "ctl-a", "to": "ctl-d"}},
            "routers_unplaced": {"r2": "no live L3 agent to take it"},
            "router_floating_ips": ["192.0.2.7"],
            "move": {"web": {"address": "192.0.2.9"}},
            "gates": {"quorum": "passes"},
            "mode": "observe",
        }
    )
    lines = table.splitlines()
    assert lines[0].split() == ["what", "name", "from", "to"]
    assert ["resource", "g_api", "ctl-a", "ctl-c"] in [line.split() for line in lines]
    assert ["router", "r1", "ctl-a", "ctl-d"] in [line.split() for line in lines]
    assert "stays: no live L3 agent to take it" in table
    assert "stays: stopped on purpose" in table and "192.0.2.7" in table
    assert "gate quorum: passes" in table and table.endswith("mode: observe")
    assert "(nothing to move)" in failover.plan_table({"node": "x"})

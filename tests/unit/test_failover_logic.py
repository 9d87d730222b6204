"""The failover decisions that need no backend: the policy pillar, confirmation, the
gates and the drill's table (which signals to trust: test_signals.py). Layouts beyond the workshop's
three nodes: five controllers with other names, two of them down, a pillar with
floating IPs and standbys."""

import pytest
from salt.exceptions import SaltInvocationError

from hastack_utils import failover
from tests.helpers import load_module

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


class TestVMs:
    """What a node's failure asks of Nova, the incident's steps, the fence's story."""

    IDENTITIES = {
        "host1": {"node": "alice", "mode": "identity"},
        "host2": {"node": "bob", "mode": "identity"},
        "host3": {"node": "charlie", "mode": "evacuate"},
    }

    def test_the_work_follows_each_identitys_home_and_mode(self):
        assert failover.vm_work(self.IDENTITIES, "alice") == {"takeover": ["host1"], "evacuate": []}
        assert failover.vm_work(self.IDENTITIES, "charlie") == {
            "takeover": [],
            "evacuate": ["host3"],
        }
        assert failover.vm_work(self.IDENTITIES, "dave") == {}
        assert failover.vm_work({}, "alice") == {}

    def test_evacuated_is_a_step_only_with_vm_work(self):
        assert "evacuated" not in failover.steps_of({"plan": {}})
        assert failover.steps_of({"plan": {"vms": {"evacuate": ["host3"]}}}) == (
            "confirmed",
            "planned",
            "shifted",
            "reissued",
            "evacuated",
            "done",
        )

    def test_the_fence_summary_names_the_last_failure(self):
        history = [
            {"action": "reboot", "status": "failed", "by": "alice", "reason": "timed out"},
            {"action": "reboot", "status": "failed", "by": "charlie", "reason": "agent said no"},
        ]
        assert failover.fence_summary(history) == (
            "2 failed attempt(s), the last a reboot by charlie: agent said no"
        )
        assert failover.fence_summary([]) == "the fencer has no attempt on record"
        pending = [{"action": "off", "status": "pending"}]
        assert failover.fence_summary(pending) == "a off still pending"

    def test_the_drill_shows_each_vm_and_the_shortfall(self):
        plan = {
            "node": "charlie",
            "vms": {
                "takeover": [],
                "evacuate": {
                    "host3": {
                        "servers": [{"id": "1", "name": "db0"}, {"id": "2", "name": "db1"}],
                        "fits": {"1": "host1"},
                        "left_alone": ["scratch"],
                        "shortfall": {"summary": "1 of 2 protected VMs do not fit (db1)"},
                    }
                },
            },
        }
        table = failover.plan_table(plan)
        assert "VM    db0   host3  host1 (estimate)" in table
        assert "VM    db1   host3  no room" in table
        assert "capacity host3: 1 of 2 protected VMs do not fit (db1)" in table
        assert "not protected host3: scratch" in table

    @pytest.mark.parametrize(
        "given, message",
        [
            ({"concurrency": 0}, "hastack:computes:evacuation:concurrency: a whole number"),
            ({"timeout": -1}, "hastack:computes:evacuation:timeout"),
            ({"metadata_key": ""}, "hastack:computes:evacuation:metadata_key: a name"),
            ({"speed": 3}, "hastack:computes:evacuation:speed: unknown setting"),
        ],
    )
    def test_bad_evacuation_settings_are_named(self, given, message):
        with pytest.raises(SaltInvocationError) as err:
            failover.evacuation(given)
        assert message in str(err.value)


class TestVerify:
    """The runner's read-back after the parts: a resumed incident's shift may have
    settled on a placement simulated again (Pacemaker started an identity on another
    survivor while the fence was failing, and stickiness keeps it there); what is
    verified then is that placement, not the first plan's."""

    runner = load_module("_runners", "failover")

    def record(self, shifted_placement):
        shifted = {"placement": shifted_placement} if shifted_placement else {}
        return {
            "node": "ctl-b",
            "worker": "ctl-a",
            "resumed": [1.0],
            "plan": {"placement": {"p_nova-compute-host2": "ctl-a", "p_db": "ctl-c", "p_x": None}},
            "steps": {"shifted": shifted},
        }

    def verify(self, monkeypatch, record, live):
        monkeypatch.setattr(self.runner, "_run", lambda *a, **k: {"resources": live})
        return self.runner._verify(record, {"routers": False})

    def test_the_placement_the_shift_settled_on_is_what_counts(self, monkeypatch):
        settled = {"p_nova-compute-host2": "ctl-e", "p_db": "ctl-c"}
        got = self.verify(monkeypatch, self.record(settled), dict(settled, p_web="ctl-d"))
        assert got["placement"]["p_nova-compute-host2"] == "ctl-e"

    def test_a_placement_off_what_was_settled_fails_and_names_it(self, monkeypatch):
        settled = {"p_nova-compute-host2": "ctl-e", "p_db": "ctl-c"}
        live = {"p_nova-compute-host2": "ctl-a", "p_db": "ctl-c"}
        with pytest.raises(self.runner.StepFailed, match="'p_nova-compute-host2': 'ctl-a'"):
            self.verify(monkeypatch, self.record(settled), live)

    def test_without_a_settled_placement_the_plan_counts(self, monkeypatch):
        live = {"p_nova-compute-host2": "ctl-e", "p_db": "ctl-c"}
        with pytest.raises(self.runner.StepFailed, match="'p_nova-compute-host2': 'ctl-e'"):
            self.verify(monkeypatch, self.record(None), live)
        assert self.verify(
            monkeypatch, self.record(None), {"p_nova-compute-host2": "ctl-a", "p_db": "ctl-c"}
        )

    def test_a_planned_resource_the_settled_placement_lacks_is_checked_as_planned(
        self, monkeypatch
    ):
        settled = {"p_nova-compute-host2": "ctl-e"}
        live = {"p_nova-compute-host2": "ctl-e", "p_db": None}
        with pytest.raises(self.runner.StepFailed, match="'p_db': None"):
            self.verify(monkeypatch, self.record(settled), live)


class TestShiftSettles:
    """The worker's shift: when the live placement does not settle to the plan, it is
    simulated again, and that is taken only when it still runs every planned resource."""

    module = load_module("_modules", "failover")
    wanted = {"p_nova-compute-host2": "ctl-a", "p_db": "ctl-c"}

    def shift(self, monkeypatch, resimulated):
        settles = []

        def settle(placement, timeout):
            settles.append(placement)
            return {"settled": placement != self.wanted, "placement": placement, "waited": 1.0}

        def shift_away(node, nodes, plan=None, test=False):
            return {"placement": resimulated} if test else {"plan": plan}

        monkeypatch.setattr(
            self.module,
            "__salt__",
            {"pacemaker.shift_away": shift_away, "pacemaker.settle": settle},
            raising=False,
        )
        plan = {"pacemaker": {}, "placement": dict(self.wanted, p_off=None)}
        return self.module._shift("ctl-b", ["ctl-a", "ctl-b", "ctl-c"], plan, 5), settles

    def test_a_second_simulation_that_places_everything_is_settled_on(self, monkeypatch):
        moved = {"p_nova-compute-host2": "ctl-e", "p_db": "ctl-c", "p_web": "ctl-a"}
        out, settles = self.shift(monkeypatch, moved)
        assert settles == [self.wanted, moved] and out["placement"] == moved

    def test_one_that_leaves_a_planned_resource_stopped_fails_the_shift(self, monkeypatch):
        with pytest.raises(self.module.CommandExecutionError, match="did not settle"):
            self.shift(monkeypatch, {"p_nova-compute-host2": None, "p_db": "ctl-c"})

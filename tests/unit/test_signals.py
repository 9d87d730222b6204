"""Signals the master can verify and the cheap checks before anything else
(hastack_utils.signals), with real RSA keys made the way Salt makes a minion's, on a
cluster of five controllers with other names than the workshop's."""

import os
import re
import time

import pytest
import salt.crypt

from hastack_utils import failover, signals
from tests.helpers import load_module

FIVE = ["ctl-a", "ctl-b", "ctl-c", "ctl-d", "ctl-e"]
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A master's accepted keys for ctl-b and ctl-e, and each minion's private key."""
    root = tmp_path_factory.mktemp("pki")
    (root / "minions").mkdir()
    private = {}
    for minion in ("ctl-b", "ctl-e", "web7"):
        priv, pub = salt.crypt.gen_keys(2048)
        (root / "minions" / minion).write_text(pub)
        private[minion] = salt.crypt.PrivateKey(priv.encode())
    return str(root), private


def envelope(private, sender, node, tag=signals.DOWN, seen=NOW, signer=None, **extra):
    key = private[signer or sender]
    data = signals.signed_data(key, tag, sender, node, seen, **extra)
    return {"cmd": "_minion_event", "id": sender, "data": data}


def entry(reporters=FIVE):
    return {"policy": {"nodes": FIVE, "reporters": reporters}}


def gate(pki, policy=entry, replays=True):
    root, _ = pki
    return signals.Gate(
        signals.AcceptedKeys(root),
        lambda node: policy() if node in FIVE else {"rejected": f"'{node}' is no cluster node"},
        signals.ReplayGuard() if replays else None,
    )


class TestShape:
    @pytest.mark.parametrize(
        "tag,env,reason",
        [
            ("hastack/node/sideways", {}, "not a hastack signal: 'hastack/node/sideways'"),
            (signals.DOWN, ["ctl-a"], "the event data is a list, not a mapping"),
            (signals.DOWN, "ctl-a", "the event data is a string, not a mapping"),
            (signals.DOWN, {"data": {"node": "ctl-a"}}, "no sender"),
            (signals.DOWN, {"cmd": "_minion_event", "id": 7, "data": {}}, "sender id is a int"),
            (signals.DOWN, {"cmd": "_minion_event", "id": "a/../b"}, "is not a node or minion"),
            (signals.DOWN, {"cmd": "_minion_event", "id": "ctl-b"}, "data is missing"),
            (signals.DOWN, {"cmd": "_minion_event", "id": "ctl-b", "data": [1]}, "data is a list"),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {}},
                "data.node is missing",
            ),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": ["ctl-a"]}},
                "data.node is a list, not a name",
            ),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": {"x": 1}}},
                "data.node is a mapping, not a name",
            ),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": None}},
                "data.node is None, not a name",
            ),
            (
                signals.UP,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": "ctl-b"}},
                "'ctl-b' reported itself up",
            ),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": "ctl-a"}},
                "unsigned",
            ),
            (
                signals.DOWN,
                {"cmd": "_minion_event", "id": "ctl-b", "data": {"node": "ctl-a", "sig": "x"}},
                "data.seen is None, not a time",
            ),
            (
                signals.DOWN,
                {
                    "cmd": "_minion_event",
                    "id": "ctl-b",
                    "data": {"node": "ctl-a", "sig": "x", "seen": 1.0, "nonce": "zz"},
                },
                "data.nonce is not 32 hex digits",
            ),
            (
                signals.PRESENCE,
                {"cmd": "_minion_event", "id": "web7", "lost": ["ctl-a"]},
                "presence event sent by minion 'web7'",
            ),
            (signals.PRESENCE, {"lost": "ctl-a"}, "lost is a string, not a list"),
            (signals.PRESENCE, {"lost": ["ctl-a", 3]}, "lost[1] is a int, not a minion id"),
        ],
    )
    def test_every_malformed_shape_is_named(self, tag, env, reason):
        with pytest.raises(signals.Rejected, match=re.escape(reason)):
            signals.read(tag, env)

    def test_the_masters_presence_event_lists_its_names(self):
        assert signals.read(signals.PRESENCE, {"new": [], "lost": ["web7", "ctl-d"]}) == (
            "presence",
            None,
            ["web7", "ctl-d"],
        )


class TestSignatures:
    def test_a_reporters_signal_passes(self, pki):
        _, private = pki
        got = gate(pki).node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW + 1)
        assert got == ("down", "ctl-b", "ctl-a")

    def test_a_forged_envelope_naming_a_reporter_is_refused(self, pki):
        _, private = pki
        # web7 (an accepted minion, no reporter) writes ctl-b's name on its own signature.
        forged = envelope(private, "ctl-b", "ctl-a", signer="web7")
        with pytest.raises(signals.Rejected, match="bad signature: not signed with the key"):
            gate(pki).node_signal(signals.DOWN, forged, NOW)

    @pytest.mark.parametrize("field,value", [("node", "ctl-c"), ("seen", NOW + 5)])
    def test_a_signed_field_changed_breaks_the_signature(self, pki, field, value):
        _, private = pki
        env = envelope(private, "ctl-b", "ctl-a")
        env["data"][field] = value
        with pytest.raises(signals.Rejected, match="bad signature"):
            gate(pki).node_signal(signals.DOWN, env, NOW)

    def test_a_down_signature_does_not_serve_as_up(self, pki):
        _, private = pki
        env = envelope(private, "ctl-b", "ctl-a", tag=signals.DOWN)
        with pytest.raises(signals.Rejected, match="bad signature"):
            gate(pki).node_signal(signals.UP, env, NOW)

    def test_unsigned_extra_fields_are_not_trusted_and_do_not_matter(self, pki):
        _, private = pki
        env = envelope(private, "ctl-b", "ctl-a", quorum=True)
        env["data"]["quorum"] = False
        assert gate(pki).node_signal(signals.DOWN, env, NOW)[2] == "ctl-a"

    def test_a_garbled_signature_is_refused(self, pki):
        _, private = pki
        env = envelope(private, "ctl-b", "ctl-a")
        env["data"]["sig"] = "%%%not base64%%%"
        with pytest.raises(signals.Rejected, match="bad signature"):
            gate(pki).node_signal(signals.DOWN, env, NOW)

    def test_a_sender_without_an_accepted_key(self, pki):
        _, private = pki
        env = envelope(private, "ctl-b", "ctl-a")
        env["id"] = "ctl-c"  # a reporter, but this master holds no key for it
        with pytest.raises(signals.Rejected, match="'ctl-c' has no accepted key"):
            gate(pki).node_signal(signals.DOWN, env, NOW)

    def test_stale_replayed_and_future_signals(self, pki):
        _, private = pki
        the_gate = gate(pki)
        env = envelope(private, "ctl-b", "ctl-a")
        the_gate.node_signal(signals.DOWN, env, NOW)
        with pytest.raises(signals.Rejected, match="replayed"):
            the_gate.node_signal(signals.DOWN, env, NOW + 1)
        with pytest.raises(signals.Rejected, match="stale: signed 500 s ago"):
            gate(pki).node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW + 500)
        with pytest.raises(signals.Rejected, match="in the future"):
            gate(pki).node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW - 300)
        # Without nonce memory (the runner's check after the reactor's), a copy passes.
        assert gate(pki, replays=False).node_signal(signals.DOWN, env, NOW + 1)

    def test_the_policy_narrows_the_reporters_before_any_signature_work(self, pki):
        _, private = pki
        narrow = gate(pki, policy=lambda: entry(reporters=["ctl-c", "ctl-d"]))
        with pytest.raises(signals.Rejected, match="'ctl-b' is not an allowed reporter"):
            narrow.node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW)
        with pytest.raises(signals.Rejected, match="'web7' is no cluster node"):
            gate(pki).node_signal(signals.DOWN, envelope(private, "ctl-b", "web7"), NOW)
        # Without a cached policy, a signature still counts (the runner compiles one).
        unknown = gate(pki, policy=lambda: None)
        assert unknown.node_signal(signals.DOWN, envelope(private, "ctl-e", "ctl-a"), NOW)

    def test_a_rotated_key_is_read_again(self, pki, tmp_path):
        root, private = pki
        (tmp_path / "minions").mkdir()
        _, old_pub = salt.crypt.gen_keys(2048)
        (tmp_path / "minions" / "ctl-b").write_text(old_pub)
        keys = signals.AcceptedKeys(str(tmp_path))
        the_gate = signals.Gate(keys, lambda node: entry())
        with pytest.raises(signals.Rejected, match="bad signature"):
            the_gate.node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW)
        current = (open(os.path.join(root, "minions", "ctl-b"), "rb")).read()
        (tmp_path / "minions" / "ctl-b").write_bytes(current)
        os.utime(tmp_path / "minions" / "ctl-b", ns=(time.time_ns() + 10**9,) * 2)
        assert the_gate.node_signal(signals.DOWN, envelope(private, "ctl-b", "ctl-a"), NOW)

    def test_checking_is_cheap(self, pki):
        """The reactor runs this on every event: a forged signature costs well under a
        millisecond (here: the mean of 400)."""
        _, private = pki
        the_gate = gate(pki)
        forged = [envelope(private, "ctl-b", "ctl-a", signer="web7") for _ in range(400)]
        started = time.perf_counter()
        for env in forged:
            with pytest.raises(signals.Rejected):
                the_gate.node_signal(signals.DOWN, env, NOW)
        assert (time.perf_counter() - started) / 400 < 0.005


class TestRates:
    def test_a_bucket_per_sender(self):
        limit = signals.RateLimit(burst=3, rate=1.0)
        assert [limit.allow("ctl-b", NOW) for _ in range(4)] == [True, True, True, False]
        assert limit.allow("ctl-c", NOW)  # another sender has its own
        assert limit.allow("ctl-b", NOW + 1.0) and not limit.allow("ctl-b", NOW + 1.1)

    def test_rejections_are_reported_once_per_interval_with_a_count(self):
        report = signals.RejectionReport(interval=10)
        assert report.note("web7", NOW) == 0
        assert [report.note("web7", NOW + i / 100) for i in range(1, 400)] == [None] * 399
        assert report.note("ctl-b", NOW + 1) == 0
        assert report.note("web7", NOW + 10.5) == 399
        assert report.total == 402

    def test_the_nonce_memory_is_bounded(self):
        guard = signals.ReplayGuard(max_age=10, per_sender=3)
        for i in range(3):
            guard.check_and_note("ctl-b", f"{i:032x}", NOW)
        with pytest.raises(signals.Rejected, match="too many signals from ctl-b"):
            guard.check_and_note("ctl-b", f"{9:032x}", NOW + 1)
        guard.check_and_note("ctl-b", f"{9:032x}", NOW + 11)  # the old ones expired


class TestPolicyStore:
    def test_an_entry_counts_under_its_fingerprint_and_age(self, tmp_path):
        pillar = tmp_path / "pillar"
        pillar.mkdir()
        (pillar / "top.sls").write_text("base: {'*': [hastack]}\n")
        roots = {"base": [str(pillar)]}
        store = failover.PolicyStore(str(tmp_path / "store"), roots, max_age=60)
        store.put("ctl-a", NOW, policy={"nodes": FIVE})
        assert store.get("ctl-a", NOW + 0.5)["policy"]["nodes"] == FIVE
        assert store.get("ctl-a", NOW + 61) is None  # too old
        # Another process sees it (the file).
        other = failover.PolicyStore(str(tmp_path / "store"), roots, max_age=60)
        assert other.get("ctl-a", NOW)
        # The pillar changed: the fingerprint (taken again after a second) drops it,
        # and a new entry drops the old ones from the file.
        (pillar / "top.sls").write_text("base: {'ctl-*': [hastack]}\n")
        assert other.get("ctl-a", NOW + 2) is None
        other.put("ctl-b", NOW + 2, rejected="no")
        assert store.get("ctl-b", NOW + 3)["rejected"] == "no"
        assert store.get("ctl-a", NOW + 3) is None

    def test_the_fingerprint_follows_every_pillar_file(self, tmp_path):
        (tmp_path / "top.sls").write_text("base: {'*': [hastack]}\n")
        sub = tmp_path / "hastack"
        sub.mkdir()
        (sub / "init.sls").write_text("hastack: {}\n")
        roots = {"base": [str(tmp_path)]}
        first = failover.pillar_fingerprint(roots)
        assert failover.pillar_fingerprint(roots) == first
        (sub / "init.sls").write_text("hastack: {failover: {mode: observe}}\n")
        assert failover.pillar_fingerprint(roots) != first
        assert failover.pillar_fingerprint(roots, [{"git": "x"}]) != failover.pillar_fingerprint(
            roots
        )


class TestBeaconSettings:
    """The hastack_cluster beacon's settings, type-checked (Salt adds _beacon_name)."""

    beacon = load_module("_beacons", "hastack_cluster")

    def test_good_settings(self):
        config = [{"interval": 1}, {"resend": 10}, {"resend_for": 600.5}]
        assert self.beacon.validate(config) == (True, "valid")
        got = self.beacon._settings(config + [{"_beacon_name": "hastack_cluster"}])
        assert got["resend"] == 10.0 and got["disable_during_state_run"] is False

    @pytest.mark.parametrize(
        "config,reason",
        [
            ({"interval": 1}, "must be a list"),
            (["interval"], "is not a mapping"),
            ([{"interval": 0}], "interval: seconds, more than 0"),
            ([{"resend": "30"}], "resend: seconds, more than 0"),
            ([{"resend_for": True}], "resend_for: seconds, more than 0"),
            ([{"disable_during_state_run": "yes"}], "disable_during_state_run: true or false"),
            ([{"colour": "red"}], "unknown setting 'colour'"),
        ],
    )
    def test_bad_settings_are_named(self, config, reason):
        ok, why = self.beacon.validate(config)
        assert not ok and reason in why, why

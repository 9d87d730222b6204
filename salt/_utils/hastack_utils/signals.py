"""
Node signals the master can verify, and the cheap checks that come before anything else.

Any minion can send any tag, and in a batch of events (the way beacon returns travel)
any envelope, ``id`` included. So a node signal (``hastack/node/down|up``) carries a
signature: the ``hastack_cluster`` beacon signs ``(version, tag, sender, node, seen,
nonce)`` with its minion's private key, and the master verifies it with the public key
it accepted for that minion id (``<pki_dir>/minions/<id>``). A signature binds the
sender: a forged envelope naming bob cannot carry bob's signature. ``seen`` bounds a
signal's age and the nonce makes a replay within that age visible.

Everything here is cheap (shape checks, dict look-ups, one RSA verification of well
under a millisecond): the reactor runs it on every event before any pillar compile,
job or cluster call. The only file read is a minion's accepted public key, once per
version of that file.
"""

import base64
import binascii
import math
import os
import re
import secrets

import salt.crypt
import salt.exceptions

VERSION = 1
# Salt's RSA signing without SHA1 (FIPS-safe), as salt.crypt names it.
ALGORITHM = "PKCS1v15-SHA224"
DOWN, UP = "hastack/node/down", "hastack/node/up"
PRESENCE = "salt/presence/change"
# Seconds a signature is good for after the reporter saw the change (delivery, a busy
# master, clock skew), and how far in the future a reporter's clock may be.
MAX_AGE = 120
MAX_AHEAD = 30
NONCE_RE = re.compile(r"^[0-9a-f]{32}$")
# A node name as Pacemaker and Salt share it; a minion id may hold more, but not this.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,252}$")


class Rejected(Exception):
    """A signal that must not start anything; the text is the true reason."""


def _kind(value):
    """What a value is, for a reason that names it (``a list``, ``a dict``, ``None``)."""
    if value is None:
        return "None"
    name = {dict: "mapping", list: "list", str: "string", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
    return f"a {name}"


def _name(value, what):
    if not isinstance(value, str):
        raise Rejected(f"{what} is {_kind(value)}, not a name")
    if not NAME_RE.match(value) or value in (".", ".."):
        raise Rejected(f"{what} {value[:80]!r} is not a node or minion name")
    return value


def claimed_sender(envelope):
    """Who an envelope says sent it (a string, else None): only for reporting; it is
    trusted only once a signature by that minion's key verifies."""
    if isinstance(envelope, dict):
        sender = envelope.get("id")
        if isinstance(sender, str) and NAME_RE.match(sender):
            return sender
    return None


def message(tag, sender, node, seen, nonce):
    """The bytes a reporter signs and the master verifies."""
    return f"hastack-signal/{VERSION}\n{tag}\n{sender}\n{node}\n{seen!r}\n{nonce}".encode()


def new_nonce():
    return secrets.token_hex(16)


def sign(private_key, tag, sender, node, seen, nonce):
    """The base64 signature of a signal with ``private_key`` (a ``salt.crypt.PrivateKey``)."""
    raw = private_key.sign(message(tag, sender, node, seen, nonce), ALGORITHM)
    return base64.b64encode(raw).decode()


def signed_data(private_key, tag, sender, node, seen, **extra):
    """A signal's event data: ``node``, ``seen``, ``nonce``, ``sig`` and ``extra``
    (informational, not signed: the master trusts none of it)."""
    nonce = new_nonce()
    data = dict(extra, node=node, seen=seen, nonce=nonce)
    data["sig"] = sign(private_key, tag, sender, node, seen, nonce)
    return data


def read(tag, envelope):
    """The shape of an event, checked: ``("presence", None, lost)`` for a presence event
    (``lost``: the names it lists), ``(kind, sender, data)`` for a node signal (kind
    ``down`` or ``up``; ``sender`` as the envelope claims it, not yet verified).
    Raises ``Rejected`` with the true reason for anything else."""
    if tag not in (DOWN, UP, PRESENCE):
        raise Rejected(f"not a hastack signal: {str(tag)[:120]!r}")
    if not isinstance(envelope, dict):
        raise Rejected(f"the event data is {_kind(envelope)}, not a mapping")
    if tag == PRESENCE:
        if "cmd" in envelope or "id" in envelope:
            raise Rejected(
                f"a presence event sent by minion {claimed_sender(envelope)!r}: only the "
                "master's count"
            )
        lost = envelope.get("lost", [])
        if not isinstance(lost, list):
            raise Rejected(f"lost is {_kind(lost)}, not a list of minion ids")
        for i, name in enumerate(lost):
            if not isinstance(name, str):
                raise Rejected(f"lost[{i}] is {_kind(name)}, not a minion id")
        return "presence", None, lost
    kind = "down" if tag == DOWN else "up"
    if envelope.get("cmd") != "_minion_event" or "id" not in envelope:
        raise Rejected(
            "no sender: a node signal comes from a cluster node's minion (a person runs "
            f"salt-run failover.node_{kind} instead)"
        )
    sender = _name(envelope["id"], "the sender id")
    data = envelope.get("data")
    if data is None:
        raise Rejected("data is missing")
    if not isinstance(data, dict):
        raise Rejected(f"data is {_kind(data)}, not a mapping")
    if "node" not in data:
        raise Rejected("data.node is missing")
    node = _name(data["node"], "data.node")
    if node == sender:
        raise Rejected(f"'{sender}' reported itself {kind}")
    if "sig" not in data:
        raise Rejected(
            "unsigned: a node signal carries its reporter's signature (data.sig), as the "
            "hastack_cluster beacon sends it"
        )
    seen = data.get("seen")
    if isinstance(seen, bool) or not isinstance(seen, (int, float)) or not math.isfinite(seen):
        raise Rejected(f"data.seen is {_kind(seen)}, not a time")
    nonce = data.get("nonce")
    if not isinstance(nonce, str) or not NONCE_RE.match(nonce):
        raise Rejected("data.nonce is not 32 hex digits")
    if not isinstance(data["sig"], str) or len(data["sig"]) > 2048:
        raise Rejected(f"data.sig is {_kind(data['sig'])}, not a signature")
    return kind, sender, data


def check_age(data, now, max_age=MAX_AGE, max_ahead=MAX_AHEAD):
    age = now - data["seen"]
    if age > max_age:
        raise Rejected(f"stale: signed {age:.0f} s ago (a signal is good for {max_age} s)")
    if age < -max_ahead:
        raise Rejected(f"signed {-age:.0f} s in the future (is the reporter's clock right?)")


def verify(public_key, tag, sender, data):
    """Whether ``data.sig`` is ``sender``'s signature of the signal (``public_key``: a
    ``salt.crypt.PublicKey``, the one the master accepted for ``sender``)."""
    try:
        raw = base64.b64decode(data["sig"], validate=True)
    except (binascii.Error, ValueError):
        return False
    signed = message(tag, sender, data["node"], data["seen"], data["nonce"])
    return bool(public_key.verify(signed, raw, ALGORITHM))


class ReplayGuard:
    """Nonces seen within a signal's lifetime, per sender: a second arrival of a signed
    signal is a replay. Bounded: entries older than ``max_age`` are dropped."""

    def __init__(self, max_age=MAX_AGE + MAX_AHEAD, per_sender=4096):
        self.max_age = max_age
        self.per_sender = per_sender
        self.seen = {}

    def check_and_note(self, sender, nonce, now):
        held = self.seen.setdefault(sender, {})
        if nonce in held:
            raise Rejected(f"replayed: {sender}'s signal {nonce} arrived before")
        if len(held) >= self.per_sender:
            for old in [n for n, at in held.items() if now - at > self.max_age]:
                del held[old]
            if len(held) >= self.per_sender:
                raise Rejected(f"too many signals from {sender} within {self.max_age} s")
        held[nonce] = now


class RateLimit:
    """A token bucket per key: ``burst`` at once, then ``rate`` a second."""

    def __init__(self, burst, rate):
        self.burst, self.rate = float(burst), float(rate)
        self.buckets = {}

    def allow(self, key, now):
        tokens, at = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True


class RejectionReport:
    """Rejections, reported at most once per ``interval`` seconds per sender: the first
    one at once, the rest counted and carried by the next report (``suppressed``), so a
    flood does not flood the bus or the log in turn."""

    def __init__(self, interval=10.0):
        self.interval = interval
        self.state = {}
        self.total = 0

    def note(self, sender, now):
        """``None`` (counted, not to be reported now) or the number of this sender's
        rejections left unreported since its last report."""
        self.total += 1
        last, suppressed = self.state.get(sender, (None, 0))
        if last is not None and now - last < self.interval:
            self.state[sender] = (last, suppressed + 1)
            return None
        self.state[sender] = (now, 0)
        return suppressed


class AcceptedKeys:
    """The public keys this master accepted for its minions (``<pki_dir>/minions/<id>``),
    loaded once per key file version."""

    def __init__(self, pki_dir):
        self.folder = os.path.join(pki_dir, "minions")
        self.loaded = {}

    def __call__(self, sender):
        path = os.path.join(self.folder, sender)
        try:
            version = os.stat(path).st_mtime_ns
        except OSError:
            raise Rejected(f"'{sender}' has no accepted key on this master") from None
        held = self.loaded.get(sender)
        if held is None or held[0] != version:
            try:
                with open(path, "rb") as fh:
                    key = salt.crypt.PublicKey(fh.read())
            except (OSError, salt.exceptions.InvalidKeyError) as err:
                raise Rejected(f"the key accepted for '{sender}' cannot be read: {err}") from None
            held = self.loaded[sender] = (version, key)
        return held[1]


class Gate:
    """Every check a node signal passes before it may start anything, cheapest first:
    shape, age, the sender's standing in the node's cluster (``policy(node)``: the
    node's cached policy entry, or None when none is at hand), the signature with the
    key this master accepted for the sender (``keys(sender)``), then, with ``replays``,
    the nonce. Raises ``Rejected`` with the true reason."""

    def __init__(self, keys, policy, replays=None):
        self.keys, self.policy, self.replays = keys, policy, replays

    def node_signal(self, tag, envelope, now):
        """``(kind, sender, node)`` of a signal that passes."""
        kind, sender, data = read(tag, envelope)
        if kind == "presence":
            raise Rejected("a presence event is no node signal")
        check_age(data, now)
        entry = self.policy(data["node"])
        if entry and "rejected" in entry:
            raise Rejected(entry["rejected"])
        if entry and "policy" in entry:
            pol = entry["policy"]
            if data["node"] not in pol["nodes"]:
                raise Rejected(f"data.node '{data['node']}' is not a cluster node")
            if sender not in pol["reporters"]:
                raise Rejected(
                    f"'{sender}' is not an allowed reporter ({', '.join(pol['reporters'])})"
                )
        if not verify(self.keys(sender), tag, sender, data):
            raise Rejected(
                f"bad signature: not signed with the key this master accepted for '{sender}'"
            )
        if self.replays is not None:
            self.replays.check_and_note(sender, data["nonce"], now)
        return kind, sender, data["node"]

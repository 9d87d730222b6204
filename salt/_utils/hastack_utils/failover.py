"""
The self-healing policy and the decisions that need no backend: the failover pillar
(``hastack:failover``), which signals to trust, the gates, an incident's steps and the
drill's table. The ``failover`` runner does the talking; everything here is pure and
unit tested without Salt's loader.
"""

import datetime
import fcntl
import hashlib
import json
import os
import re
import uuid

from salt.exceptions import SaltInvocationError

from hastack_utils.signals import DOWN, PRESENCE, UP, Rejected  # noqa: F401 (the runner's names)

BASE = "hastack:failover"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODES = ("act", "observe")
RESTORE = ("auto", "manual")
# The steps of a node-down incident, in order; each is an event tag's last part.
# "evacuated" (the VMs of the node's compute identities) only where it has some.
STEPS = ("confirmed", "planned", "shifted", "reissued", "evacuated", "done")
FAILOVER_MODES = ("identity", "evacuate")
EVACUATION = {
    "metadata_key": None,  # protect only the VMs whose metadata sets it true
    "priority_key": None,  # metadata holding a whole number: higher goes first
    "target": None,  # a reserved host instead of Nova's scheduler
    "concurrency": 4,
    "timeout": 300,  # seconds each VM may take to come back
    "takeover_timeout": 120,  # seconds for a moved identity's compute to serve again
}
ENDS = ("done", "failed", "skipped")
DEFAULTS = {
    "mode": "act",
    "reporters": None,  # default: hastack:pacemaker:nodes
    "max_down": None,  # default: half the nodes, rounded down
    "confirm_timeout": 2,
    "placement_timeout": 60,
    "neutron_deadline": None,  # default: follows the work (floating_ip.reissue)
    "lease": 300,
    "restore": "auto",
    "fallback": [],
    "routers": True,
    "l3_hosts": {},
    "move": {},
    "reissue": False,
    "beacon_interval": 1,
    "beacon_resend": 30,
    "fence_timeout": 60,
}


def _fail(key, message):
    raise SaltInvocationError(f"{key}: {message}")


def _positive(value, key):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        _fail(key, f"seconds, more than 0 (got {value!r})")
    return value


def policy(failover, nodes, addresses=None):
    """The failover policy: ``failover`` (the ``hastack:failover`` pillar, may be empty)
    over the defaults, for a cluster of ``nodes`` (``hastack:pacemaker:nodes``) whose
    floating IPs are ``addresses`` (``hastack:floating_ips:addresses``). Raises
    ``SaltInvocationError`` naming the bad key."""
    if failover is None:
        failover = {}
    if not isinstance(failover, dict):
        _fail(BASE, "must be a mapping")
    unknown = sorted(set(failover) - set(DEFAULTS))
    if unknown:
        _fail(f"{BASE}:{unknown[0]}", f"unknown setting (known: {', '.join(sorted(DEFAULTS))})")
    if not isinstance(nodes, list) or len(nodes) < 2:
        _fail("hastack:pacemaker:nodes", "failover needs the cluster's nodes (at least two)")
    out = dict(DEFAULTS, **failover)
    if out["mode"] not in MODES:
        _fail(f"{BASE}:mode", f"one of {', '.join(MODES)} (got {out['mode']!r})")
    if out["restore"] not in RESTORE:
        _fail(f"{BASE}:restore", f"one of {', '.join(RESTORE)} (got {out['restore']!r})")
    if out["reporters"] is None:
        out["reporters"] = list(nodes)
    if not isinstance(out["reporters"], list) or not all(
        isinstance(r, str) and r for r in out["reporters"]
    ):
        _fail(f"{BASE}:reporters", "a list of minion ids")
    if out["max_down"] is None:
        out["max_down"] = len(nodes) // 2
    if (
        isinstance(out["max_down"], bool)
        or not isinstance(out["max_down"], int)
        or not 0 < out["max_down"] < len(nodes)
    ):
        _fail(f"{BASE}:max_down", f"a whole number from 1 to {len(nodes) - 1}")
    for key in (
        "confirm_timeout",
        "placement_timeout",
        "fence_timeout",
        "lease",
        "beacon_interval",
        "beacon_resend",
    ):
        _positive(out[key], f"{BASE}:{key}")
    if out["neutron_deadline"] is not None:
        _positive(out["neutron_deadline"], f"{BASE}:neutron_deadline")
    if not isinstance(out["fallback"], list) or [n for n in out["fallback"] if n not in nodes]:
        _fail(f"{BASE}:fallback", f"a list of cluster nodes ({', '.join(nodes)})")
    for key in ("routers", "reissue"):
        if not isinstance(out[key], bool):
            _fail(f"{BASE}:{key}", "true or false")
    if not isinstance(out["l3_hosts"], dict) or [n for n in out["l3_hosts"] if n not in nodes]:
        _fail(f"{BASE}:l3_hosts", "a mapping of cluster nodes to their Neutron host names")
    if not isinstance(out["move"], dict):
        _fail(f"{BASE}:move", "a mapping of cluster nodes to labels of floating IPs")
    for node, labels in out["move"].items():
        key = f"{BASE}:move:{node}"
        if node not in nodes:
            _fail(key, f"not a cluster node ({', '.join(nodes)})")
        if not isinstance(labels, list):
            _fail(key, "a list of labels in hastack:floating_ips:addresses")
        for label in labels:
            entry = (addresses or {}).get(label)
            if entry is None:
                _fail(key, f"'{label}' is not in hastack:floating_ips:addresses")
            if not entry.get("standby"):
                _fail(key, f"'{label}' has no standby in hastack:floating_ips:addresses:{label}")
    out["nodes"] = list(nodes)
    return out


def identities(given, nodes, base="hastack:computes:identities"):
    """The compute identities (``hastack:computes:identities``) checked against the
    Pacemaker ``nodes``: ``{name: {node, mode}}``. A node is home to one identity."""
    if not isinstance(given, dict) or not given:
        _fail(base, "a mapping of identity (nova's host=) to {node, mode}")
    homes, out = {}, {}
    for name, spec in given.items():
        key = f"{base}:{name}"
        if not isinstance(name, str) or not NAME_RE.match(name):
            _fail(key, "not a host name for nova (letters, digits, '.', '_' or '-')")
        spec = spec or {}
        if not isinstance(spec, dict):
            _fail(key, "must be a mapping")
        unknown = sorted(set(spec) - {"node", "mode"})
        if unknown:
            _fail(key, f"unknown setting(s): {', '.join(unknown)}")
        node = spec.get("node")
        if node is None:
            _fail(f"{key}:node", "required: the node this identity runs on while it is up")
        if node not in nodes:
            _fail(f"{key}:node", f"'{node}' is not in hastack:pacemaker:nodes ({', '.join(nodes)})")
        if node in homes:
            _fail(
                f"{key}:node",
                f"'{node}' is already the home of identity '{homes[node]}': a node is home "
                "to one identity (two would run two computes there all the time)",
            )
        homes[node] = name
        mode = spec.get("mode", "identity")
        if mode not in FAILOVER_MODES:
            _fail(
                f"{key}:mode",
                f"unknown failover mode {mode!r} (known: {', '.join(FAILOVER_MODES)})",
            )
        out[name] = {"node": node, "mode": mode}
    return out


def evacuation(given, base="hastack:computes:evacuation"):
    """How VMs are evacuated (``hastack:computes:evacuation``) over the defaults."""
    given = given or {}
    if not isinstance(given, dict):
        _fail(base, "must be a mapping")
    unknown = sorted(set(given) - set(EVACUATION))
    if unknown:
        _fail(f"{base}:{unknown[0]}", f"unknown setting (known: {', '.join(sorted(EVACUATION))})")
    out = dict(EVACUATION, **given)
    for key in ("metadata_key", "priority_key", "target"):
        if out[key] is not None and not (isinstance(out[key], str) and out[key]):
            _fail(f"{base}:{key}", f"a name, got {out[key]!r}")
    if (
        isinstance(out["concurrency"], bool)
        or not isinstance(out["concurrency"], int)
        or not 1 <= out["concurrency"] <= 64
    ):
        _fail(f"{base}:concurrency", f"a whole number from 1 to 64, got {out['concurrency']!r}")
    for key in ("timeout", "takeover_timeout"):
        _positive(out[key], f"{base}:{key}")
    return out


def vm_work(identities_of_cluster, node):
    """What a failure of ``node`` asks of Nova: the mode-identity identities at home
    there (Pacemaker starts them on a survivor; their VMs are checked there) and the
    mode-evacuate ones (their VMs are evacuated). ``{takeover: [name], evacuate:
    [name]}``, or ``{}`` when the node runs none."""
    work = {"takeover": [], "evacuate": []}
    for name, ident in sorted((identities_of_cluster or {}).items()):
        if ident["node"] == node:
            work["takeover" if ident["mode"] == "identity" else "evacuate"].append(name)
    return work if work["takeover"] or work["evacuate"] else {}


def fence_summary(history):
    """One line from ``pacemaker.fence_history``: the last attempts and why they failed."""
    if not history:
        return "the fencer has no attempt on record"
    failed = [e for e in history if e.get("status") == "failed"]
    pending = [e for e in history if e.get("status") == "pending"]
    parts = []
    if failed:
        last = failed[-1]
        parts.append(
            f"{len(failed)} failed attempt(s), the last a {last.get('action')} by "
            f"{last.get('by')}: {last.get('reason') or 'no reason given'}"
        )
    if pending:
        parts.append(f"a {pending[0].get('action')} still pending")
    return "; ".join(parts) or "the fencer reports no failure, yet the node is not fenced"


def steps_of(record):
    """The steps ``record``'s incident goes through (``evacuated`` only with VM work)."""
    vms = (record.get("plan") or {}).get("vms")
    return tuple(s for s in STEPS if s != "evacuated" or vms)


def confirm(node, view, stonith, minion_silent):
    """Whether ``node`` is down, from a survivor's Pacemaker ``view``
    (``pacemaker.status``) and whether its minion stayed silent: ``(True, facts)`` or
    ``(False, reason)``. With fencing on, the node must also be fenced (offline and not
    unclean)."""
    state = view["nodes"].get(node)
    if state is None:
        return False, f"Pacemaker does not know node '{node}'"
    if state.get("online"):
        return False, f"Pacemaker on the survivors sees '{node}' online"
    if stonith and state.get("unclean"):
        return False, f"'{node}' is offline but not fenced yet (stonith-enabled is true)"
    if not minion_silent:
        return False, f"the minion on '{node}' still answers"
    return True, {"pacemaker": "offline", "fenced": bool(stonith), "minion": "silent"}


def gates(node, view, nodes, max_down):
    """The gates a confirmed failure must pass before anything changes: the survivor's
    partition has quorum, and no more than ``max_down`` nodes are down (blast radius).
    Returns ``{gate: reason}`` for each gate that holds back, empty when all pass."""
    held = {}
    if not view.get("quorum"):
        held["quorum"] = "the survivors' partition has no quorum"
    down = sorted(n for n in nodes if not (view["nodes"].get(n) or {}).get("online"))
    if len(down) > max_down:
        held["blast_radius"] = (
            f"{len(down)} nodes down ({', '.join(down)}), more than max_down={max_down}: "
            "acting on none"
        )
    return held


def incident_id(node, now=None):
    """A new incident's id: the node, the UTC time and a random suffix."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{node}-{now.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def lock_name(node):
    """The CIB lock that holds ``node``'s incident (one per node, all masters)."""
    return f"incident-{node}"


def store_dir(cachedir):
    return os.path.join(cachedir, "hastack", "failover")


def pillar_fingerprint(pillar_roots, ext_pillar=None):
    """What the pillar's source looks like now: every file under ``pillar_roots`` by
    path, mtime and size, and the ``ext_pillar`` setting. A change to any pillar file
    changes it; a few hundred stat calls, no rendering."""
    digest = hashlib.sha1(json.dumps(ext_pillar, sort_keys=True, default=str).encode())
    for env in sorted(pillar_roots or {}):
        for root in pillar_roots[env] or []:
            for folder, dirs, files in os.walk(root, followlinks=True):
                dirs.sort()
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    digest.update(f"{env}\0{path}\0{st.st_mtime_ns}\0{st.st_size}\n".encode())
    return digest.hexdigest()[:16]


class PolicyStore:
    """Each node's failover policy as compiled from its pillar, kept in one JSON file
    (``<store>/policy.json``) so that the gate and every runner process share one
    compile. An entry counts while the pillar's fingerprint (``pillar_fingerprint`` of
    ``pillar_roots`` and ``ext_pillar``, taken at most once a second) is the one it was
    compiled under and it is younger than ``max_age`` seconds (for pillar sources no
    fingerprint sees, such as ext_pillar). An entry is ``{policy, stonith}`` for a
    cluster node, ``{rejected: reason}`` for a name that is none, or ``{invalid:
    error}`` for a node whose failover pillar does not validate."""

    def __init__(self, folder, pillar_roots=None, ext_pillar=None, max_age=600):
        self.path = os.path.join(folder, "policy.json")
        self.pillar = (pillar_roots, ext_pillar)
        self.max_age = max_age
        self._fingerprint = (None, None)
        self._read_as = None
        self._entries = {}

    def fingerprint(self, now):
        taken, value = self._fingerprint
        if taken is None or not 0 <= now - taken <= 1:
            value = pillar_fingerprint(*self.pillar)
            self._fingerprint = (now, value)
        return value

    def _read(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        if self._read_as != (st.st_mtime_ns, st.st_size):
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self._entries = json.load(fh)
            except (OSError, ValueError):
                self._entries = {}
            self._read_as = (st.st_mtime_ns, st.st_size)
        return self._entries

    def get(self, node, now):
        """The node's entry, or None when there is none that counts."""
        entry = self._read().get(node)
        if (
            entry
            and entry.get("fingerprint") == self.fingerprint(now)
            and 0 <= now - entry.get("compiled", 0) < self.max_age
        ):
            return entry
        return None

    def put(self, node, now, **entry):
        fingerprint = self.fingerprint(now)
        entry = dict(entry, fingerprint=fingerprint, compiled=now)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".lock", "a", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._read_as = None
            entries = {
                name: held
                for name, held in self._read().items()
                if held.get("fingerprint") == fingerprint
            }
            entries[node] = entry
            tmp = f"{self.path}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(entries, fh, sort_keys=True)
            os.replace(tmp, self.path)
        return entry


def plan_table(plan):
    """The drill's table: one row per thing that moves, then the gates."""
    rows = [("what", "name", "from", "to")]
    for rsc, move in sorted((plan.get("pacemaker") or {}).items()):
        to = move["to"] + (f" ({move['role']})" if move.get("role") else "")
        rows.append(("resource", rsc, move["from"], to))
    for rsc, why in sorted((plan.get("pacemaker_skipped") or {}).items()):
        rows.append(("resource", rsc, plan["node"], f"stays: {why}"))
    for router, move in sorted((plan.get("routers") or {}).items()):
        rows.append(("router", router, move["from"], move["to"]))
    for router, why in sorted((plan.get("routers_unplaced") or {}).items()):
        rows.append(("router", router, plan["node"], f"stays: {why}"))
    for address in plan.get("router_floating_ips") or []:
        rows.append(("floating IP", address, "(behind a moved router)", "with its router"))
    for label, move in sorted((plan.get("move") or {}).items()):
        rows.append(("floating IP", f"{label} {move.get('address') or ''}".strip(), "", "standby"))
    for address in plan.get("reissue") or []:
        rows.append(("floating IP", address, "", "reissued in place"))
    vms = plan.get("vms") or {}
    for name in vms.get("takeover") or []:
        rows.append(("identity", name, plan["node"], "a survivor; its VMs checked there"))
    evacuate = vms.get("evacuate") or {}
    if isinstance(evacuate, list):  # not planned in detail (Nova's part not asked)
        evacuate = {name: {"servers": []} for name in evacuate}
    for name, evac in sorted(evacuate.items()):
        if "error" in evac:
            rows.append(("identity", name, plan["node"], f"not planned: {evac['error']}"))
            continue
        fits = evac.get("fits") or {}
        for server in evac.get("servers") or []:
            to = fits.get(server["id"])
            rows.append(("VM", server["name"], name, f"{to} (estimate)" if to else "no room"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(4)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(rows) == 1:
        lines.append("(nothing to move)")
    if plan.get("neutron_unplanned"):
        lines.append(f"Neutron not planned: {plan['neutron_unplanned']}")
    for name, evac in sorted(evacuate.items()):
        if evac.get("shortfall"):
            lines.append(f"capacity {name}: {evac['shortfall']['summary']}")
        if evac.get("left_alone"):
            lines.append(f"not protected {name}: {', '.join(evac['left_alone'])}")
    lines.append("")
    for gate, verdict in sorted((plan.get("gates") or {}).items()):
        lines.append(f"gate {gate}: {verdict}")
    lines.append(f"mode: {plan.get('mode', 'act')}")
    return "\n".join(lines)

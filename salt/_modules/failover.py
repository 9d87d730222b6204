"""
The self-healing's execution functions: the gate the master asks before a node signal
may start anything (``admit``), and the jobs the ``failover`` runner gives a surviving
cluster node (``survey``: confirm, lock and plan Pacemaker's part; ``plan_neutron``:
plan Neutron's part; ``act``: carry a part of the plan out).

The gate
--------

The ``hastack_signals`` engine (or, on a master without engines, the reactor rule
``salt://hastack/reactor/signal.sls`` while the reactor renders it) calls
``failover.admit`` for every ``hastack/node/down``, ``hastack/node/up`` and
``salt/presence/change``: only a signal that passes reaches the ``failover.signal``
runner. The checks cost well under a millisecond and need no pillar compile, job or
cluster call:

- the shape (``hastack_utils.signals.read``: every malformed shape named);
- the age (a signal is good for two minutes) and the sender's standing in the node's
  cluster, from the policy the ``failover`` runner compiled and cached (refreshed when
  the pillar changes; a node not cached yet goes to the runner, which compiles it);
- the signature, with the public key this master accepted for the sender;
- the nonce (a replay is refused) and a rate per sender (a reporter that floods is cut
  off; its real signals are few).

A presence event is only a hint: it passes when it names a cached cluster node that
this master itself no longer sees connected, at a bounded rate.

A rejection is reported as ``hastack/failover/rejected`` ``{tag, sender, reason,
suppressed, at}`` and a warning in the master log, at most once per sender every
``hastack_failover_report_interval`` seconds (master config, default 10): the first at
once, the rest counted in the next report's ``suppressed``.

The gate runs in the master's process that calls it (the engine's, or the reactor's):
what it remembers (nonces, rates, reports) lives there. It is loaded by the master from
the same places as its runners: the installed extension, or ``salt-run
saltutil.sync_all``.
"""

import concurrent.futures
import contextvars
import logging
import threading
import time

import salt.utils.event
import salt.utils.minions
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import failover as policy_logic
from hastack_utils import signals

log = logging.getLogger(__name__)

__virtualname__ = "failover"
# Admitted node signals per authenticated sender: a burst, then one a second. A
# reporter sends one per change of a node plus a repeat every 30 s.
SENDER_BURST, SENDER_RATE = 20, 1.0
# Presence hints let through: a burst, then one every two seconds.
PRESENCE_BURST, PRESENCE_RATE = 5, 0.5


def __virtual__():
    return __virtualname__


class _Gate:
    """This process's gate: the checks and what they remember (nonces, rates, reports,
    loaded keys, the policy cache)."""

    def __init__(self, opts):
        self.opts = opts
        self.lock = threading.Lock()
        self.store = policy_logic.PolicyStore(
            policy_logic.store_dir(opts["cachedir"]),
            opts.get("pillar_roots"),
            opts.get("ext_pillar"),
            opts.get("hastack_failover_policy_max_age", 600),
        )
        self.gate = signals.Gate(
            signals.AcceptedKeys(opts["pki_dir"]), self.policy, signals.ReplayGuard()
        )
        self.senders = signals.RateLimit(SENDER_BURST, SENDER_RATE)
        self.hints = signals.RateLimit(PRESENCE_BURST, PRESENCE_RATE)
        self.report = signals.RejectionReport(opts.get("hastack_failover_report_interval", 10))
        self.event = None

    def policy(self, node):
        """The node's cached policy entry, or None (never a compile here)."""
        return self.store.get(node, time.time())

    def admit(self, tag, envelope):
        now = time.time()
        try:
            if tag == signals.PRESENCE:
                return self.presence(envelope, now)
            _, sender, _ = self.gate.node_signal(tag, envelope, now)
            if not self.senders.allow(sender, now):
                raise signals.Rejected(
                    f"rate: '{sender}' sent more than {SENDER_BURST} signals at once "
                    f"(then {SENDER_RATE:g} a second)"
                )
            return True
        except signals.Rejected as err:
            self.reject(tag, envelope, str(err), now)
            return False

    def presence(self, envelope, now):
        _, _, lost = signals.read(signals.PRESENCE, envelope)
        known = [n for n in lost if "policy" in (self.policy(n) or {})]
        if not known:
            return False  # nothing of the self-healing's: not a rejection either
        connected = salt.utils.minions.CkMinions(self.opts).connected_ids(subset=known)
        gone = [n for n in known if n not in connected]
        if not gone:
            raise signals.Rejected(
                f"presence hint: this master still sees {', '.join(known)} connected"
            )
        if not self.hints.allow("presence", now):
            raise signals.Rejected("rate: presence hints come faster than one every 2 s")
        return True

    def reject(self, tag, envelope, reason, now):
        sender = signals.claimed_sender(envelope)
        suppressed = self.report.note(sender, now)
        if suppressed is None:
            return
        tag = str(tag)[:200]
        log.warning(
            "hastack failover: rejected %s from %s: %s (%d more rejected since the last report)",
            tag,
            sender,
            reason,
            suppressed,
        )
        data = {"tag": tag, "sender": sender, "reason": reason, "suppressed": suppressed}
        try:
            if self.event is None:
                self.event = salt.utils.event.get_master_event(
                    self.opts, self.opts["sock_dir"], listen=False
                )
            self.event.fire_event(dict(data, at=now), "hastack/failover/rejected")
        except Exception as err:  # pylint: disable=broad-except
            log.warning("hastack failover: could not report a rejection: %s", err)
            self.event = None


_GATE = {}


def admit(tag, data):
    """
    Whether an event may become a ``failover.signal`` runner job: the master's reactor
    asks this while it renders ``salt://hastack/reactor/signal.sls``. Checks the shape,
    age, sender, signature and nonce of a node signal, or the hint a presence event
    gives (see the module docs); a rejection is reported (rate-limited) and False
    returned. Only on a master.

    tag
        The event's tag.

    data
        The event's data as the master bus carries it (the envelope).

    CLI Example:

    .. code-block:: bash

        salt-run salt.cmd failover.admit hastack/node/down '{id: bob, data: {node: alice}}'
    """
    if __opts__.get("__role") != "master":
        raise CommandExecutionError("failover.admit: the reactor's gate runs on the master")
    gate = _GATE.get("gate")
    if gate is None:
        gate = _GATE.setdefault("gate", _Gate(__opts__))
    with gate.lock:
        return gate.admit(tag, data)


# --------------------------------------------------------------------------- on a survivor


def _side_by_side(*parts):
    """Run independent parts at once; each result, or the exception it raised. Each
    thread runs in a copy of this one's context: Salt's loader keeps ``__salt__`` in a
    context variable, which a new thread would not see."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(parts)) as pool:
        futures = [pool.submit(contextvars.copy_context().run, part) for part in parts]
    out = []
    for future in futures:
        try:
            out.append(future.result())
        except (CommandExecutionError, SaltInvocationError) as err:
            out.append(err)
        except Exception as err:  # pylint: disable=broad-except
            # Not a TypeError escaping the job: Salt would call that invalid arguments.
            log.exception("hastack failover: a part failed")
            out.append(CommandExecutionError(f"{type(err).__name__}: {err}"))
    return out


def _view(imagine=None):
    status = __salt__["pacemaker.status"](offline_standby=False)
    view = {"quorum": status["quorum"], "nodes": status["nodes"]}
    if imagine:
        view["nodes"] = dict(view["nodes"], **{imagine: {"online": False}})
    return view


def _plan_pacemaker(node, nodes, fallback):
    shift = __salt__["pacemaker.shift_away"](node, nodes, fallback=fallback or None, test=True)
    return {
        "pacemaker": shift["plan"],
        "pacemaker_skipped": shift["skipped"],
        "placement": shift["placement"],
    }


def _plan_vms(vms, evacuation):
    """Nova's part of the plan: the identities Pacemaker moves (their VMs are checked
    where they land) and, per evacuated identity, ``nova_compute.plan`` (what fits on
    the survivors, the shortfall), or why it could not be planned."""
    out = {"takeover": list(vms.get("takeover") or []), "evacuate": {}}
    settings = evacuation or {}
    others = list(vms.get("takeover") or []) + list(vms.get("evacuate") or [])
    for name in vms.get("evacuate") or []:
        try:
            out["evacuate"][name] = __salt__["nova_compute.plan"](
                name,
                metadata_key=settings.get("metadata_key"),
                priority_key=settings.get("priority_key"),
                exclude=[o for o in others if o != name],
                target=settings.get("target"),
            )
        except (CommandExecutionError, SaltInvocationError) as err:
            out["evacuate"][name] = {"error": str(err)}
    return out


def _plan_neutron(node, l3_host, routers, reissue, vms=None, evacuation=None):
    out = {"routers": {}, "router_floating_ips": [], "routers_unplaced": {}}
    if vms:
        out["vms"] = _plan_vms(vms, evacuation)
    if routers:
        moves = __salt__["neutron_l3.move_routers"](
            from_host=l3_host or node, test=True, missing_ok=True
        )
        out["routers"] = moves["moved"]
        out["router_floating_ips"] = moves["floating_ips"]
        out["routers_unplaced"] = moves["failed"]
    if reissue:
        out["reissue"] = __salt__["floating_ip.reissue"](host=node, test=True)["reissued"]
    return out


def plan_neutron(node, l3_host=None, routers=True, reissue=False, vms=None, evacuation=None):
    """
    OpenStack's part of a failover plan for ``node``, read only: the routers on its L3
    agent, where each would go and the floating IPs behind them (and, with
    ``reissue``, the floating IPs of its ports); with ``vms``, Nova's part (the
    identities that move, and for each evacuated one what fits on the survivors). The
    failover runner asks it beside ``failover.survey``, on another process, so
    Pacemaker's part does not wait for openstacksdk to load. Returns ``{routers,
    router_floating_ips, routers_unplaced, reissue, vms}``.

    node
        The Pacemaker node that failed.

    l3_host
        Neutron's host name of the node's L3 agent (default: the node).

    routers
        Plan the router moves (default ``True``).

    reissue
        Also list the floating IPs of the node's ports (default ``False``).

    vms
        ``{takeover: [identity], evacuate: [identity]}``: the node's compute identities
        by failover mode (default: none).

    evacuation
        ``hastack:computes:evacuation`` (the metadata and priority keys).

    CLI Example:

    .. code-block:: bash

        salt '*' failover.plan_neutron alice
    """
    return _plan_neutron(node, l3_host, routers, reissue, vms, evacuation)


def survey(
    node,
    nodes,
    fallback=None,
    stonith=True,
    max_down=None,
    routers=True,
    l3_host=None,
    reissue=False,
    lock=None,
    imagine=False,
    neutron=True,
):
    """
    A survivor's look at ``node``'s failure for the failover runner, in one job: this
    node's Pacemaker view (``crm_mon``), whether it confirms the failure (offline, and
    fenced when ``stonith``) and passes the gates (quorum, at most ``max_down`` nodes
    down); then, side by side, the plan (Pacemaker's shift, confirmed by simulation; the
    routers on the node's L3 agent and the floating IPs behind them; with ``reissue``,
    the node's floating IPs) and, with ``lock``, the incident's lock in the CIB. Nothing
    but the lock is written. Returns ``{view, confirmed, reason or facts, gates, plan,
    lock, took}``.

    node
        The Pacemaker node that failed.

    nodes
        The cluster's nodes (``hastack:pacemaker:nodes``).

    fallback
        Preferred targets, in order (``hastack:failover:fallback``).

    stonith
        Whether fencing is on: the node must then be fenced, not only offline.

    max_down
        How many nodes may be down for the failover to act (default: half the nodes).

    routers
        Plan the router moves off the node's L3 agent (default ``True``).

    l3_host
        Neutron's host name of the node's L3 agent (default: the node).

    reissue
        Also list the floating IPs of the node's ports to reissue (default ``False``).

    lock
        ``{name, holder, value, lease}``: take this lock (``pacemaker.lock``) once the
        failure is confirmed and the gates pass; default: take none.

    imagine
        ``True``: imagine the node lost (a drill): Pacemaker's view with it offline,
        confirmed without fencing, no lock.

    neutron
        Plan Neutron's part too (default ``True``); ``False``: Pacemaker's only (the
        runner asks ``failover.plan_neutron`` beside it).

    CLI Example:

    .. code-block:: bash

        salt '*' failover.survey alice '[alice, bob, charlie]' imagine=True
    """
    started = time.monotonic()
    nodes = list(nodes)
    view = _view(imagine=node if imagine else None)
    ok, facts = policy_logic.confirm(node, view, bool(stonith) and not imagine, True)
    out = {"view": view, "confirmed": ok}
    if not ok:
        out["reason"] = facts
        state = view["nodes"].get(node) or {}
        # Offline, its fence still to come (or failing): the runner waits for it.
        out["unfenced"] = bool(stonith) and not state.get("online") and bool(state.get("unclean"))
        return dict(out, took=round(time.monotonic() - started, 3))
    out["facts"] = facts
    out["gates"] = policy_logic.gates(
        node, view, nodes, max_down if max_down is not None else len(nodes) // 2
    )
    if out["gates"] and not imagine:
        return dict(out, took=round(time.monotonic() - started, 3))
    parts = {"plan": lambda: _plan_pacemaker(node, nodes, fallback)}
    if neutron:
        parts["neutron"] = lambda: _plan_neutron(node, l3_host, routers, reissue)
    if lock and not imagine:
        parts["lock"] = lambda: __salt__["pacemaker.lock"](
            lock["name"], lock["holder"], value=lock["value"], lease=lock["lease"]
        )
    results = dict(zip(parts, _side_by_side(*parts.values())))
    for result in results.values():
        if isinstance(result, Exception):
            raise result
    out["plan"] = dict(results["plan"], **results.get("neutron", {}))
    if "lock" in results:
        out["lock"] = results["lock"]
    return dict(out, took=round(time.monotonic() - started, 3))


def _shift(node, nodes, plan, placement_timeout):
    started = time.monotonic()
    done = __salt__["pacemaker.shift_away"](node, nodes, plan=plan["pacemaker"])
    wanted = {rsc: where for rsc, where in plan["placement"].items() if where}
    settled = __salt__["pacemaker.settle"](wanted, timeout=placement_timeout)
    if not settled["settled"]:
        # The plan was simulated before Pacemaker acted on the fence (a resumed
        # incident's): it may have started a resource on another survivor meanwhile,
        # where stickiness keeps it. What counts then is what Pacemaker decides from
        # the CIB as it is now, simulated as the plan was (the constraints are written).
        try:
            now = __salt__["pacemaker.shift_away"](node, nodes, test=True)["placement"] or {}
        except CommandExecutionError:
            now = {}
        fresh = {rsc: where for rsc, where in now.items() if where}
        # Taken only when it still runs everything the plan placed (elsewhere is
        # fine): a resource that now starts nowhere fails the shift as before.
        if fresh != wanted and set(wanted) <= set(fresh):
            log.info("hastack failover: placement re-simulated after the shift: %s", fresh)
            wanted = fresh
            settled = __salt__["pacemaker.settle"](wanted, timeout=placement_timeout)
    if not settled["settled"]:
        raise CommandExecutionError(
            f"the placement did not settle within {placement_timeout} s: wanted {wanted}, "
            f"crm_mon shows {settled['placement']}"
        )
    return {
        "constraints": done["plan"],
        "placement": wanted,
        "live_placement": settled["placement"],
        "settled_in": round(settled["waited"], 3),
        "took": round(time.monotonic() - started, 3),
    }


def _neutron(node, plan, routers, l3_host, move, reissue, deadline):
    """The floating IPs to their standbys first (their writes alone, so they are quick
    and so is the two-movers guard that follows), the routers off the node's agent
    while that guard waits, then one read-back of every standby, then the reissue."""
    started = time.monotonic()
    out = {"routers": {}, "serving": {}, "moved": {}, "reissued": [], "timings": {}}

    def lap(what):
        out["timings"][what] = round(time.monotonic() - started, 3)

    standby = __salt__["floating_ip.to_standby"](move, read_back=False) if move else None
    lap("standby written")
    if standby and standby["failed"]:
        raise CommandExecutionError(f"floating IPs not on their standby: {standby['failed']}")
    if routers:
        moved = __salt__["neutron_l3.move_routers"](
            from_host=l3_host or node,
            # The planned ones only, also when a cut-short move left one unhosted.
            routers=sorted(plan.get("routers") or {}) or None,
            missing_ok=True,
        )
        if moved["failed"]:
            raise CommandExecutionError(f"routers not moved: {moved['failed']}")
        out["routers"] = moved["moved"]
        # move_routers read each move back from its new agent.
        out["serving"] = {router: where["to"] for router, where in moved["moved"].items()}
        lap("routers moved")
    if standby:
        held = __salt__["floating_ip.read_back_moves"](standby["written"])
        lap("standby read back")
        if held["failed"]:
            raise CommandExecutionError(f"floating IPs not on their standby: {held['failed']}")
        out["moved"] = {label: m["address"] for label, m in standby["moved"].items()}
    if reissue:
        done = __salt__["floating_ip.reissue"](host=node, deadline=deadline)
        if done["failed"] or done["in_flight"]:
            raise CommandExecutionError(
                f"floating IPs not reissued: {dict(done['failed'], **done['in_flight'])}"
            )
        out["reissued"] = done["reissued"]
    out["took"] = round(time.monotonic() - started, 3)
    return out


def _vms(node, plan, evacuation, since, stonith):
    """Nova's part: each moved identity's VMs running again where Pacemaker started it
    (hard-rebooted when their guest did not come back), each evacuated identity's
    protected VMs evacuated. Only for a fenced node. ``not_back`` names every VM that
    is not running again, with why."""
    started = time.monotonic()
    vms = plan.get("vms") or {}
    settings = dict(policy_logic.EVACUATION, **(evacuation or {}))
    out = {"takeover": {}, "evacuate": {}, "not_back": {}}
    if not stonith:
        raise CommandExecutionError(
            f"'{node}' is not fenced (stonith-enabled is false): hastack moves no VM off a "
            "node that may still write to its disks"
        )
    identities = list(vms.get("takeover") or []) + list(vms.get("evacuate") or {})

    def takeover(name):
        rsc = f"p_nova-compute-{name}"
        where = (plan.get("placement") or {}).get(rsc)
        if where:
            __salt__["pacemaker.settle"]({rsc: where}, timeout=settings["takeover_timeout"])
        return __salt__["nova_compute.takeover"](
            name,
            since,
            timeout=settings["takeover_timeout"],
            concurrency=settings["concurrency"],
        )

    def evacuate(name):
        return __salt__["nova_compute.evacuate"](
            name,
            metadata_key=settings["metadata_key"],
            priority_key=settings["priority_key"],
            target=settings["target"],
            concurrency=settings["concurrency"],
            timeout=settings["timeout"],
            exclude=[o for o in identities if o != name],
        )

    jobs = [("takeover", n, lambda n=n: takeover(n)) for n in vms.get("takeover") or []]
    jobs += [("evacuate", n, lambda n=n: evacuate(n)) for n in vms.get("evacuate") or {}]
    results = _side_by_side(*(job for _, _, job in jobs)) if jobs else []
    for (kind, name, _), result in zip(jobs, results):
        if isinstance(result, Exception):
            out[kind][name] = {"error": str(result)}
            out["not_back"][name] = str(result)
            continue
        out[kind][name] = result
        for vm, why in (result.get("failed") or {}).items():
            label = why["name"] if isinstance(why, dict) else vm
            out["not_back"][f"{name}/{label}"] = why["fault"] if isinstance(why, dict) else why
        if result.get("unplaced"):
            out["not_back"][f"{name}: no room"] = result["shortfall"]["summary"]
    out["took"] = round(time.monotonic() - started, 3)
    return out


def act(
    node,
    nodes,
    plan,
    parts=None,
    placement_timeout=60,
    routers=True,
    l3_host=None,
    move=None,
    reissue=False,
    neutron_deadline=None,
    lock=None,
    evacuation=None,
    since=None,
    stonith=True,
):
    """
    Carry out the failover runner's ``plan`` for ``node``: Pacemaker's part (the planned
    constraints in one epoch-guarded write, then ``crm_mon`` until it shows the plan),
    Neutron's (the floating IPs to their standbys, the routers off the node's L3
    agent while the standbys' two-movers guard waits, one read-back of every standby;
    then a reissue) and Nova's (the VMs of the node's compute identities: running again
    where Pacemaker moved an identity, or evacuated), side by side. Every step reads the current state first, so running
    it again (a resumed incident, another survivor taking over) finishes what was left
    and redoes nothing. Returns ``{shifted, reissued}``, each the part's result or
    ``{error}``; the job fails when a part did.

    node
        The Pacemaker node that failed.

    nodes
        The cluster's nodes.

    plan
        The plan ``failover.survey`` made.

    parts
        Which parts to carry out: ``shifted``, ``reissued``, ``evacuated`` (default the
        first two).

    placement_timeout
        Seconds to wait for ``crm_mon`` to show the plan (default 60).

    routers
        Move the routers off the node's L3 agent (default ``True``).

    l3_host
        Neutron's host name of the node's L3 agent (default: the node).

    move
        Labels in ``hastack:floating_ips:addresses`` whose floating IPs go to their
        standbys.

    reissue
        Reissue the floating IPs of the node's ports (default ``False``).

    neutron_deadline
        Seconds the reissue may take (default: it follows the work).

    lock
        ``{name, holder, value, lease}``: take (renew) this lock first, as another
        survivor or a resumed incident does; when someone else holds it, nothing is
        done and ``lock`` says who.

    evacuation
        ``hastack:computes:evacuation`` (keys, target, concurrency, timeouts).

    since
        When the node was confirmed down and fenced (UNIX time): a moved identity's
        compute counts as serving again once it reported after it.

    stonith
        Whether fencing is on; without it no VM is moved.

    CLI Example:

    .. code-block:: bash

        salt '*' failover.act alice '[alice, bob, charlie]' "$(cat plan.json)"
    """
    parts = list(parts or ("shifted", "reissued"))
    out = {}
    if lock:
        held = __salt__["pacemaker.lock"](
            lock["name"], lock["holder"], value=lock["value"], lease=lock["lease"]
        )
        out["lock"] = held
        if not held["acquired"] and held["value"] != lock["value"]:
            __context__["retcode"] = 1
            return out
    work = {
        "shifted": lambda: _shift(node, list(nodes), plan, placement_timeout),
        "reissued": lambda: _neutron(node, plan, routers, l3_host, move, reissue, neutron_deadline),
        "evacuated": lambda: _vms(node, plan, evacuation, since or time.time(), stonith),
    }

    def timed(part):
        # When each part ended (this node's clock): its event's time since the signal.
        try:
            return dict(work[part](), ended=time.time())
        except (CommandExecutionError, SaltInvocationError) as err:
            return {"error": str(err), "ended": time.time()}

    for part, result in zip(parts, _side_by_side(*(lambda p=p: timed(p) for p in parts))):
        out[part] = result
    if any("error" in out[part] for part in parts):
        __context__["retcode"] = 1
    return out

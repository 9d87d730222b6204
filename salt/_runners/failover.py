"""
Self-healing for a hastack cloud: a node of the Pacemaker cluster goes down, and the
master confirms it, gates it, plans, shifts the Pacemaker constraints off it, moves the
routers off its L3 agent and the floating IPs the pillar names to their standbys,
reads everything back and reports each step on the event bus.

Signals come in through the reactor (``salt://hastack/reactor/signal.sls`` hands the
tag and the whole envelope to ``signal``) or from a person (``node_down``). The flow:

1. **Trust.** ``hastack/node/down|up`` counts only from an allowed reporter
   (``hastack:failover:reporters``, default the Pacemaker nodes) other than the node
   reported, by the ``id`` the master sets on a minion's event; a presence event only
   as the master fires it. Anything else: ``hastack/failover/rejected``, nothing more.
2. **Confirm.** A survivor's Pacemaker sees the node offline (and fenced when
   ``stonith-enabled`` is true) and the node's minion is silent (not connected, or no
   answer within ``confirm_timeout``). Otherwise ``skipped`` with the reason.
3. **Gates.** The survivor's partition has quorum; no more than ``max_down`` nodes are
   down (blast radius); one incident per node: a lock file per node on this master
   (concurrent reactor threads, duplicate signals) and, before anything changes, a
   lock in the cluster's CIB (``pacemaker.lock``), which every master of a multi-master
   setup reaches through the survivors and the CIB manager takes atomically.
4. **Plan, act, verify.** ``pacemaker.shift_away`` (test, then real, epoch-guarded),
   ``pacemaker.settle`` (crm_mon until the placement is the plan), ``neutron_l3.
   move_routers`` off the node's L3 agent, ``floating_ip.move`` of the entries
   ``hastack:failover:move:<node>`` names, ``floating_ip.reissue`` of the node's ports
   with ``hastack:failover:reissue``; then Pacemaker and Neutron are read back.

An incident's record is kept under ``<cachedir>/hastack/failover/`` on the master after
every step: a fault ends it ``failed`` with what is left, and ``resume`` (or the next
signal for the node, or the first presence event after a master restart) finishes it
without redoing finished steps. ``hastack/node/up`` re-arms the node and, with
``hastack:failover:restore: auto``, runs ``pacemaker.restore``.

Events: ``hastack/failover/<incident>/{confirmed,planned,shifted,reissued,done,failed,
skipped,restored}`` and ``hastack/failover/rejected``; each carries ``incident``,
``node``, ``step``, ``at`` (epoch seconds), ``since_signal`` (seconds) and what the step
did.
"""

import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import threading
import time

import salt.client
import salt.pillar
import salt.utils.event
import salt.utils.minions
from salt.exceptions import SaltInvocationError

from hastack_utils import failover as policy_logic

log = logging.getLogger(__name__)

__virtualname__ = "failover"


def __virtual__():
    return __virtualname__


class StepFailed(Exception):
    """A step that could not be done; the text says what is left."""


# --------------------------------------------------------------------------- the store


def _store(kind, name=None):
    """The store's ``kind`` directory (made on first use), or ``name`` in it."""
    folder = os.path.join(policy_logic.store_dir(__opts__["cachedir"]), kind)
    os.makedirs(folder, exist_ok=True)
    return folder if name is None else os.path.join(folder, name)


_SAVE_LOCK = threading.Lock()


def _save(record):
    path = _store("incidents", f"{record['id']}.json")
    with _SAVE_LOCK:
        text = json.dumps(record, indent=1, sort_keys=True)
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)


def _load(incident):
    try:
        with open(_store("incidents", f"{incident}.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def _records(node=None):
    out = []
    for name in sorted(os.listdir(_store("incidents"))):
        if name.endswith(".json"):
            record = _load(name[: -len(".json")])
            if record and (node is None or record["node"] == node):
                out.append(record)
    return sorted(out, key=lambda r: r["started"])


def _armed_state(node):
    """The node's last incident that is not closed by its return (None: armed)."""
    path = _store("nodes", f"{node}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh).get("incident")
    except FileNotFoundError:
        return None


def _set_armed(node, incident):
    path = _store("nodes", f"{node}.json")
    if incident is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"incident": incident}, fh)


@contextlib.contextmanager
def _node_lock(node):
    """One incident per node on this master: an exclusive flock on a per-node file.
    Concurrent reactor threads and processes each open it, so they exclude each other;
    a master that died mid-incident holds nothing any more (the record says where it
    stopped). Yields False when another holder has it."""
    path = _store("locks", f"{node}.lock")
    with open(path, "a", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the bus


def _fire(tag, data):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
        event.fire_event(data, tag)


def _report(record, step, **what):
    now = time.time()
    data = {
        "incident": record["id"],
        "node": record["node"],
        "step": step,
        "mode": record.get("mode"),
        "at": now,
        "since_signal": round(now - record["signal"]["received"], 3),
    }
    data.update(what)
    record.setdefault("timings", {})[step] = data["since_signal"]
    _fire(f"hastack/failover/{record['id']}/{step}", data)
    return data


def _reject(tag, sender, reason):
    log.warning("hastack failover: rejected %s from %s: %s", tag, sender, reason)
    _fire(
        "hastack/failover/rejected",
        {"tag": tag, "sender": sender, "reason": reason, "at": time.time()},
    )
    return {"rejected": reason, "sender": sender, "tag": tag}


# --------------------------------------------------------------------------- the minions


_CLIENTS = threading.local()


def _client():
    """This thread's LocalClient: made once (its connection to the master's bus is
    reused by every call a thread makes)."""
    client = getattr(_CLIENTS, "client", None)
    if client is None:
        client = _CLIENTS.client = salt.client.get_local_client(mopts=__opts__)
    return client


def _run(tgt, fun, arg=(), kwarg=None, timeout=30, what=None):
    """``fun`` on minion ``tgt``: its return, or StepFailed naming ``what``."""
    what = what or fun
    try:
        res = _client().cmd(
            tgt,
            fun,
            arg=list(arg),
            kwarg=kwarg or {},
            timeout=timeout,
            full_return=True,
            gather_job_timeout=2,
        )
    except Exception as err:  # pylint: disable=broad-except
        raise StepFailed(f"{what}: {err}") from err
    got = res.get(tgt)
    if not got:
        raise StepFailed(f"{what}: {tgt} did not answer within {timeout} s")
    ret = got.get("ret")
    if got.get("retcode") not in (0, None) or (
        isinstance(ret, str) and ret.startswith(("ERROR", "Traceback", "The minion function"))
    ):
        raise StepFailed(f"{what} on {tgt} failed: {ret}")
    return ret


def _survivor_views(survivors, timeout):
    """``pacemaker.status`` from every survivor that answers within ``timeout``."""
    try:
        res = _client().cmd(
            survivors,
            "pacemaker.status",
            tgt_type="list",
            timeout=timeout,
            full_return=True,
            gather_job_timeout=1,
        )
    except Exception as err:  # pylint: disable=broad-except
        log.warning("hastack failover: pacemaker.status on the survivors failed: %s", err)
        return {}
    return {
        m: r["ret"]
        for m, r in res.items()
        if r and r.get("retcode") in (0, None) and isinstance(r.get("ret"), dict)
    }


def _first_survivor(pol, node):
    """``(worker, its pacemaker.status)``: the first survivor of ``node`` (in the
    fallback order) whose Pacemaker answers, or ``(None, None)``."""
    survivors = _survivors(pol, node)
    views = _survivor_views(survivors, pol["confirm_timeout"])
    worker = next((s for s in survivors if s in views), None)
    return worker, views.get(worker)


def _minion_silent(node, timeout):
    """Whether ``node``'s minion is gone: not connected to this master, or connected
    but not answering a ping within ``timeout``."""
    if __opts__.get("minion_data_cache", True):
        connected = salt.utils.minions.CkMinions(__opts__).connected_ids(subset=[node])
        if node not in connected:
            return True, "not connected"
    try:
        res = _client().cmd(node, "test.ping", timeout=timeout, gather_job_timeout=1)
    except Exception:  # pylint: disable=broad-except
        res = {}
    if res.get(node):
        return False, "answered a ping"
    return True, f"no answer to a ping within {timeout} s"


# --------------------------------------------------------------------------- the policy


def _pillar(minion):
    """The ``hastack`` pillar the master compiles for ``minion`` (trusted: rendered
    here, from the master's own top file and the minion's cached grains)."""
    id_, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pillar = salt.pillar.Pillar(__opts__, grains or {"id": minion}, id_ or minion, "base")
    return (pillar.compile_pillar() or {}).get("hastack") or {}


# A storm of duplicate signals must not compile the pillar once per signal: the policy
# of a node is reused for this long (seconds) within the master's reactor process.
POLICY_TTL = 2
_POLICIES = {}
_POLICIES_LOCK = threading.Lock()


def _cluster(node):
    """``(policy, stonith)`` for the cluster ``node`` belongs to, from its pillar."""
    with _POLICIES_LOCK:
        cached = _POLICIES.get(node)
        if cached and time.monotonic() - cached[0] < POLICY_TTL:
            return cached[1]
    started = time.monotonic()
    found = _compile_cluster(node)
    found[0]["compiled_in"] = round(time.monotonic() - started, 3)
    with _POLICIES_LOCK:
        _POLICIES[node] = (time.monotonic(), found)
    return found


def _compile_cluster(node):
    tree = _pillar(node)
    pcmk = tree.get("pacemaker") or {}
    nodes = pcmk.get("nodes")
    if not nodes or node not in nodes:
        raise policy_logic.Rejected(f"'{node}' is not a node of a hastack Pacemaker cluster")
    addresses = (tree.get("floating_ips") or {}).get("addresses") or {}
    pol = policy_logic.policy(tree.get("failover"), nodes, addresses)
    pol["addresses"] = {
        label: {k: v for k, v in entry.items() if k in ("address", "standby")}
        for label, entry in addresses.items()
    }
    stonith = str((pcmk.get("properties") or {}).get("stonith-enabled", "true")).lower()
    return pol, stonith in ("true", "1", "yes", "on")


# --------------------------------------------------------------------------- the steps


def _survivors(pol, node):
    preferred = [n for n in pol["fallback"] if n != node]
    return preferred + [n for n in pol["nodes"] if n != node and n not in preferred]


def _confirm(record, pol, stonith):
    node = record["node"]
    survivors = _survivors(pol, node)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        views = pool.submit(_survivor_views, survivors, pol["confirm_timeout"])
        silent = pool.submit(_minion_silent, node, pol["confirm_timeout"])
        views, (is_silent, how) = views.result(), silent.result()
    answered = [s for s in survivors if s in views]
    if not answered:
        return False, "no survivor's Pacemaker answered", None
    worker = next((s for s in answered if views[s].get("quorum")), answered[0])
    ok, facts = policy_logic.confirm(node, views[worker], stonith, is_silent)
    if not ok:
        return False, facts, None
    facts = dict(facts, minion=how, seen_by=worker)
    return True, facts, (worker, views[worker])


def _plan_pacemaker(node, pol, worker):
    shift = _run(
        worker,
        "pacemaker.shift_away",
        [node, pol["nodes"]],
        {"fallback": pol["fallback"] or None, "test": True},
        what="plan the Pacemaker shift",
    )
    return {
        "pacemaker": shift["plan"],
        "pacemaker_skipped": shift["skipped"],
        "placement": shift["placement"],
    }


def _plan_neutron(node, pol, worker):
    out = {"routers": {}, "router_floating_ips": []}
    if pol["routers"]:
        try:
            routers = _run(
                worker,
                "neutron_l3.move_routers",
                kwarg={"from_host": pol["l3_hosts"].get(node, node), "test": True},
                what="plan the router moves",
            )
            out["routers"] = routers["moved"]
            out["router_floating_ips"] = routers["floating_ips"]
        except StepFailed as err:
            if "no L3 agent on" not in str(err):
                raise
    out["move"] = {
        label: {"address": pol["addresses"][label].get("address")}
        for label in pol["move"].get(node, [])
    }
    if pol["reissue"]:
        out["reissue"] = _run(
            worker,
            "floating_ip.reissue",
            kwarg={"host": node, "test": True},
            what="plan the reissue",
        )["reissued"]
    return out


def _both(first, second):
    """Run two independent parts at once (Pacemaker's and Neutron's): ``(result or
    error, result or error)``."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(first), pool.submit(second)]
    out = []
    for future in futures:
        try:
            out.append(future.result())
        except (StepFailed, SaltInvocationError) as err:
            out.append(err)
    return out


def _plan(record, pol, worker):
    node = record["node"]
    plan = {"node": node, "mode": pol["mode"], "worker": worker}
    for part in _both(
        lambda: _plan_pacemaker(node, pol, worker), lambda: _plan_neutron(node, pol, worker)
    ):
        if isinstance(part, Exception):
            raise part
        plan.update(part)
    return plan


def _shift(record, pol):
    plan, node, worker = record["plan"], record["node"], record["plan"]["worker"]
    started = time.monotonic()
    # The planned constraints as they are: one guarded write, no second simulation.
    done = _run(
        worker,
        "pacemaker.shift_away",
        [node, pol["nodes"]],
        {"plan": plan["pacemaker"]},
        what="shift the Pacemaker constraints",
    )
    wanted = {rsc: where for rsc, where in plan["placement"].items() if where}
    settled = _run(
        worker,
        "pacemaker.settle",
        [wanted],
        {"timeout": pol["placement_timeout"]},
        timeout=pol["placement_timeout"] + 30,
        what="wait for the new placement",
    )
    if not settled["settled"]:
        raise StepFailed(
            f"the placement did not settle within {pol['placement_timeout']} s: "
            f"wanted {wanted}, crm_mon shows {settled['placement']}"
        )
    return {
        "constraints": done["plan"],
        "placement": wanted,
        "live_placement": settled["placement"],
        "settled_in": settled["waited"],
        "took": round(time.monotonic() - started, 3),
    }


def _reissue(record, pol):
    node, worker = record["node"], record["plan"]["worker"]
    started = time.monotonic()
    out = {"routers": {}, "moved": {}, "reissued": []}
    progress = record.setdefault("progress", {})
    if pol["routers"] and not progress.get("routers"):
        try:
            moved = _run(
                worker,
                "neutron_l3.move_routers",
                kwarg={
                    "from_host": pol["l3_hosts"].get(node, node),
                    # The planned ones only, also when a cut-short move left one unhosted.
                    "routers": sorted(record["plan"].get("routers") or {}) or None,
                },
                what="move the routers",
            )
        except StepFailed as err:
            if "no L3 agent on" not in str(err):
                raise
            moved = {"moved": {}, "failed": {}}
        if moved["failed"]:
            raise StepFailed(f"routers not moved: {moved['failed']}")
        progress["routers"] = moved["moved"]
        _save(record)
    out["routers"] = progress.get("routers", {})
    for label in pol["move"].get(node, []):
        if label in progress.setdefault("moved", {}):
            continue
        res = _run(worker, "floating_ip.move", [label], what=f"move floating IP {label}")
        progress["moved"][label] = res["address"]
        _save(record)
    out["moved"] = progress.get("moved", {})
    if pol["reissue"] and not progress.get("reissued"):
        res = _run(
            worker,
            "floating_ip.reissue",
            kwarg={"host": node, "deadline": pol["neutron_deadline"]},
            timeout=pol["neutron_deadline"] + 30,
            what="reissue the floating IPs",
        )
        progress["reissued"] = res["reissued"]
        _save(record)
    out["reissued"] = progress.get("reissued", [])
    if pol["routers"]:
        # move_routers read each move back from its new (live) agent; a planned router
        # it did not move this time (a resumed incident) is read back here.
        serving = {r: m["to"] for r, m in out["routers"].items()}
        if set(record["plan"].get("routers") or {}) - set(serving):
            serving = _routers_serving(
                record, pol, _run(worker, "neutron_l3.agents", what="read back the L3 agents")
            )
        out["serving"] = serving
    out["took"] = round(time.monotonic() - started, 3)
    return out


def _routers_serving(record, pol, agents):
    """The planned routers and the live agent each is on now; StepFailed when one is not
    on a live agent off the failed node."""
    l3_host = pol["l3_hosts"].get(record["node"], record["node"])
    serving = {
        r: a["host"] for a in agents if a["alive"] and a["host"] != l3_host for r in a["routers"]
    }
    planned = sorted(record["plan"].get("routers") or {})
    unserved = [r for r in planned if r not in serving]
    if unserved:
        raise StepFailed(f"routers not on a live L3 agent: {', '.join(unserved)}")
    return {r: serving[r] for r in planned}


def _verify(record, pol):
    """What the two parts read back: Pacemaker's placement (``settle`` saw it hold the
    plan) and the routers on live agents. A resumed incident whose parts were done
    before reads both again."""
    steps = record["steps"]
    shifted, reissued = steps.get("shifted", {}), steps.get("reissued", {})
    worker = record["plan"]["worker"]
    placement = shifted.get("live_placement")
    if record.get("resumed") or placement is None or (pol["routers"] and "serving" not in reissued):
        view, agents = _both(
            lambda: _run(worker, "pacemaker.status", what="read back Pacemaker"),
            lambda: (
                _run(worker, "neutron_l3.agents", what="read back the L3 agents")
                if pol["routers"]
                else None
            ),
        )
        for part in (view, agents):
            if isinstance(part, Exception):
                raise part
        placement = view["resources"]
        serving = _routers_serving(record, pol, agents) if pol["routers"] else {}
    else:
        serving = reissued.get("serving", {})
    wrong = {
        rsc: placement.get(rsc)
        for rsc, where in record["plan"]["placement"].items()
        if where and placement.get(rsc) != where
    }
    if wrong:
        raise StepFailed(f"Pacemaker does not hold the plan: {wrong}")
    return {"placement": placement, "routers": serving}


# --------------------------------------------------------------------------- the flow


def _new_record(node, source, sender, received, mode):
    return {
        "id": policy_logic.incident_id(node),
        "node": node,
        "state": "running",
        "mode": mode,
        "master": __opts__["id"],
        "started": time.time(),
        "signal": {"source": source, "sender": sender, "received": received},
        "steps": {},
    }


def _finish(record, state, step, persist=True, **what):
    record["state"] = state
    data = _report(record, step, **what)
    record["steps"][step] = data
    if persist:
        _save(record)
    return record


def _skip(record, reason):
    """End ``record`` skipped (kept in the store)."""
    record["reason"] = reason
    log.info("hastack failover: %s skipped: %s", record["node"], reason)
    return _finish(record, "skipped", "skipped", reason=reason)


def _skip_duplicate(node, source, sender, received, reason, mode=None):
    """A duplicate signal's short-lived incident: reported on the bus, not stored."""
    record = _new_record(node, source, sender, received, mode)
    record["reason"] = reason
    log.info("hastack failover: %s skipped: %s", node, reason)
    return _finish(record, "skipped", "skipped", persist=False, reason=reason)


def _drive(record, pol, stonith):
    """Run (or resume) ``record`` to its end; every step is saved as it completes."""
    node, steps = record["node"], record["steps"]
    speculative = None
    try:
        if "confirmed" not in steps:
            # A cluster member's signal is usually right: plan (reads and a simulation
            # only, nothing written) while confirming, on the survivor that will most
            # likely do the work. A presence hint is not worth the survivor's CPU.
            guess = _survivors(pol, node)[0]
            with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
                confirming = pool.submit(_confirm, record, pol, stonith)
                if record["signal"]["source"] != "presence":
                    speculative = (guess, pool.submit(_plan, record, pol, guess))
                ok, facts, found = confirming.result()
            if not ok:
                return _skip(record, facts)
            worker, view = found
            held = policy_logic.gates(node, view, pol["nodes"], pol["max_down"])
            if held:
                record["gates"] = held
                return _skip(record, "; ".join(held.values()))
            record["worker"] = worker
            steps["confirmed"] = _report(
                record, "confirmed", confirmed=facts, policy_compiled_in=pol.get("compiled_in")
            )
            _save(record)
        if "planned" not in steps:
            if pol["mode"] == "act":
                held = _run(
                    record["worker"],
                    "pacemaker.lock",
                    [policy_logic.lock_name(node), record["master"]],
                    {"value": record["id"], "lease": pol["lease"]},
                    what="take the incident lock",
                )
                if not held["acquired"] and held["value"] != record["id"]:
                    return _skip(
                        record, f"incident {held['value']} of master {held['holder']} holds {node}"
                    )
            plan = None
            if speculative and speculative[0] == record["worker"]:
                try:
                    plan = speculative[1].result()
                except (StepFailed, SaltInvocationError):
                    plan = None
            record["plan"] = plan or _plan(record, pol, record["worker"])
            record["plan"]["gates"] = {
                "quorum": "passed",
                "blast_radius": f"passed (max_down {pol['max_down']})",
            }
            steps["planned"] = _report(
                record,
                "planned",
                plan=record["plan"],
                table=policy_logic.plan_table(record["plan"]),
            )
            _save(record)
        if pol["mode"] == "observe":
            return _skip(record, "observe mode: planned only")
        # Pacemaker's part and Neutron's part do not wait for each other; their events
        # still come in the contract's order, each with its own duration ("took").
        shifted, reissued = _both(
            (lambda: None) if "shifted" in steps else lambda: _shift(record, pol),
            (lambda: None) if "reissued" in steps else lambda: _reissue(record, pol),
        )
        for step, result in (("shifted", shifted), ("reissued", reissued)):
            if isinstance(result, Exception):
                raise result
            if result is not None:
                steps[step] = _report(record, step, **result)
                _save(record)
        verified = _verify(record, pol)
        _set_armed(node, record["id"])
        return _finish(record, "done", "done", verified=verified)
    except (StepFailed, SaltInvocationError) as err:
        done = [s for s in policy_logic.STEPS if s in steps]
        left = [s for s in policy_logic.STEPS if s not in steps]
        record["error"] = str(err)
        _set_armed(node, record["id"])
        return _finish(record, "failed", "failed", error=str(err), done=done, left=left)


def _handle_down(node, source, sender, received):
    try:
        pol, stonith = _cluster(node)
    except policy_logic.Rejected as err:
        return _reject(policy_logic.DOWN, sender, str(err))
    with _node_lock(node) as mine:
        if not mine:
            return _skip_duplicate(
                node, source, sender, received, "an incident for this node is in progress"
            )
        last = _armed_state(node)
        if last:
            record = _load(last)
            if record and record["state"] in ("running", "failed"):
                log.info("hastack failover: resuming incident %s", last)
                record.setdefault("resumed", []).append(time.time())
                return _drive(record, pol, stonith)
            observed = (
                record
                and record["state"] == "skipped"
                and str(record.get("reason", "")).startswith("observe mode")
                and pol["mode"] == "observe"
            )
            if record and (record["state"] == "done" or observed):
                return _skip_duplicate(
                    node,
                    source,
                    sender,
                    received,
                    f"already handled by incident {last} (re-armed when the node is back)",
                    mode=pol["mode"],
                )
        record = _new_record(node, source, sender, received, pol["mode"])
        _set_armed(node, record["id"])
        _save(record)
        return _drive(record, pol, stonith)


def _handle_up(node, source, sender, received):
    try:
        pol, _ = _cluster(node)
    except policy_logic.Rejected as err:
        return _reject(policy_logic.UP, sender, str(err))
    with _node_lock(node) as mine:
        if not mine:
            return {"node": node, "up": "an incident for this node is in progress; try again"}
        last = _armed_state(node)
        record = _load(last) if last else None
        worker, view = _first_survivor(pol, node)
        if worker is None or not (view["nodes"].get(node) or {}).get("online"):
            return {"node": node, "up": "Pacemaker does not see it online yet"}
        if record is None or record["state"] == "skipped":
            # Nothing was done for it (not confirmed, a gate, observe mode): re-armed.
            _set_armed(node, None)
            return {"node": node, "up": "re-armed; no incident to close"}
        restored = None
        try:
            if pol["mode"] == "act" and pol["restore"] == "auto":
                restored = _run(worker, "pacemaker.restore", [node], what="restore the preferences")
            _run(
                worker,
                "pacemaker.unlock",
                [policy_logic.lock_name(node), record["master"]],
                what="release the incident lock",
            )
        except StepFailed as err:
            # The node stays armed to this incident: the next hastack/node/up (or
            # salt-run failover.node_up) tries again.
            _report(record, "failed", error=f"node back: {err}", done=[], left=["restored"])
            return {"node": node, "up": f"not restored: {err}"}
        _set_armed(node, None)
        record["closed"] = time.time()
        _save(record)
        data = _report(
            record,
            "restored",
            restore=pol["restore"],
            removed=restored,
            hint=None if restored is not None else f"salt-run failover.restore {node}",
        )
        record["steps"]["restored"] = data
        _save(record)
        return record


def _resume_unfinished():
    """Finish incidents a master restart interrupted (their lock files are free): only
    the nodes' current incidents are looked at, not the whole history."""
    for name in sorted(os.listdir(_store("nodes"))):
        incident = _armed_state(name[: -len(".json")]) if name.endswith(".json") else None
        record = _load(incident) if incident else None
        if record and record["state"] == "running":
            try:
                pol, stonith = _cluster(record["node"])
            except policy_logic.Rejected:
                continue
            with _node_lock(record["node"]) as mine:
                if mine:
                    record.setdefault("resumed", []).append(time.time())
                    _drive(record, pol, stonith)


# --------------------------------------------------------------------------- the runner functions


def signal(tag, envelope):
    """
    Answer a signal the reactor hands over, after checking its envelope (the thin
    reactor SLS ``salt://hastack/reactor/signal.sls`` calls this with the event's tag
    and whole data). ``hastack/node/down`` and ``hastack/node/up`` count only from an
    allowed reporter other than the node reported (the master-set ``id`` of a minion
    event); ``salt/presence/change`` only as the master fires it, and its ``lost``
    cluster nodes are only a hint to confirm. A rejected signal becomes
    ``hastack/failover/rejected`` and nothing else happens.

    tag
        The event's tag.
    envelope
        The event's data as the master bus carries it.

    CLI Example:

    .. code-block:: bash

        salt-run failover.signal hastack/node/down '{cmd: _minion_event, id: bob, data: {node: alice}}'
    """
    received = time.time()
    if not isinstance(envelope, dict):
        envelope = {}
    sender = policy_logic.sender_of(envelope)
    if tag == policy_logic.PRESENCE:
        # The first presence event after a master restart also finishes what it left.
        _resume_unfinished()
    candidate = (envelope.get("data") or {}).get("node") if tag != policy_logic.PRESENCE else None
    nodes, reporters = [], []
    if candidate:
        try:
            pol, _ = _cluster(candidate)
            nodes, reporters = pol["nodes"], pol["reporters"]
        except policy_logic.Rejected as err:
            return _reject(tag, sender, str(err))
        except SaltInvocationError as err:
            return _reject(tag, sender, f"the failover pillar is invalid: {err}")
    elif tag == policy_logic.PRESENCE:
        lost = envelope.get("lost") or []
        for minion in lost:
            try:
                pol, _ = _cluster(minion)
            except (policy_logic.Rejected, SaltInvocationError):
                continue
            nodes = sorted(set(nodes) | set(pol["nodes"]))
    try:
        kind, targets, sender = policy_logic.read_signal(tag, envelope, nodes, reporters)
    except policy_logic.Rejected as err:
        return _reject(tag, sender, str(err))
    source = "presence" if tag == policy_logic.PRESENCE else f"{sender}"
    handle = _handle_down if kind == "down" else _handle_up
    return {node: _summary(handle(node, source, sender, received)) for node in targets}


def _summary(record):
    if not isinstance(record, dict) or "id" not in record:
        return record
    return {
        "incident": record["id"],
        "state": record["state"],
        "reason": record.get("reason"),
        "error": record.get("error"),
        "timings": record.get("timings"),
    }


def node_down(node):
    """
    A person reports ``node`` down: the same confirmation, gates and steps as a signal
    from a cluster node (nothing is taken on trust).

    node
        The Pacemaker node (and minion id) that is down.

    CLI Example:

    .. code-block:: bash

        salt-run failover.node_down alice
    """
    return _summary(_handle_down(node, "operator", None, time.time()))


def node_up(node):
    """
    A person reports ``node`` back: once a survivor's Pacemaker sees it online, its
    incident is closed, the node re-armed and (``hastack:failover:restore: auto``) its
    preferences restored.

    node
        The Pacemaker node that is back.

    CLI Example:

    .. code-block:: bash

        salt-run failover.node_up alice
    """
    return _summary(_handle_up(node, "operator", None, time.time()))


def restore(node):
    """
    Restore ``node``'s Pacemaker preferences by hand (``hastack:failover:restore:
    manual``): ``pacemaker.restore`` on a survivor.

    node
        The Pacemaker node that is back.

    CLI Example:

    .. code-block:: bash

        salt-run failover.restore alice
    """
    pol, _ = _cluster(node)
    worker, _ = _first_survivor(pol, node)
    if worker is None:
        raise SaltInvocationError(f"node: no survivor of {node}'s cluster answered")
    return _run(worker, "pacemaker.restore", [node], what="restore the preferences")


def resume(incident=None):
    """
    Finish an incident that ended ``failed`` (or was cut short by a master restart):
    the steps it finished are not redone.

    incident
        The incident id; default: every unfinished incident.

    CLI Example:

    .. code-block:: bash

        salt-run failover.resume
        salt-run failover.resume alice-20261130T203000-1a2b3c
    """
    wanted = [_load(incident)] if incident else _records()
    if incident and wanted[0] is None:
        raise SaltInvocationError(f"incident: no incident '{incident}'")
    out = {}
    for record in wanted:
        if record["state"] not in ("running", "failed"):
            continue
        pol, stonith = _cluster(record["node"])
        with _node_lock(record["node"]) as mine:
            if not mine:
                out[record["id"]] = {"state": "running elsewhere on this master"}
                continue
            record.setdefault("resumed", []).append(time.time())
            out[record["id"]] = _summary(_drive(record, pol, stonith))
    return out


def _step_order(step):
    order = (*policy_logic.STEPS, "failed", "skipped", "restored")
    return order.index(step) if step in order else len(order)


def incidents(node=None):
    """
    The incidents this master recorded, oldest first: id, node, state, each step's
    time since the signal, the reason or error.

    node
        Only this node's incidents.

    CLI Example:

    .. code-block:: bash

        salt-run failover.incidents
        salt-run failover.incidents alice
    """
    return [
        dict(_summary(r), node=r["node"], steps=sorted(r["steps"], key=_step_order))
        for r in _records(node)
    ]


def drill(node):
    """
    What losing ``node`` would do, as a readable table: the resources that move and
    where, the routers and floating IPs, which gates pass. Nothing is changed and no
    event is sent.

    node
        The Pacemaker node to imagine lost.

    CLI Example:

    .. code-block:: bash

        salt-run failover.drill alice
    """
    pol, _ = _cluster(node)
    worker, view = _first_survivor(pol, node)
    if worker is None:
        raise SaltInvocationError(f"node: no survivor of {node}'s cluster answered")
    imagined = dict(view, nodes=dict(view["nodes"], **{node: {"online": False}}))
    held = policy_logic.gates(node, imagined, pol["nodes"], pol["max_down"])
    record = {"id": "drill", "node": node}
    plan = _plan(record, pol, worker)
    plan["gates"] = {
        "quorum": held.get("quorum", "passes"),
        "blast_radius": held.get("blast_radius", f"passes (max_down {pol['max_down']})"),
    }
    return policy_logic.plan_table(plan)

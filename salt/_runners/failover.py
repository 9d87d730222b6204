"""
Self-healing for a hastack cloud: a node of the Pacemaker cluster goes down, and the
master confirms it, gates it, plans, shifts the Pacemaker constraints off it, moves the
routers off its L3 agent and the floating IPs the pillar names to their standbys,
reads everything back and reports each step on the event bus.

Signals reach ``signal`` from the ``hastack_signals`` engine or the reactor rule
(``salt://hastack/reactor/signal.sls``), once the gate (``failover.admit``) let them
through, or from a person (``node_down``). The flow:

1. **Trust.** ``hastack/node/down|up`` counts only when signed by an allowed reporter
   (``hastack:failover:reporters``, default the Pacemaker nodes) other than the node
   reported, with the key this master accepted for it, fresh (``hastack_utils.
   signals``). A presence event is a hint: it counts for a cluster node this master
   itself no longer sees connected. Anything else: ``hastack/failover/rejected`` with
   the true reason, a warning in the master log and a failed return.
2. **Confirm and plan, one round trip.** The node's minion is silent (not connected to
   this master, or no answer to a ping within ``confirm_timeout``); one survivor
   (``failover.survey``) reads Pacemaker: the node offline (and fenced when
   ``stonith-enabled`` is true), quorum, at most ``max_down`` nodes down; and, side by
   side, plans the shift (simulated) and takes the incident's lock in the CIB
   (``pacemaker.lock``, one per node for every master). Neutron's part of the plan
   (``failover.plan_neutron``) is asked beside it, in a job of its own. A lock file per
   node on this master lets one incident per node run at a time.
3. **Act, side by side.** ``failover.act`` on the survivor, one job per part:
   Pacemaker's (the planned constraints, then ``crm_mon`` until it shows them) as soon
   as the lock is held, Neutron's (the routers off the node's L3 agent and the
   floating IPs to their standbys, one read-back for all, then a reissue) as soon as
   its plan is in. A survivor that stops answering is replaced by another; every step
   reads the state first, so nothing is redone.

An incident's record is kept under ``<cachedir>/hastack/failover/`` on the master after
every step: a fault ends it ``failed`` with what is left, and ``resume`` (or the next
signal for the node, or the first presence event after a master restart) finishes it
without redoing finished steps, or closes it when the node is back. ``hastack/node/up``
re-arms the node and, with ``hastack:failover:restore: auto``, runs
``pacemaker.restore``; one that comes while the node's incident runs is noted and
served when it ends.

Events: ``hastack/failover/<incident>/{confirmed,planned,shifted,reissued,done,failed,
skipped,restored}`` and ``hastack/failover/rejected``; each carries ``incident``,
``node``, ``step``, ``at`` (epoch seconds), ``since_signal`` (seconds) and what the step
did.

Errors are returned as ``{error, retcode: 1}`` (``salt-run`` exits 1) and logged in the
master log, never as a traceback.
"""

import concurrent.futures
import contextlib
import contextvars
import fcntl
import functools
import json
import logging
import os
import threading
import time

import salt.client
import salt.pillar
import salt.utils.event
import salt.utils.minions
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from hastack_utils import failover as policy_logic
    from hastack_utils import signals, sites

    HAS_UTILS = True
except ImportError:
    HAS_UTILS = False

log = logging.getLogger(__name__)

__virtualname__ = "failover"
# A job's answer is awaited this long before Salt asks the minion whether it still runs
# it (find_job, GATHER_TIMEOUT): a survivor that died is given up within both.
JOB_TIMEOUT = 3
GATHER_TIMEOUT = 2
# Threads for the parts of incidents that run side by side (each keeps its LocalClient).
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="hastack-failover")


def __virtual__():
    if not HAS_UTILS:
        return (
            False,
            "failover: hastack_utils is missing on this master: salt-run saltutil.sync_all "
            "(hastack from file_roots or gitfs), or pip install saltext.hastack",
        )
    return __virtualname__


class StepFailed(Exception):
    """A step that could not be done; the text says what is left."""


class WorkerLost(StepFailed):
    """The survivor doing a step did not answer (its minion is gone)."""


def _operator_facing(func):
    """A runner function's errors as data (``{error, retcode: 1}``: salt-run exits 1)
    and a line in the master log, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SaltInvocationError, CommandExecutionError, signals.Rejected, StepFailed) as err:
            log.error("hastack failover: %s: %s", func.__name__, err)
            return {"error": str(err), "retcode": 1}
        except Exception as err:  # pylint: disable=broad-except
            log.exception("hastack failover: %s failed", func.__name__)
            return {
                "error": f"{type(err).__name__}: {err} (the master log has the traceback)",
                "retcode": 1,
            }

    return wrapper


# --------------------------------------------------------------------------- the store


def _store(kind, name=None):
    """The store's ``kind`` directory (made on first use), or ``name`` in it."""
    folder = os.path.join(policy_logic.store_dir(__opts__["cachedir"]), kind)
    os.makedirs(folder, exist_ok=True)
    return folder if name is None else os.path.join(folder, name)


_SAVE_LOCK = threading.Lock()


def _write_json(path, data):
    with _SAVE_LOCK:
        # The engine's process and a salt-run may write the same record.
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=1, sort_keys=True, default=str))
        os.replace(tmp, path)


def _save(record):
    _write_json(_store("incidents", f"{record['id']}.json"), record)


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
    try:
        with open(_store("nodes", f"{node}.json"), encoding="utf-8") as fh:
            return json.load(fh).get("incident")
    except FileNotFoundError:
        return None


def _set_armed(node, incident):
    path = _store("nodes", f"{node}.json")
    if incident is None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    _write_json(path, {"incident": incident})


def _note_up(node, source, sender, received):
    """A return (hastack/node/up) that came while the node's incident runs: served by
    whoever holds the node's lock next."""
    _write_json(
        _store("nodes", f"{node}.up"), {"source": source, "sender": sender, "received": received}
    )


def _take_up(node):
    path = _store("nodes", f"{node}.up")
    try:
        with open(path, encoding="utf-8") as fh:
            noted = json.load(fh)
    except (FileNotFoundError, ValueError):
        return None
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
    return noted


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


_BUSY = object()


def _holding_node(node, work, pol):
    """``work()`` while holding ``node``'s lock (``_BUSY`` when another holds it), then a
    return noted meanwhile. A return noted after the last look, while the lock was
    still held, could not take the lock: it is served here after the release (whoever
    notes one tries the lock again after noting it, so none is left)."""
    with _node_lock(node) as mine:
        if not mine:
            return _BUSY
        out = work() if work else None
        _serve_up(node, pol)
    while os.path.exists(_store("nodes", f"{node}.up")):
        with _node_lock(node) as mine:
            if not mine:
                break  # its holder serves it
            _serve_up(node, pol)
    return out


def _serve_up(node, pol):
    noted = _take_up(node)
    if noted:
        log.info("hastack failover: serving %s's return noted at %s", node, noted["received"])
        _up_locked(node, pol, noted["source"])


# --------------------------------------------------------------------------- the bus


def _fire(tag, data):
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
        event.fire_event(data, tag)


def _report(record, step, since=None, **what):
    now = time.time()
    data = {
        "incident": record["id"],
        "node": record["node"],
        "step": step,
        "mode": record.get("mode"),
        "at": now,
        "since_signal": round(
            since if since is not None else now - record["signal"]["received"], 3
        ),
    }
    data.update(what)
    record.setdefault("timings", {})[step] = data["since_signal"]
    _fire(f"hastack/failover/{record['id']}/{step}", data)
    return data


_REPORTS = {}


def _reject(tag, envelope, reason):
    """A rejected signal: reported (at most once per sender every 10 s, the rest counted)
    and a failed return."""
    sender = signals.claimed_sender(envelope)
    report = _REPORTS.setdefault("report", signals.RejectionReport())
    suppressed = report.note(sender, time.time())
    if suppressed is not None:
        log.warning(
            "hastack failover: rejected %s from %s: %s (%d more rejected since the last report)",
            str(tag)[:200],
            sender,
            reason,
            suppressed,
        )
        _fire(
            "hastack/failover/rejected",
            {
                "tag": str(tag)[:200],
                "sender": sender,
                "reason": reason,
                "suppressed": suppressed,
                "at": time.time(),
            },
        )
    return {"rejected": reason, "sender": sender, "tag": str(tag)[:200], "retcode": 1}


# --------------------------------------------------------------------------- the minions


_CLIENTS = threading.local()


def _client():
    """This thread's LocalClient: made once (its connection to the master's bus is
    reused by every call a thread makes)."""
    client = getattr(_CLIENTS, "client", None)
    if client is None:
        client = _CLIENTS.client = salt.client.get_local_client(mopts=__opts__)
    return client


def _run(tgt, fun, arg=(), kwarg=None, what=None, failed_ok=False):
    """``fun`` on minion ``tgt``: its return. A minion that does not answer is
    ``WorkerLost``; a failed job (by its return code) is ``StepFailed``, unless
    ``failed_ok`` and it returned data (the parts it did and the error of the rest)."""
    what = what or fun
    try:
        res = _client().cmd(
            tgt,
            fun,
            arg=list(arg),
            kwarg=kwarg or {},
            timeout=JOB_TIMEOUT,
            full_return=True,
            gather_job_timeout=GATHER_TIMEOUT,
        )
    except Exception as err:  # pylint: disable=broad-except
        raise StepFailed(f"{what}: {err}") from err
    got = res.get(tgt)
    # Salt fills in a minion that did not return (not connected, or no answer to its
    # find_job) as out: no_return.
    if not isinstance(got, dict) or got.get("out") == "no_return":
        raise WorkerLost(f"{what}: {tgt} did not answer")
    ret = got.get("ret")
    if got.get("retcode", 0) != 0 or got.get("success") is False:
        if failed_ok and isinstance(ret, dict):
            return ret
        raise StepFailed(f"{what} on {tgt} failed: {ret}")
    return ret


def _connected(names):
    """Which of ``names`` this master sees connected, or None when it cannot tell
    (``minion_data_cache`` off)."""
    if not __opts__.get("minion_data_cache", True):
        return None
    return set(salt.utils.minions.CkMinions(__opts__).connected_ids(subset=list(names)))


def _ping(node, timeout):
    """Whether ``node``'s minion answers a ping within ``timeout`` (Salt fills in one
    that does not with a no_return text, which is not an answer)."""
    try:
        res = _client().cmd(
            node, "test.ping", timeout=timeout, gather_job_timeout=1, full_return=True
        )
    except Exception:  # pylint: disable=broad-except
        res = {}
    got = res.get(node)
    return isinstance(got, dict) and got.get("ret") is True


def _survivors(pol, node, lost=()):
    """The node's survivors in the fallback order, those this master sees connected
    first; none of ``lost``."""
    preferred = [n for n in pol["fallback"] if n != node]
    ordered = preferred + [n for n in pol["nodes"] if n != node and n not in preferred]
    ordered = [n for n in ordered if n not in lost]
    connected = _connected(ordered)
    if connected is None:
        return ordered
    return [n for n in ordered if n in connected] + [n for n in ordered if n not in connected]


def _first_survivor(pol, node, lost=()):
    """``(survivor, its pacemaker.status)``: the first survivor of ``node`` whose
    Pacemaker answers, or ``(None, None)``."""
    for survivor in _survivors(pol, node, lost):
        try:
            return survivor, _run(survivor, "pacemaker.status", what="read Pacemaker")
        except StepFailed:
            continue
    return None, None


# --------------------------------------------------------------------------- the policy


def _pillar(minion):
    """The ``hastack`` pillar the master compiles for ``minion`` (trusted: rendered
    here, from the master's own top file and the minion's cached grains), its site's
    and its own layers applied."""
    id_, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pillar = salt.pillar.Pillar(__opts__, grains or {"id": minion}, id_ or minion, "base")
    tree = (pillar.compile_pillar() or {}).get("hastack") or {}
    return sites.layered(tree, minion)[0] if tree else {}


def _compile_cluster(node):
    tree = _pillar(node)
    pcmk = tree.get("pacemaker") or {}
    nodes = pcmk.get("nodes")
    if not nodes or node not in nodes:
        raise signals.Rejected(f"'{node}' is not a node of a hastack Pacemaker cluster")
    addresses = (tree.get("floating_ips") or {}).get("addresses") or {}
    pol = policy_logic.policy(tree.get("failover"), nodes, addresses)
    computes = tree.get("computes") or {}
    pol["identities"] = (
        policy_logic.identities(computes["identities"], nodes) if computes.get("identities") else {}
    )
    pol["evacuation"] = policy_logic.evacuation(computes.get("evacuation"))
    # Who evicts a fenced node's CephFS sessions: the one minion with client.admin.
    mounts = (tree.get("cephfs") or {}).get("mounts") or {}
    filesystems = sorted({m["fs"] for m in mounts.values() if isinstance(m, dict) and m.get("fs")})
    admin = (tree.get("ceph") or {}).get("admin_minion")
    pol["cephfs_evict"] = {"minion": admin, "filesystems": filesystems} if filesystems else None
    pol["addresses"] = {
        label: {k: v for k, v in entry.items() if k in ("address", "standby")}
        for label, entry in addresses.items()
    }
    stonith = str((pcmk.get("properties") or {}).get("stonith-enabled", "true")).lower()
    return pol, stonith in ("true", "1", "yes", "on")


_POLICY = {}


def _policy_store():
    store = _POLICY.get("store")
    if store is None:
        store = _POLICY["store"] = policy_logic.PolicyStore(
            policy_logic.store_dir(__opts__["cachedir"]),
            __opts__.get("pillar_roots"),
            __opts__.get("ext_pillar"),
            __opts__.get("hastack_failover_policy_max_age", 600),
        )
    return store


def _entry(node):
    """``node``'s policy entry (see ``PolicyStore``), compiled from its pillar when the
    store has none that counts (the pillar changed, or it is older than its max age).
    Only a minion this master accepted has a pillar to compile."""
    now = time.time()
    entry = _policy_store().get(node, now)
    if entry is not None:
        return dict(entry, compiled_in=0.0)
    if not os.path.exists(os.path.join(__opts__["pki_dir"], "minions", node)):
        return {"rejected": f"'{node}' is not a minion of this master"}
    started = time.monotonic()
    try:
        pol, stonith = _compile_cluster(node)
        found = {"policy": pol, "stonith": stonith}
    except signals.Rejected as err:
        found = {"rejected": str(err)}
    except SaltInvocationError as err:
        found = {"invalid": f"the failover pillar of {node} is invalid: {err}"}
    took = round(time.monotonic() - started, 3)
    return dict(_policy_store().put(node, now, **found), compiled_in=took)


def _cluster(node):
    """``(policy, stonith)`` for the cluster ``node`` belongs to, from its pillar."""
    entry = _entry(node)
    if "rejected" in entry:
        raise signals.Rejected(entry["rejected"])
    if "invalid" in entry:
        raise SaltInvocationError(entry["invalid"])
    return dict(entry["policy"], compiled_in=entry["compiled_in"]), entry["stonith"]


def _gate():
    gate = _POLICY.get("gate")
    if gate is None:
        # No nonce memory here: the reactor's gate (failover.admit) already took this
        # signal's nonce when it let the signal through.
        gate = _POLICY["gate"] = signals.Gate(signals.AcceptedKeys(__opts__["pki_dir"]), _entry)
    return gate


# --------------------------------------------------------------------------- the steps


def _lock_spec(record, pol):
    return {
        "name": policy_logic.lock_name(record["node"]),
        "holder": record["master"],
        "value": record["id"],
        "lease": pol["lease"],
    }


def _neutron_args(pol, node):
    """Neutron's settings for ``node`` from the policy (every minion job that plans or
    carries out Neutron's part takes them)."""
    return {
        "routers": pol["routers"],
        "l3_host": pol["l3_hosts"].get(node),
        "reissue": pol["reissue"],
    }


def _survey_args(pol, node, stonith, **extra):
    """``failover.survey``'s settings from the policy."""
    return dict(
        extra,
        fallback=pol["fallback"],
        stonith=stonith,
        max_down=pol["max_down"],
        **_neutron_args(pol, node),
    )


def _survey(record, pol, stonith, lock):
    """``(worker, its survey)`` from the first survivor that answers, or (None, None)."""
    lost = set(record.get("lost_workers", []))
    for worker in _survivors(pol, record["node"], lost):
        try:
            got = _run(
                worker,
                "failover.survey",
                [record["node"], pol["nodes"]],
                # Neutron's part comes from failover.plan_neutron beside it.
                _survey_args(pol, record["node"], stonith, lock=lock, neutron=False),
                what="confirm and plan",
            )
        except WorkerLost:
            lost.add(worker)
            record["lost_workers"] = sorted(lost)
            continue
        return worker, got
    return None, None


def _fenced_survey(record, pol, stonith, lock):
    """``_survey``, again every second while the node is offline and not fenced yet
    (Pacemaker fences it first), up to ``fence_timeout``: then StepFailed naming why,
    with the fencer's history. Nothing is done before the fence."""
    deadline = time.monotonic() + pol["fence_timeout"]
    while True:
        worker, got = _survey(record, pol, stonith, lock)
        if not (got and got.get("unfenced")) or time.monotonic() >= deadline:
            break
        time.sleep(1)
    if got and got.get("unfenced"):
        history = _run(
            worker, "pacemaker.fence_history", [record["node"]], what="read the fence history"
        )
        raise StepFailed(
            f"'{record['node']}' is not fenced after {pol['fence_timeout']} s "
            f"({policy_logic.fence_summary(history)}): nothing was moved; fence it "
            f"(stonith_admin --fence {record['node']}, or --confirm once it is off) and run "
            f"salt-run failover.resume"
        )
    return worker, got


def _confirm(record, pol, stonith):
    """Step confirmed, the lock and Pacemaker's plan (``record["plan"]``); returns the
    ended record when it is skipped, else None."""
    node, steps = record["node"], record["steps"]
    lock = _lock_spec(record, pol) if pol["mode"] == "act" else None
    connected = _connected([node])
    if connected is not None and node not in connected:
        how = "not connected"
        worker, got = _fenced_survey(record, pol, stonith, lock)
    else:
        # Still connected (hung, or cut off): ask it while a survivor looks, and take
        # the lock only once both agree.
        pinged = _POOL.submit(contextvars.copy_context().run, _ping, node, pol["confirm_timeout"])
        worker, got = _fenced_survey(record, pol, stonith, None)
        if pinged.result():
            reason = f"the minion on '{node}' still answers"
            if got and not got["confirmed"]:
                reason = got["reason"]
            return _skip(record, reason)
        how = f"no answer to a ping within {pol['confirm_timeout']} s"
        if got and got["confirmed"] and not got.get("gates") and lock:
            got["lock"] = _run(
                worker,
                "pacemaker.lock",
                [lock["name"], lock["holder"]],
                {"value": lock["value"], "lease": lock["lease"]},
                what="take the incident lock",
            )
    if got is None:
        return _skip(record, "no survivor answered")
    if not got["confirmed"]:
        return _skip(record, got["reason"])
    if got.get("gates"):
        record["gates"] = got["gates"]
        return _skip(record, "; ".join(got["gates"].values()))
    record["worker"] = worker
    steps["confirmed"] = _report(
        record,
        "confirmed",
        confirmed=dict(got["facts"], minion=how, seen_by=worker),
        policy_compiled_in=pol.get("compiled_in"),
        survey_took=got.get("took"),
    )
    _save(record)
    held = got.get("lock")
    if held and not held["acquired"] and held["value"] != record["id"]:
        return _skip(record, f"incident {held['value']} of master {held['holder']} holds {node}")
    plan = _plan_of(got, pol, node, worker)
    plan["gates"] = {"quorum": "passed", "blast_radius": f"passed (max_down {pol['max_down']})"}
    record["plan"] = plan
    return None


def _vm_work(pol, node):
    return policy_logic.vm_work(pol.get("identities"), node)


def _plan_neutron(record, pol, worker):
    """OpenStack's part of the plan (Neutron's, and Nova's for the node's compute
    identities), from ``worker`` (read only)."""
    vms = _vm_work(pol, record["node"])
    if not (pol["routers"] or pol["reissue"] or vms):
        return {"routers": {}, "router_floating_ips": []}
    return _run(
        worker,
        "failover.plan_neutron",
        [record["node"]],
        dict(
            _neutron_args(pol, record["node"]),
            vms=vms or None,
            evacuation=pol.get("evacuation"),
        ),
        what="plan Neutron's and Nova's part",
    )


def _plan_of(surveyed, pol, node, worker):
    """A survey's plan with what the policy adds: the standby moves, the node's compute
    identities by failover mode (Nova's part plans them in detail), the mode, the
    worker."""
    plan = dict(surveyed["plan"], node=node, mode=pol["mode"], worker=worker)
    vms = _vm_work(pol, node)
    if vms:
        plan["vms"] = vms
    plan["move"] = {
        label: {"address": pol["addresses"][label].get("address")}
        for label in pol["move"].get(node, [])
    }
    return plan


def _neutron_plan(asked, record, pol):
    """Neutron's part of the plan for the planned event (``asked``: the job started
    beside the confirmation), asked again of the worker when that survivor was lost.
    When Neutron cannot say (unreachable), the error instead: Pacemaker's part goes on,
    and Neutron's part fails and says so (resume finishes it)."""
    try:
        if asked:
            with contextlib.suppress(WorkerLost):
                return asked.result()
        return _plan_neutron(record, pol, record["worker"])
    except StepFailed as err:
        return {"neutron_unplanned": str(err)}


_REPLACING = threading.Lock()


def _replace_worker(record, pol, lost, err):
    """Another survivor for ``lost`` (unless the other part replaced it already), or
    StepFailed."""
    with _REPLACING:
        if record["worker"] != lost:
            return
        gone = set(record.get("lost_workers", [])) | {lost}
        record["lost_workers"] = sorted(gone)
        worker, _ = _first_survivor(pol, record["node"], gone)
        if worker is None:
            raise StepFailed(f"{err}; no other survivor answers")
        log.warning("hastack failover: %s: %s is lost, %s carries on", record["id"], lost, worker)
        record.setdefault("workers", [lost]).append(worker)
        record["worker"] = record["plan"]["worker"] = worker
        _save(record)


def _evict_cephfs(record, pol):
    """The fenced node's CephFS sessions, evicted by the admin minion
    (``ceph_client.fs_evict``, by the node's name as its clients report their host
    name): otherwise a survivor that touches what the dead clients held (the instances
    of an identity taken over) blocks until the MDS drops them (60 s). Reported with
    the evacuated step, never fatal: the MDS drops them in time anyway."""
    spec, node = pol.get("cephfs_evict"), record["node"]
    if not spec:
        return None
    if not spec["minion"]:
        return {"skipped": "no hastack:ceph:admin_minion to evict with"}
    if spec["minion"] == node:
        return {
            "skipped": f"the admin minion '{node}' is the fenced node: the MDS drops its "
            f"sessions after its session timeout"
        }
    out = {}
    for fs in spec["filesystems"]:
        try:
            out.update(
                _run(
                    spec["minion"],
                    "ceph_client.fs_evict",
                    [node],
                    {"fs": fs},
                    what=f"evict {node}'s CephFS sessions from {fs}",
                )
                or {}
            )
        except StepFailed as err:
            return dict(out, error=str(err))
    return out


def _part(record, pol, part, stonith):
    """One part (``shifted``: Pacemaker's, ``reissued``: Neutron's) carried out by its own
    job on the worker, which is replaced when it stops answering (every step reads the
    state first: what the lost one half did is finished, not redone). Returns the
    part's result (or ``{error}``) and its time since the signal."""
    node = record["node"]
    # A replaced worker or a resumed incident renews the lock first (same holder and
    # incident; a takeover by another master after the lease shows there).
    relock = bool(record.get("resumed") or record.get("workers"))
    evicted = _evict_cephfs(record, pol) if part == "evacuated" and stonith else None
    while True:
        worker = record["worker"]
        try:
            got = _run(
                worker,
                "failover.act",
                [node, pol["nodes"], record["plan"]],
                dict(
                    _neutron_args(pol, node),
                    parts=[part],
                    placement_timeout=pol["placement_timeout"],
                    move=pol["move"].get(node, []),
                    neutron_deadline=pol["neutron_deadline"],
                    lock=_lock_spec(record, pol) if relock else None,
                    evacuation=pol.get("evacuation"),
                    since=record["steps"]["confirmed"]["at"],
                    stonith=stonith,
                ),
                what=f"carry out the plan ({part})",
                failed_ok=True,
            )
            break
        except WorkerLost as err:
            _replace_worker(record, pol, worker, err)
            relock = True
    since = time.time() - record["signal"]["received"]
    held = got.get("lock")
    if held and not held["acquired"] and held["value"] != record["id"]:
        return {"error": f"incident {held['value']} of master {held['holder']} holds {node}"}, since
    result = dict(got.get(part) or {"error": "not done"})
    result.pop("ended", None)
    if evicted is not None:
        result["evicted"] = evicted
    return result, since


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
    plan, or the shift's second simulation of it) and the routers on live agents. A
    resumed incident reads both again."""
    steps = record["steps"]
    shifted, reissued = steps.get("shifted", {}), steps.get("reissued", {})
    worker = record["worker"]
    placement = shifted.get("live_placement")
    serving = reissued.get("serving", {})
    if record.get("resumed") or placement is None:
        placement = _run(worker, "pacemaker.status", what="read back Pacemaker")["resources"]
        if pol["routers"]:
            agents = _run(worker, "neutron_l3.agents", what="read back the L3 agents")
            serving = _routers_serving(record, pol, agents)
    # Where the shift settled each planned resource: as planned, or (when Pacemaker
    # had already started one on another survivor, where stickiness keeps it) where
    # the shift's second simulation, which must still place every one, put it.
    planned = {rsc: where for rsc, where in record["plan"]["placement"].items() if where}
    wanted = dict(planned, **(shifted.get("placement") or {}))
    wrong = {
        rsc: placement.get(rsc)
        for rsc, where in wanted.items()
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
    """Run (or resume) ``record`` to its end; every step is saved as it completes.

    Pacemaker's and Neutron's parts are separate jobs that run side by side (Neutron's
    pays for loading openstacksdk; Pacemaker's should not wait for it), both started as
    soon as the failure is confirmed and the lock taken; Neutron's plan, asked beside
    the confirmation, is for the planned event. The events keep the contract's order."""
    node, steps = record["node"], record["steps"]
    try:
        neutron = None
        if "planned" not in steps:
            if "confirmed" in steps:
                del steps["confirmed"]  # cut short between the two: confirm again
            guess = next(iter(_survivors(pol, node, record.get("lost_workers", []))), None)
            if guess:
                # Read only: asked before the failure is confirmed, used only after.
                neutron = _POOL.submit(
                    contextvars.copy_context().run, _plan_neutron, record, pol, guess
                )
            if _confirm(record, pol, stonith) is not None:
                return record
        running = {}
        if pol["mode"] == "act":
            # Both parts start now: Neutron's finds the routers on the node's agent
            # itself (a resumed incident's plan names them), so neither waits for the
            # Neutron plan, which only the planned event needs.
            for part in ("shifted", "reissued", "evacuated"):
                if part not in steps and part in policy_logic.steps_of(record):
                    running[part] = _POOL.submit(
                        contextvars.copy_context().run, _part, record, pol, part, stonith
                    )
        if "planned" not in steps:
            record["plan"] = dict(record["plan"], **_neutron_plan(neutron, record, pol))
            steps["planned"] = _report(
                record,
                "planned",
                plan=record["plan"],
                table=policy_logic.plan_table(record["plan"]),
            )
            _save(record)
        if pol["mode"] == "observe":
            return _skip(record, "observe mode: planned only")
        errors = []
        for part in ("shifted", "reissued", "evacuated"):  # the contract's order
            if part not in running:
                continue
            result, since = running[part].result()
            if "error" in result:
                errors.append(result["error"])
                continue
            data = _report(record, part, since=since, **result)
            if result.get("not_back"):
                # Reported, not kept: a resume tries these VMs again.
                errors.append(
                    "VMs not running again: "
                    + "; ".join(f"{vm}: {why}" for vm, why in sorted(result["not_back"].items()))
                )
                continue
            steps[part] = data
            _save(record)
        if errors:
            raise StepFailed("; ".join(errors))
        verified = _verify(record, pol)
        _set_armed(node, record["id"])
        return _finish(record, "done", "done", verified=verified, workers=record.get("workers"))
    except (StepFailed, SaltInvocationError, CommandExecutionError) as err:
        done = [s for s in policy_logic.steps_of(record) if s in steps]
        left = [s for s in policy_logic.steps_of(record) if s not in steps]
        record["error"] = str(err)
        log.error("hastack failover: incident %s failed: %s", record["id"], err)
        _set_armed(node, record["id"])
        return _finish(record, "failed", "failed", error=str(err), done=done, left=left)


def _node_online(pol, node):
    """``(survivor, whether its Pacemaker sees node online)``."""
    worker, view = _first_survivor(pol, node)
    online = bool(worker) and bool((view["nodes"].get(node) or {}).get("online"))
    return worker, online


def _resume(record, pol, stonith):
    """Finish an unfinished incident, or close it when its node is back."""
    record.setdefault("resumed", []).append(time.time())
    _, online = _node_online(pol, record["node"])
    if online:
        log.info("hastack failover: %s is back: closing incident %s", record["node"], record["id"])
        _save(record)
        return _up_locked(record["node"], pol, "resume")
    log.info("hastack failover: resuming incident %s", record["id"])
    return _drive(record, pol, stonith)


def _handle_down(node, source, sender, received):
    try:
        pol, stonith = _cluster(node)
    except signals.Rejected as err:
        return _reject(signals.DOWN, {"id": sender}, str(err))

    def work():
        last = _armed_state(node)
        record = _load(last) if last else None
        if record and record["state"] in ("running", "failed"):
            record.setdefault("resumed", []).append(time.time())
            log.info("hastack failover: resuming incident %s", last)
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

    out = _holding_node(node, work, pol)
    if out is _BUSY:
        return _skip_duplicate(
            node, source, sender, received, "an incident for this node is in progress"
        )
    return out


def _up_locked(node, pol, source):
    """The node is back (its lock held): close its incident, restore, re-arm."""
    last = _armed_state(node)
    record = _load(last) if last else None
    worker, online = _node_online(pol, node)
    if not online:
        return {"node": node, "up": "Pacemaker does not see it online yet"}
    if record is None or record["state"] == "skipped":
        # Nothing was done for it (not confirmed, a gate, observe mode): re-armed.
        _set_armed(node, None)
        return {"node": node, "up": "re-armed; no incident to close"}
    restored, enabled = None, {}
    try:
        if pol["mode"] == "act" and pol["restore"] == "auto":
            restored = _run(worker, "pacemaker.restore", [node], what="restore the preferences")
        # Every evacuate-mode identity of the node, also when some VMs were not back.
        evacuated = ((record.get("plan") or {}).get("vms") or {}).get("evacuate") or {}
        for identity in sorted(evacuated):
            # Its compute (started again by Pacemaker at home) must have destroyed its
            # copies of the evacuated VMs first: no VM runs twice.
            enabled[identity] = _run(
                worker,
                "nova_compute.service_restore",
                [identity, (record["steps"].get("confirmed") or {}).get("at", record["started"])],
                {"timeout": (pol.get("evacuation") or policy_logic.EVACUATION)["takeover_timeout"]},
                what=f"enable {identity}'s compute again",
            )
        _run(
            worker,
            "pacemaker.unlock",
            [policy_logic.lock_name(node), record["master"]],
            what="release the incident lock",
        )
    except StepFailed as err:
        # The node stays armed to this incident: the beacon sends hastack/node/up again
        # while the lock is held (or: salt-run failover.node_up).
        _report(record, "failed", error=f"node back: {err}", done=[], left=["restored"])
        return {"node": node, "up": f"not restored: {err}"}
    _set_armed(node, None)
    record["closed"] = time.time()
    data = _report(
        record,
        "restored",
        restore=pol["restore"],
        removed=restored,
        enabled=enabled or None,
        closed_by=source,
        hint=None if restored is not None else f"salt-run failover.restore {node}",
    )
    record["steps"]["restored"] = data
    _save(record)
    return record


def _handle_up(node, source, sender, received):
    try:
        pol, _ = _cluster(node)
    except signals.Rejected as err:
        return _reject(signals.UP, {"id": sender}, str(err))
    out = _holding_node(node, lambda: _up_locked(node, pol, source), pol)
    if out is not _BUSY:
        return out
    _note_up(node, source, sender, received)
    # The holder may have looked for a noted return already: try once more.
    if _holding_node(node, None, pol) is _BUSY:
        return {"node": node, "up": "noted: served when the running incident ends"}
    return {"node": node, "up": "served"}


def _resume_unfinished():
    """Finish incidents a master restart interrupted (their lock files are free): only
    the nodes' current incidents are looked at, not the whole history."""
    for name in sorted(os.listdir(_store("nodes"))):
        incident = _armed_state(name[: -len(".json")]) if name.endswith(".json") else None
        record = _load(incident) if incident else None
        if record and record["state"] == "running":
            try:
                pol, stonith = _cluster(record["node"])
            except (signals.Rejected, SaltInvocationError):
                continue
            _holding_node(record["node"], lambda r=record: _resume(r, pol, stonith), pol)


def _presence_nodes(lost):
    """The cluster nodes a presence event names that this master knows (its cached
    policy; no compile) and no longer sees connected."""
    now = time.time()
    known = [n for n in lost if "policy" in (_policy_store().get(n, now) or {})]
    connected = _connected(known) or set()
    return [n for n in known if n not in connected]


# --------------------------------------------------------------------------- the runner functions


@_operator_facing
def signal(tag, envelope):
    """
    Answer a signal the reactor hands over (``salt://hastack/reactor/signal.sls``, with
    the event's tag and whole data, once ``failover.admit`` let it through), checking it
    again: a node signal must be signed by an allowed reporter other than the node (the
    key this master accepted for it) and fresh; a presence event only hints at the
    cluster nodes this master no longer sees connected. A rejected signal becomes
    ``hastack/failover/rejected`` with the true reason, a line in the master log and a
    failed return (``retcode: 1``).

    tag
        The event's tag.

    envelope
        The event's data as the master bus carries it.

    CLI Example:

    .. code-block:: bash

        salt-run failover.signal hastack/node/down '{cmd: _minion_event, id: bob, data: {node: alice}}'
    """
    received = time.time()
    try:
        if tag == signals.PRESENCE:
            _, _, lost = signals.read(tag, envelope)
            # The first presence event after a master restart also finishes what it left.
            _resume_unfinished()
            return {
                node: _summary(_handle_down(node, "presence", None, received))
                for node in _presence_nodes(lost)
            }
        kind, sender, node = _gate().node_signal(tag, envelope, received)
    except signals.Rejected as err:
        return _reject(tag, envelope, str(err))
    except SaltInvocationError as err:
        return _reject(tag, envelope, str(err))
    handle = _handle_down if kind == "down" else _handle_up
    return {node: _summary(handle(node, sender, sender, received))}


def _summary(record):
    if not isinstance(record, dict) or "id" not in record:
        return record
    return {
        "incident": record["id"],
        "state": record["state"],
        "reason": record.get("reason"),
        "error": record.get("error"),
        "timings": record.get("timings"),
        # A failed incident closed because its node is back stays "failed" in its
        # history; say that it is over, and who closed it.
        "closed_by": (record.get("steps", {}).get("restored") or {}).get("closed_by")
        if record.get("closed")
        else None,
    }


@_operator_facing
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


@_operator_facing
def node_up(node):
    """
    A person reports ``node`` back: once a survivor's Pacemaker sees it online, its
    incident is closed, the node re-armed and (``hastack:failover:restore: auto``) its
    preferences restored. While its incident still runs, the return is noted and served
    when the incident ends.

    node
        The Pacemaker node that is back.

    CLI Example:

    .. code-block:: bash

        salt-run failover.node_up alice
    """
    return _summary(_handle_up(node, "operator", None, time.time()))


@_operator_facing
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


@_operator_facing
def resume(incident=None):
    """
    Finish an incident that ended ``failed`` (or was cut short by a master restart):
    the steps it finished are not redone. When its node is back, the incident is closed
    instead (preferences restored, the node re-armed).

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
        if record["state"] not in ("running", "failed") or record.get("closed"):
            continue
        if _armed_state(record["node"]) != record["id"]:
            continue  # superseded by a later incident of the node, or closed
        pol, stonith = _cluster(record["node"])
        done = _holding_node(record["node"], lambda r=record: _resume(r, pol, stonith), pol)
        out[record["id"]] = (
            {"state": "running elsewhere on this master"} if done is _BUSY else _summary(done)
        )
    return out


def _step_order(step):
    order = (*policy_logic.STEPS, "failed", "skipped", "restored")
    return order.index(step) if step in order else len(order)


@_operator_facing
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


def open_incidents(nodes=None):
    """
    The incidents that are not over: running, or failed and neither resumed to the end
    nor closed by their node's return (what ``resume`` would take up). A rollout does
    not go on in a site with one open.

    nodes
        Only incidents of these nodes (a list).

    CLI Example:

    .. code-block:: bash

        salt-run failover.open_incidents
        salt-run failover.open_incidents '[alice, bob]'
    """
    return [
        dict(_summary(r), node=r["node"])
        for r in _records()
        if (nodes is None or r["node"] in nodes)
        and r["state"] in ("running", "failed")
        and not r.get("closed")
        and _armed_state(r["node"]) == r["id"]
    ]


@_operator_facing
def drill(node):
    """
    What losing ``node`` would do, as a readable table: the resources that move and
    where, the routers and floating IPs, the compute identities that move and the VMs
    evacuated (where each would fit, and what does not fit, by name and number), which
    gates pass. Nothing is changed and no event is sent.

    node
        The Pacemaker node to imagine lost.

    CLI Example:

    .. code-block:: bash

        salt-run failover.drill alice
    """
    pol, stonith = _cluster(node)
    lost = set()
    while True:
        worker = next(iter(_survivors(pol, node, lost)), None)
        if worker is None:
            raise SaltInvocationError(f"node: no survivor of {node}'s cluster answered")
        try:
            got = _run(
                worker,
                "failover.survey",
                [node, pol["nodes"]],
                _survey_args(pol, node, stonith, imagine=True),
                what="plan",
            )
            break
        except WorkerLost:
            lost.add(worker)
    held = got.get("gates") or {}
    plan = _plan_of(got, pol, node, worker)
    if plan.get("vms"):
        # Nova's part: what fits on the survivors (placement), the shortfall by name.
        plan["vms"] = _run(
            worker,
            "failover.plan_neutron",
            [node],
            {
                "routers": False,
                "reissue": False,
                "vms": plan["vms"],
                "evacuation": pol.get("evacuation"),
            },
            what="plan Nova's part",
        )["vms"]
    plan["gates"] = {
        "quorum": held.get("quorum", "passes"),
        "blast_radius": held.get("blast_radius", f"passes (max_down {pol['max_down']})"),
    }
    return policy_logic.plan_table(plan)


@_operator_facing
def formula_root():
    """
    Where the formula installed with hastack's package lies on this master (the folder
    holding ``hastack/``, the reactor SLS included): add it to ``file_roots`` to serve
    ``salt://hastack``. A master that runs hastack from file_roots or gitfs serves the
    repository's ``salt/`` folder instead.

    CLI Example:

    .. code-block:: bash

        salt-run failover.formula_root
    """
    try:
        import saltext.hastack  # pylint: disable=import-outside-toplevel
    except ImportError:
        saltext = None
    root = os.path.join(os.path.dirname(saltext.hastack.__file__), "formula") if saltext else ""
    if not os.path.isfile(os.path.join(root, "hastack", "reactor", "signal.sls")):
        raise SaltInvocationError(
            "hastack is not installed as a package on this master (pip install "
            "saltext.hastack); from file_roots or gitfs, serve the repository's salt/ folder, "
            "which holds the formula"
        )
    return root

"""
Pillar-based rollouts: one command takes a change (an SLS, ``hastack`` by default)
through the sites in the order the pillar gives (``hastack:sites``), in each site its
canary first, then its batches, with health gates after each step. The first failed
state or gate halts the rollout before the next minion is touched; ``resume`` starts
again at the step that halted, skipping what succeeded.

The steps come from the pillar the master compiles for each minion (its site is
``hastack:site``; the site's ``rollout`` settings: ``order``, ``canary``, ``batch``,
``gates``, ``ceph_health``). A batch never holds more nodes of the site's Pacemaker
cluster than its failover policy's ``max_down``.

Gates, before each step (so after the canary and after each batch, and before a
site's first step: a site already unhealthy is not touched), and after the last,
side by side, retried for up to the site's ``settle`` seconds:

- ``ceph``: the site's Ceph health through its admin minion (``ceph_client.status``,
  librados): no worse than the site's ``ceph_health`` (``HEALTH_WARN`` by default);
- ``pacemaker``: on a node of the site's cluster (``pacemaker.health``): quorum, every
  node in service, no failed action, every resource that should run started;
- ``incidents``: no failover incident open for a node of the site
  (``failover.open_incidents``);
- ``validate``: ``hastack.validate`` on the minions of the coming step, so a batch is
  never half applied for a bad pillar;
- the operator's gates (``rollout:gates``): an execution function whose job succeeds
  and returns anything but False or None.

Progress is kept on the master under ``<cachedir>/hastack/rollout/``. Events:
``hastack/rollout/<id>/{started,canary,batch,gate,halted,resumed,done}``.

Errors are returned as ``{error, retcode: 1}`` (``salt-run`` exits 1), never as a
traceback.
"""

import concurrent.futures
import contextvars
import fcntl
import functools
import json
import logging
import os
import re
import threading
import time

import salt.client
import salt.pillar
import salt.utils.event
import salt.utils.minions
from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    from hastack_utils import rollout as rollout_logic
    from hastack_utils import sites as sites_logic

    HAS_UTILS = True
except ImportError:
    HAS_UTILS = False

log = logging.getLogger(__name__)

__virtualname__ = "rollout"
# A gate's job: an answer within this long, else the gate fails.
GATE_TIMEOUT = 30
_CLIENTS = threading.local()


def __virtual__():
    if not HAS_UTILS:
        return (
            False,
            "rollout: hastack_utils is missing on this master: salt-run saltutil.sync_all "
            "(hastack from file_roots or gitfs), or pip install saltext.hastack",
        )
    return __virtualname__


class Halted(Exception):
    """A state or gate that failed: ``where`` says which."""

    def __init__(self, message, **where):
        super().__init__(message)
        self.where = where


def _operator_facing(func):
    """Errors as data (``{error, retcode: 1}``: salt-run exits 1), never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (SaltInvocationError, CommandExecutionError) as err:
            log.error("hastack rollout: %s: %s", func.__name__, err)
            return {"error": str(err), "retcode": 1}

    return wrapper


# --------------------------------------------------------------------------- the store


def _store(name=None):
    folder = os.path.join(__opts__["cachedir"], "hastack", "rollout")
    os.makedirs(folder, exist_ok=True)
    return folder if name is None else os.path.join(folder, name)


def _save(record):
    path = _store(f"{record['id']}.json")
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1, sort_keys=True, default=str)
    os.replace(tmp, path)


ID_RE = re.compile(r"^\d{8}T\d{6}-\d{3}$")


def _load(rollout_id):
    if not ID_RE.match(str(rollout_id)):
        raise SaltInvocationError(f"rollout: not a rollout id: {rollout_id!r}")
    path = _store(f"{rollout_id}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError as err:
        raise CommandExecutionError(f"rollout record {path} is unreadable: {err}") from err


def _records():
    names = [n[: -len(".json")] for n in os.listdir(_store()) if n.endswith(".json")]
    out = [_load(n) for n in names if ID_RE.match(n)]
    return sorted((r for r in out if r), key=lambda r: r["started"])


class _Lock:
    """One rollout at a time on this master."""

    def __enter__(self):
        self.fh = open(_store("rollout.lock"), "a", encoding="utf-8")  # noqa: SIM115
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self.fh.close()
            raise CommandExecutionError("another rollout is running on this master") from err
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


# --------------------------------------------------------------------------- the bus


def _fire(record, kind, **data):
    data.update(rollout=record["id"], mods=record["mods"], test=record["test"], at=time.time())
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=False) as event:
        event.fire_event(data, f"hastack/rollout/{record['id']}/{kind}")


def _say(message):
    """A line of progress on salt-run's output (the runner runs in salt-run's own
    process) and in the log."""
    log.info("hastack rollout: %s", message)
    if not __opts__.get("quiet"):
        print(message, flush=True)


# --------------------------------------------------------------------------- the minions


def _client():
    client = getattr(_CLIENTS, "client", None)
    if client is None:
        client = _CLIENTS.client = salt.client.get_local_client(mopts=__opts__)
    return client


def _connected(minions):
    """Which of ``minions`` this master sees connected (all of them when it cannot tell:
    ``minion_data_cache`` off). A job to a minion that is gone would wait out its
    timeout; it is not sent."""
    if not __opts__.get("minion_data_cache", True):
        return set(minions)
    return set(salt.utils.minions.CkMinions(__opts__).connected_ids(subset=list(minions)))


def _job(minions, fun, arg=(), kwarg=None, timeout=GATE_TIMEOUT):
    """``{minion: {ret, retcode}}`` of ``fun`` on ``minions``; a minion that did not
    answer, or is not connected, is left out."""
    live = [m for m in minions if m in _connected(minions)]
    if not live:
        return {}
    got = _client().cmd(
        live,
        fun,
        arg=list(arg),
        kwarg=kwarg or {},
        tgt_type="list",
        timeout=timeout,
        full_return=True,
    )
    return {
        m: r
        for m, r in (got or {}).items()
        if isinstance(r, dict) and r.get("out") != "no_return" and "ret" in r
    }


def _pillar(minion, saltenv=None):
    """The raw ``hastack`` pillar the master compiles for ``minion`` (trusted)."""
    id_, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pillar = salt.pillar.Pillar(
        __opts__, grains or {"id": minion}, id_ or minion, saltenv or "base"
    ).compile_pillar()
    if (pillar or {}).get("_errors"):
        raise SaltInvocationError(
            f"minion {minion}: the pillar does not compile: {'; '.join(pillar['_errors'])[:2000]}"
        )
    return (pillar or {}).get("hastack")


def _targets(tgt, tgt_type):
    found = salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type)
    minions = sorted(found["minions"] if isinstance(found, dict) else found)
    if not minions:
        raise SaltInvocationError(f"tgt: no accepted minion matches {tgt!r}")
    return minions


# --------------------------------------------------------------------------- the plan


def _plan(targets, saltenv=None):
    """``(sites, steps)``: each site's settings, its minions and what its gates need,
    and the rollout's steps in order. Every error names the pillar key."""
    trees, defined, seen_by = {}, None, None
    for minion in targets:
        raw = _pillar(minion, saltenv)
        if not isinstance(raw, dict):
            raise SaltInvocationError(
                f"hastack: minion {minion} has no hastack pillar (leave it out with tgt)"
            )
        try:
            mine = sites_logic.defined(raw)
            trees[minion] = sites_logic.layered(raw, minion)[0]
        except SaltInvocationError as err:
            raise SaltInvocationError(f"minion {minion}: {err}") from None
        if defined is None:
            defined, seen_by = mine, minion
        elif sites_logic.rollouts(mine) != sites_logic.rollouts(defined):
            raise SaltInvocationError(
                f"hastack:sites: minions {seen_by} and {minion} are given different sites "
                "or rollout settings"
            )
    if not defined:  # no sites in pillar: each hastack:site is a site, by name
        names = sorted({tree.get("site", "default") for tree in trees.values()})
        defined = {
            name: dict(sites_logic.rollout_settings(None, f"hastack:sites:{name}"), settings={})
            for name in names
        }
    sites, steps = {}, []
    for site, spec in defined.items():
        members = sorted(m for m, tree in trees.items() if tree.get("site", "default") == site)
        if not members:
            continue
        sites[site] = _site(site, spec, members, trees)
        admin = sites[site]["ceph_admin"]
        steps += rollout_logic.steps(
            site,
            members,
            spec["canary"],
            spec["batch"],
            sites[site]["clusters"],
            first=admin if admin in members else None,
        )
    return sites, steps


def _agreed(site, members, trees, path):
    """The one value the site's minions give ``hastack:<path>`` (those that give it),
    or None; minions that disagree are an error naming the key."""
    seen = {}
    for minion in members:
        value = sites_logic.setting(trees[minion], minion, path)
        if value is not None:
            seen.setdefault(json.dumps(value, sort_keys=True, default=str), minion)
    if len(seen) > 1:
        first, second = list(seen.values())[:2]
        raise SaltInvocationError(
            f"hastack:{path}: minions {first} and {second} of site {site} disagree"
        )
    return json.loads(next(iter(seen))) if seen else None


def _site(site, spec, members, trees):
    """What the gates of ``site`` need: facts every minion of the site that has them
    agrees on (the Ceph admin minion, the Pacemaker nodes), from their layered pillars."""
    admin = _agreed(site, members, trees, "ceph:admin_minion")
    nodes = _agreed(site, members, trees, "pacemaker:nodes") or []
    holder = next((m for m in members if (trees[m].get("pacemaker") or {}).get("nodes")), None)
    clusters = {}
    if isinstance(nodes, list) and len(nodes) > 1:
        tree = trees[holder]
        clusters["pacemaker"] = {
            "nodes": nodes,
            "failover": tree.get("failover"),
            "addresses": (tree.get("floating_ips") or {}).get("addresses"),
        }
    running = [n for n in nodes if n in members]
    return {
        "minions": members,
        # Asked even when it is not rolled to: the site's Ceph health is read there.
        "ceph_admin": admin,
        "ceph_health": spec["ceph_health"],
        "settle": spec["settle"],
        "pacemaker_nodes": running,
        "cib_file": {n: (trees[n].get("pacemaker") or {}).get("cib_file") for n in running},
        "failover_nodes": list(nodes),
        "gates": spec["gates"],
        "clusters": clusters,
    }


def _apply(record, step, minions):
    """``state.apply`` of the rollout's SLS on ``minions`` (one job): the changed state
    ids are noted in ``step``; the first failed state (or a minion that did not
    answer) halts, and only the minions on which everything succeeded count as applied."""
    gone = [m for m in minions if m not in _connected(minions)]
    if gone:
        # Not one of the step's minions is touched while one of them is gone.
        raise Halted(f"{gone[0]} is not connected to this master", minion=gone[0])
    kwarg = {"test": True} if record["test"] else {}
    if record.get("saltenv"):
        kwarg["saltenv"] = record["saltenv"]
    got = _client().cmd(
        list(minions),
        "state.apply",
        arg=[record["mods"]],
        kwarg=kwarg,
        tgt_type="list",
        timeout=record["timeout"],
        full_return=True,
    )
    changed, applied, failure = rollout_logic.outcome(minions, got, test=record["test"])
    step["changed"] = {**step.get("changed", {}), **changed}
    step["applied"] = sorted(set(step.get("applied", [])) | set(applied))
    if failure is not None:
        message = failure.pop("message")
        raise Halted(message, **failure)
    return changed


def _gate_plan(record, index):
    """What is checked before step ``index`` (``len(steps)``: after the last): the
    site of the step before (its gates, with the minions just done) and, on entering a
    site, that site's too (the minions just done: none); and the minions of the step
    about to run, which validate."""
    steps = record["steps"]
    before = steps[index - 1] if index > 0 else None
    coming = steps[index] if index < len(steps) else None
    checked = []
    if before is not None:
        checked.append((before["site"], before["minions"]))
    if coming is not None and (before is None or coming["site"] != before["site"]):
        checked.append((coming["site"], None))
    validate = []
    if coming is not None:
        validate = [m for m in coming["minions"] if m not in coming.get("applied", [])]
    return checked, validate


def _gates(record, index):
    """Every gate before step ``index``, side by side: ``[{site, gate, ok, message,
    seconds}]``. The minion-side checks (Ceph through each site's admin minion,
    Pacemaker through one cluster node, ``hastack.validate`` on the coming minions) are
    one job (``hastack.health``); incidents are read here; each operator gate is a job
    of its own."""
    checked, validate = _gate_plan(record, index)
    health, owners, checks = {}, [], {}
    for site, done in checked:
        spec = record["sites"][site]
        if spec["ceph_admin"]:
            health.setdefault(spec["ceph_admin"], {})["ceph"] = {"worst": spec["ceph_health"]}
            owners.append((site, "ceph", spec["ceph_admin"]))
        if spec["pacemaker_nodes"]:
            node = spec["pacemaker_nodes"][0]
            health.setdefault(node, {})["pacemaker"] = {"cib_file": spec["cib_file"].get(node)}
            owners.append((site, "pacemaker", node))
        if spec["failover_nodes"]:
            checks[(site, "incidents")] = functools.partial(_gate_incidents, spec)
        for name, gate in spec["gates"].items():
            if gate["tgt"] == "step" and done is None:
                continue  # nothing of the site done yet
            checks[(site, name)] = functools.partial(_gate_operator, spec, done, gate)
    coming_site = record["steps"][index]["site"] if index < len(record["steps"]) else None
    for minion in validate:
        health.setdefault(minion, {})["validate"] = {}
        owners.append((coming_site, "validate", minion))
    if health:
        checks[("*", "minions")] = functools.partial(_gate_health, health)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        # Each thread runs in a copy of this one's context: the loader's __salt__ and
        # __opts__ live there.
        futures = {
            key: pool.submit(contextvars.copy_context().run, _timed, check)
            for key, check in checks.items()
        }
        results = {key: future.result() for key, future in futures.items()}
    minions = results.pop(("*", "minions"), None)
    out = [dict(r, site=site, gate=gate) for (site, gate), r in results.items()]
    if minions is not None:
        # One result per site and check, each problem naming its minion.
        grouped = {}
        for site, check, minion in owners:
            problem = minions["found"].get((minion, check)) if minions["ok"] else minions["message"]
            entry = grouped.setdefault((site, check), [])
            if problem:
                entry.append(f"{minion}: {problem}")
        for (site, check), problems in grouped.items():
            out.append(
                {
                    "site": site,
                    "gate": check,
                    "ok": not problems,
                    "message": "; ".join(problems),
                    "seconds": minions["seconds"],
                }
            )
    for result in out:
        result["message"] = rollout_logic.redact(result["message"])[:2000]
    return out


def _timed(check):
    start = time.time()
    try:
        found = check()
    except Exception as err:  # pylint: disable=broad-except
        log.exception("hastack rollout: a gate failed to run")
        found = f"{type(err).__name__}: {err}"
    seconds = round(time.time() - start, 3)
    if isinstance(found, dict):
        return {"ok": True, "found": found, "message": "", "seconds": seconds}
    return {"ok": not found, "message": found or "", "seconds": seconds}


def _gate_health(health):
    """``{(minion, check): problem}`` from one ``hastack.health`` job."""
    got = _job(list(health), "hastack.health", kwarg={"checks": health})
    found = {}
    for minion, checks in health.items():
        res = got.get(minion)
        for name in checks:
            if res is None:
                found[(minion, name)] = "no answer (not connected, or no return in time)"
            elif res.get("retcode", 0) != 0 or not isinstance(res.get("ret"), dict):
                found[(minion, name)] = str(res.get("ret"))
            elif res["ret"].get(name):
                found[(minion, name)] = res["ret"][name]
    return found


def _gate_incidents(spec):
    found = __salt__["failover.open_incidents"](spec["failover_nodes"])
    if found:
        return "open failover incident(s): " + ", ".join(
            f"{i['incident']} ({i['node']}, {i['state']})" for i in found
        )
    return None


def _gate_operator(spec, done, gate):
    """An operator's gate: its job must succeed (retcode 0) and return anything but
    False or None on each of its minions (``step``: the minions just done)."""
    tgt = gate["tgt"]
    minions = done if tgt == "step" else spec["minions"] if tgt == "site" else [tgt]
    got = _job(minions, gate["fun"], gate["args"], gate["kwargs"])
    bad = [
        f"{m}: {got[m]['ret'] if m in got else 'no answer'}"
        for m in minions
        if m not in got or got[m].get("retcode", 0) != 0 or got[m].get("ret") in (False, None)
    ]
    return f"{gate['fun']}: " + "; ".join(str(b) for b in bad)[:2000] if bad else None


def _pass_gates(record, index):
    """The gates before step ``index``, retried for the sites' ``settle`` seconds;
    each result an event. A gate still failing halts."""
    checked, _ = _gate_plan(record, index)
    settle = max([record["sites"][site]["settle"] for site, _ in checked] or [0])
    deadline = time.time() + settle
    steps = record["steps"]
    label = _label(steps[index]) if index < len(steps) else f"after {_label(steps[-1])}"
    while True:
        results = _gates(record, index)
        failed = [r for r in results if not r["ok"]]
        if not failed or time.time() + 2 > deadline:
            break
        time.sleep(2)
    for result in results:
        _fire(record, "gate", step=label, **result)
    if index < len(steps):
        steps[index]["gates"] = results
    else:
        record["final_gates"] = results
    if failed:
        raise Halted(failed[0]["message"], gate=failed[0]["gate"], gate_site=failed[0]["site"])


def _halt(record, index, halt):
    steps = record["steps"]
    if index < len(steps):
        steps[index]["state"] = "halted"
        label, site = _label(steps[index]), steps[index]["site"]
    else:
        label, site = f"after {_label(steps[-1])}", steps[-1]["site"]
    where = dict(halt.where)
    site = where.pop("gate_site", site)
    record["state"] = "halted"
    message = rollout_logic.redact(str(halt))[:2000]
    record["halted"] = dict(where, site=site, step=label, index=index, message=message)
    record["ended"] = time.time()
    _save(record)
    _fire(record, "halted", **record["halted"])
    what = where.get("state") or where.get("gate")
    _say(
        f"HALTED in {site}, {label}"
        + (f", minion {where['minion']}" if where.get("minion") else "")
        + (f", {'state' if where.get('state') else 'gate'} {what}" if what else "")
        + f": {message}"
    )


def _run(record):
    """Take ``record``'s steps from the first not done, each after its gates, and the
    last gates after the last step; halt at the first failure."""
    steps = record["steps"]
    total = sum(len(s["minions"]) for s in steps)
    index = len(steps)
    try:
        for index, step in enumerate(steps):
            if step["state"] == "done":
                continue
            _pass_gates(record, index)
            step["state"] = "running"
            _save(record)
            start = time.time()
            todo = [m for m in step["minions"] if m not in step.get("applied", [])]
            if todo:
                _apply(record, step, todo)
            step["state"] = "done"
            step["seconds"] = round(time.time() - start, 3)
            done = sum(len(s["minions"]) for s in steps if s["state"] == "done")
            changed = sum(1 for ids in step.get("changed", {}).values() if ids)
            _save(record)
            _fire(
                record,
                step["kind"],
                site=step["site"],
                index=step["index"],
                minions=step["minions"],
                changed=changed,
                seconds=step["seconds"],
                done=done,
                total=total,
            )
            _say(
                f"{step['site']} {_label(step)}: {', '.join(step['minions'])} "
                f"({changed} changed); {done} of {total} done"
            )
        index = len(steps)
        _pass_gates(record, index)
    except Halted as halt:
        _halt(record, index, halt)
        return False
    except Exception as err:  # pylint: disable=broad-except
        # Never a rollout left "running" by a crash: it halts, and resume goes on.
        log.exception("hastack rollout: %s failed", record["id"])
        _halt(record, index, Halted(f"{type(err).__name__}: {err}", error="internal"))
        return False
    record["state"] = "done"
    record["ended"] = time.time()
    _save(record)
    _fire(record, "done", seconds=round(record["ended"] - record["started"], 3), total=total)
    return True


def _label(step):
    """A step as reports name it: its kind and its place in the site (``canary 0``)."""
    return f"{step['kind']} {step['index']}"


def _result(record):
    """What ``apply``/``resume`` return: the table, what changed, where it halted."""
    rows = []
    for step in record["steps"]:
        label = _label(step)
        changed = step.get("changed", {})
        rows.append(
            f"{step['site']:<10} {label:<9} {step['state']:<8} "
            f"{sum(1 for m in step['minions'] if changed.get(m))}/{len(step['minions'])} changed"
            f"  {', '.join(step['minions'])}"
        )
    table = "\n".join([f"{'site':<10} {'step':<9} {'state':<8} minions"] + rows)
    _say(table)
    out = {
        "rollout": record["id"],
        "state": record["state"],
        "test": record["test"],
        "changes": {
            m: ids for step in record["steps"] for m, ids in step.get("changed", {}).items() if ids
        },
        "table": table.splitlines(),
    }
    if record.get("halted"):
        out["halted"] = record["halted"]
        out["retcode"] = 1
    return out


@_operator_facing
def apply(
    mods="hastack", test=False, tgt="*", tgt_type="glob", saltenv=None, timeout=60, restart=False
):
    """
    Roll ``mods`` (an SLS, default ``hastack``) out: the sites in pillar order, in each
    its canary, then its batches, with the gates after each step. The first failed
    state or gate halts it, naming the site, the step, the minion and the state id or
    gate; ``salt-run rollout.resume`` goes on from there.

    mods
        The SLS to roll out (default ``hastack``: the highstate of the formula).

    test
        Preview: ``state.apply test=True`` on every minion of the rollout and the
        gates as they stand now; prints each step's predicted changes, changes nothing.

    tgt, tgt_type
        The minions to roll out to (default: every accepted minion).

    saltenv
        The fileserver environment of ``mods`` (default: the minions').

    timeout
        Seconds a step's ``state.apply`` is waited for before Salt asks a minion that
        has not returned whether it still runs it (default 60; a minion still at work
        is waited for as long as it is).

    restart
        Start over even though a rollout of ``mods`` halted (it is marked superseded
        and cannot be resumed any more).

    CLI Example:

    .. code-block:: bash

        salt-run rollout.apply hastack test=True
        salt-run rollout.apply hastack
    """
    test = bool(test)
    began = time.time()
    sites, steps = _plan(_targets(tgt, tgt_type), saltenv)
    now = time.time()
    record = {
        "id": time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}",
        "mods": mods,
        "test": test,
        "tgt": tgt,
        "tgt_type": tgt_type,
        "saltenv": saltenv,
        "timeout": timeout,
        "started": now,
        "plan_seconds": round(now - began, 3),  # the pillars compiled here
        "state": "running",
        "sites": sites,
        "steps": [dict(s, state="pending") for s in steps],
    }
    with _Lock():
        # Read under the lock: a resume that just ended elsewhere is seen as it ended.
        unfinished = [
            r
            for r in _records()
            if r["mods"] == mods and not r["test"] and r["state"] in ("halted", "running")
        ]
        if unfinished and not test and not restart:
            old = unfinished[-1]
            raise SaltInvocationError(
                f"rollout {old['id']} of {mods} {old['state']} at "
                f"{(old.get('halted') or {}).get('site', '?')}: salt-run rollout.resume "
                f"{old['id']}, or start over: salt-run rollout.apply {mods} restart=True"
            )
        if not test:
            for old in unfinished:  # restart: they are not resumed any more
                old["state"] = "superseded"
                old["superseded_by"] = record["id"]
                _save(old)
        _save(record)
        _fire(
            record,
            "started",
            sites=list(sites),
            steps=[{k: s[k] for k in ("site", "kind", "index", "minions")} for s in steps],
            minions=sum(len(s["minions"]) for s in steps),
            plan_seconds=record["plan_seconds"],
        )
        _say(
            f"rollout {record['id']} of {mods}{' (test)' if test else ''}: "
            f"{len(steps)} steps in {', '.join(sites)}"
        )
        if test:
            _preview(record)
        else:
            _run(record)
    return _result(record)


def _preview(record):
    """``test=True``: one ``state.apply test=True`` job for every minion (nothing
    changes, so the order does not matter), then each site's gates as they stand
    (those about the minions just done aside)."""
    minions = [m for s in record["steps"] for m in s["minions"]]
    whole = {"minions": minions}
    try:
        changed = _apply(record, whole, minions)
    except Halted as halt:
        changed = whole.get("changed", {})
        minion = halt.where.get("minion")
        at = next((s for s in record["steps"] if minion in s["minions"]), None)
        record["halted"] = dict(
            halt.where,
            site=at["site"] if at else None,
            step=_label(at) if at else None,
            message=str(halt),
        )
    for step in record["steps"]:
        step["changed"] = {m: changed.get(m, []) for m in step["minions"]}
        step["state"] = "preview"
        would = sum(1 for m in step["minions"] if step["changed"][m])
        _say(f"{step['site']} {_label(step)}: {', '.join(step['minions'])} ({would} would change)")
    for site in record["sites"]:
        first = next(i for i, s in enumerate(record["steps"]) if s["site"] == site)
        entering = dict(record, steps=record["steps"][first:])
        results = [r for r in _gates(entering, 0) if r["gate"] != "validate"]
        record["sites"][site]["gates_now"] = results
        failing = [r for r in results if not r["ok"]]
        if failing and not record.get("halted"):
            record["halted"] = {
                "site": site,
                "step": _label(record["steps"][first]),
                "gate": failing[0]["gate"],
                "message": failing[0]["message"],
            }
    record["state"] = "halted" if record.get("halted") else "done"
    record["ended"] = time.time()
    _save(record)
    if record.get("halted"):
        _fire(record, "halted", preview=True, **record["halted"])
    else:
        _fire(record, "done", seconds=round(record["ended"] - record["started"], 3), preview=True)


def _steps_of(steps):
    return [(s["site"], s["kind"], list(s["minions"])) for s in steps]


@_operator_facing
def resume(rollout=None):
    """
    Go on with a halted rollout from where it halted: every step done before, and the
    minions of the halted step that applied cleanly, are not applied again; the gates
    before the halted step run first. The pillar is read again: if the rollout's steps
    would now be different (a minion added, a site's canary or batch changed), it is
    refused (start over with ``rollout.apply ... restart=True``); the gates' settings
    are taken from it.

    rollout
        Its id (default: the last halted rollout, or one a crash left running).

    CLI Example:

    .. code-block:: bash

        salt-run rollout.resume
        salt-run rollout.resume 20261206T171500-123
    """
    with _Lock():
        # Under the lock: a record "running" here is one a crash left behind.
        if rollout is None:
            left = [r for r in _records() if r["state"] in ("halted", "running") and not r["test"]]
            if not left:
                raise SaltInvocationError("rollout: no halted rollout to resume")
            record = left[-1]
        else:
            record = _load(str(rollout))
            if record is None:
                raise SaltInvocationError(f"rollout: no rollout {rollout!r}")
        if record["test"]:
            raise SaltInvocationError(f"rollout: {record['id']} was a preview (test=True)")
        if record["state"] not in ("halted", "running"):
            raise SaltInvocationError(f"rollout: {record['id']} is {record['state']}")
        sites, steps = _plan(
            _targets(record.get("tgt", "*"), record.get("tgt_type", "glob")), record.get("saltenv")
        )
        if _steps_of(steps) != _steps_of(record["steps"]):
            raise SaltInvocationError(
                f"rollout {record['id']}: the pillar now gives other steps than it was "
                f"started with; start over: salt-run rollout.apply {record['mods']} restart=True"
            )
        record["sites"] = sites
        halted = record.pop("halted", None)
        record["state"] = "running"
        record.setdefault("resumes", []).append({"at": time.time(), "halted": halted})
        _save(record)
        _fire(record, "resumed", halted=halted)
        _say(
            f"rollout {record['id']} resumed at {(halted or {}).get('site')} "
            f"{(halted or {}).get('step')}"
        )
        _run(record)
    return _result(record)


def status(rollout=None):
    """
    A rollout's record: its steps, their state, what changed, where it halted.

    rollout
        Its id (default: the last rollout).

    CLI Example:

    .. code-block:: bash

        salt-run rollout.status
    """
    if rollout is None:
        records = _records()
        return records[-1] if records else None
    return _load(str(rollout))

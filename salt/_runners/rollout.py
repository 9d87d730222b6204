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

Gates, after the canary and after each batch, side by side:

- ``ceph``: the site's Ceph health through its admin minion (``ceph_client.status``,
  librados): no worse than the site's ``ceph_health`` (``HEALTH_WARN`` by default);
- ``pacemaker``: on the site's cluster nodes (``pacemaker.health``): quorum, no failed
  action, every resource that should run started;
- ``incidents``: no failover incident open for a node of the site
  (``failover.open_incidents``);
- ``validate``: ``hastack.validate`` on the site's minions;
- the operator's gates (``rollout:gates``): an execution function whose job succeeds
  and returns a true value.

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


def _load(rollout_id):
    try:
        with open(_store(f"{rollout_id}.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def _records():
    out = [_load(n[: -len(".json")]) for n in os.listdir(_store()) if n.endswith(".json")]
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


def _job(minions, fun, arg=(), kwarg=None, timeout=GATE_TIMEOUT):
    """``{minion: {ret, retcode}}`` of ``fun`` on ``minions``; a minion that did not
    answer is left out."""
    got = _client().cmd(
        list(minions),
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


def _pillar(minion):
    """The raw ``hastack`` pillar the master compiles for ``minion`` (trusted)."""
    id_, grains, _ = salt.utils.minions.get_minion_data(minion, __opts__)
    pillar = salt.pillar.Pillar(__opts__, grains or {"id": minion}, id_ or minion, "base")
    return (pillar.compile_pillar() or {}).get("hastack")


def _targets(tgt, tgt_type):
    found = salt.utils.minions.CkMinions(__opts__).check_minions(tgt, tgt_type)
    minions = sorted(found["minions"] if isinstance(found, dict) else found)
    if not minions:
        raise SaltInvocationError(f"tgt: no accepted minion matches {tgt!r}")
    return minions


# --------------------------------------------------------------------------- the plan


def _plan(targets):
    """``(sites, steps)``: each site's settings, its minions and what its gates need,
    and the rollout's steps in order. Every error names the pillar key."""
    trees, defined, seen_by = {}, None, None
    for minion in targets:
        raw = _pillar(minion)
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
        elif mine != defined:
            raise SaltInvocationError(
                f"hastack:sites: minions {seen_by} and {minion} are given different sites"
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
        steps += rollout_logic.steps(
            site,
            members,
            spec["canary"],
            spec["batch"],
            sites[site]["clusters"],
            first=sites[site]["ceph_admin"],
        )
    return sites, steps


def _site(site, spec, members, trees):
    """What the gates of ``site`` need, from its minions' layered pillars."""
    tree = trees[members[0]]
    ceph = tree.get("ceph") or {}
    pcmk = tree.get("pacemaker") or {}
    nodes = [n for n in (pcmk.get("nodes") or []) if n in members]
    clusters = {}
    if isinstance(pcmk.get("nodes"), list) and len(pcmk["nodes"]) > 1:
        clusters["pacemaker"] = {
            "nodes": pcmk["nodes"],
            "failover": tree.get("failover"),
            "addresses": (tree.get("floating_ips") or {}).get("addresses"),
        }
    admin = ceph.get("admin_minion")
    return {
        "minions": members,
        "ceph_admin": admin if admin in members else None,
        "ceph_health": spec["ceph_health"],
        "pacemaker_nodes": nodes,
        "cib_file": {n: (trees[n].get("pacemaker") or {}).get("cib_file") for n in nodes},
        "failover_nodes": list(pcmk.get("nodes") or []),
        "gates": spec["gates"],
        "clusters": clusters,
    }


def _preflight(minions):
    """``hastack.validate`` on every minion the rollout will touch, in one job, before
    any is: a bad pillar anywhere stops it with nothing run."""
    got = _job(minions, "hastack.validate")
    bad = [
        f"{m}: {got[m]['ret'] if m in got else 'no answer'}"
        for m in minions
        if m not in got or got[m].get("retcode", 0) != 0
    ]
    if bad:
        raise SaltInvocationError("hastack.validate: " + "; ".join(str(b) for b in bad)[:4000])


# --------------------------------------------------------------------------- a step


def _apply(record, step, minions):
    """``state.apply`` of the rollout's SLS on ``minions``: ``{minion: changed ids}``;
    the first failed state (or a minion that did not answer) halts."""
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
    changed, failure = {}, None
    for minion in minions:
        res = (got or {}).get(minion)
        if not isinstance(res, dict) or res.get("out") == "no_return" or "ret" not in res:
            failure = failure or Halted(f"{minion} did not return", minion=minion)
            continue
        ret = res["ret"]
        if not isinstance(ret, dict):
            # A render error: Salt returns a list of messages.
            text = "; ".join(str(x) for x in ret) if isinstance(ret, list) else str(ret)
            failure = failure or Halted(text[:2000], minion=minion, state="(render)")
            continue
        ids = []
        for key, state in sorted(ret.items(), key=lambda kv: kv[1].get("__run_num__", 0)):
            if not isinstance(state, dict):
                continue
            sid = state.get("__id__") or key
            if state.get("result") is False:
                failure = failure or Halted(
                    str(state.get("comment"))[:2000], minion=minion, state=sid
                )
            elif state.get("changes") or (record["test"] and state.get("result") is None):
                ids.append(sid)
        changed[minion] = ids
        if res.get("retcode", 0) not in (0, None) and failure is None:
            failure = Halted(f"state.apply returned {res['retcode']}", minion=minion)
    step["changed"] = {**step.get("changed", {}), **changed}
    if failure is not None:
        step["applied"] = sorted(
            set(step.get("applied", [])) | {m for m in changed if m != failure.where.get("minion")}
        )
        raise failure
    step["applied"] = sorted(set(step.get("applied", [])) | set(minions))
    return changed


def _gates(record, site, step):
    """Every gate of ``site`` after ``step``, side by side: ``{gate: {ok, message,
    seconds}}``. The minion-side checks (Ceph through the site's admin minion,
    Pacemaker through one cluster node, ``hastack.validate`` on the minions of the
    next step) are one job (``hastack.health``); incidents are read here; each operator
    gate is a job of its own."""
    spec = record["sites"][site]
    steps = [s for s in record["steps"] if s["site"] == site]
    after = steps[steps.index(step) + 1 :] if step in steps else []
    health = {}
    if spec["ceph_admin"]:
        health.setdefault(spec["ceph_admin"], {})["ceph"] = {"worst": spec["ceph_health"]}
    if spec["pacemaker_nodes"]:
        node = spec["pacemaker_nodes"][0]
        health.setdefault(node, {})["pacemaker"] = {"cib_file": spec["cib_file"].get(node)}
    for minion in after[0]["minions"] if after else []:
        health.setdefault(minion, {})["validate"] = {}
    checks = {"minions": functools.partial(_gate_health, health)} if health else {}
    if spec["failover_nodes"]:
        checks["incidents"] = functools.partial(_gate_incidents, spec)
    for name, gate in spec["gates"].items():
        checks[name] = functools.partial(_gate_operator, spec, step, gate)
    results = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        # Each thread runs in a copy of this one's context: the loader's __salt__ and
        # __opts__ live there.
        futures = {
            name: pool.submit(contextvars.copy_context().run, _timed, check)
            for name, check in checks.items()
        }
        for name, future in futures.items():
            results[name] = future.result()
    # The minions' checks, each a gate of its own in the report.
    got = results.pop("minions", None)
    if got is not None:
        for name in ("ceph", "pacemaker", "validate"):
            found = got["found"].get(name)
            if found is not None:
                results[name] = {
                    "ok": not found,
                    "message": "; ".join(found),
                    "seconds": got["seconds"],
                }
    return results


def _timed(check):
    start = time.time()
    try:
        found = check()
    except Exception as err:  # pylint: disable=broad-except
        log.exception("hastack rollout: a gate failed to run")
        found = f"{type(err).__name__}: {err}"
    seconds = round(time.time() - start, 3)
    if isinstance(found, dict):
        return {"found": found, "seconds": seconds}
    return {"ok": not found, "message": found or "", "seconds": seconds}


def _gate_health(health):
    """``{check: [problems]}`` from one ``hastack.health`` job (each problem names its
    minion)."""
    got = _job(list(health), "hastack.health", kwarg={"checks": health})
    found = {}
    for minion, checks in health.items():
        res = got.get(minion)
        for name in checks:
            problems = found.setdefault(name, [])
            if res is None:
                problems.append(f"{minion}: no answer")
            elif res.get("retcode", 0) != 0 or not isinstance(res.get("ret"), dict):
                problems.append(f"{minion}: {res.get('ret')}")
            elif res["ret"].get(name):
                problems.append(f"{minion}: {res['ret'][name]}")
    return found


def _gate_incidents(spec):
    found = __salt__["failover.open_incidents"](spec["failover_nodes"])
    if found:
        return "open failover incident(s): " + ", ".join(
            f"{i['incident']} ({i['node']}, {i['state']})" for i in found
        )
    return None


def _gate_operator(spec, step, gate):
    tgt = gate["tgt"]
    minions = step["minions"] if tgt == "step" else spec["minions"] if tgt == "site" else [tgt]
    got = _job(minions, gate["fun"], gate["args"], gate["kwargs"])
    bad = [
        f"{m}: {got[m]['ret'] if m in got else 'no answer'}"
        for m in minions
        if m not in got or got[m].get("retcode", 0) != 0 or not got[m].get("ret")
    ]
    return f"{gate['fun']}: " + "; ".join(str(b) for b in bad)[:2000] if bad else None


# --------------------------------------------------------------------------- the run


def _run(record):
    """Take ``record``'s steps from the first not done; halt at the first failure."""
    total = sum(len(s["minions"]) for s in record["steps"])
    for step in record["steps"]:
        if step["state"] == "done":
            continue
        site, kind = step["site"], step["kind"]
        label = _label(step)
        step["state"] = "running"
        _save(record)
        start = time.time()
        try:
            todo = [m for m in step["minions"] if m not in step.get("applied", [])]
            if todo:
                _apply(record, step, todo)
            step["apply_seconds"] = round(time.time() - start, 3)
            gates = _gates(record, site, step)
            step["gates"] = gates
            for name, result in gates.items():
                _fire(record, "gate", site=site, step=label, gate=name, **result)
            failed = {n: r for n, r in gates.items() if not r["ok"]}
            if failed:
                name = next(iter(failed))
                raise Halted(failed[name]["message"], gate=name)
        except Halted as halt:
            step["state"] = "halted"
            record["state"] = "halted"
            record["halted"] = dict(halt.where, site=site, step=label, message=str(halt))
            record["ended"] = time.time()
            _save(record)
            _fire(record, "halted", **record["halted"])
            what = halt.where.get("state") or halt.where.get("gate")
            _say(
                f"HALTED in {site}, {label}"
                + (f", minion {halt.where['minion']}" if halt.where.get("minion") else "")
                + (f", {'state' if halt.where.get('state') else 'gate'} {what}" if what else "")
                + f": {halt}"
            )
            return False
        step["state"] = "done"
        step["seconds"] = round(time.time() - start, 3)
        done = sum(len(s["minions"]) for s in record["steps"] if s["state"] == "done")
        changed = sum(1 for ids in step.get("changed", {}).values() if ids)
        _save(record)
        _fire(
            record,
            kind,
            site=site,
            index=step["index"],
            minions=step["minions"],
            changed=changed,
            seconds=step["seconds"],
            done=done,
            total=total,
        )
        _say(
            f"{site} {label}: {', '.join(step['minions'])} ({changed} changed); {done} of {total} done"
        )
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
    mods="hastack", test=False, tgt="*", tgt_type="glob", saltenv=None, timeout=300, restart=False
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
        Seconds a step's ``state.apply`` is waited for (default 300; Salt asks a
        minion that is still working whether it still runs it).

    restart
        Start over even though a rollout of ``mods`` halted (it is marked superseded).

    CLI Example:

    .. code-block:: bash

        salt-run rollout.apply hastack test=True
        salt-run rollout.apply hastack
    """
    test = bool(test)
    unfinished = [
        r
        for r in _records()
        if r["mods"] == mods and not r["test"] and r["state"] in ("halted", "running")
    ]
    if unfinished and not test and not restart:
        old = unfinished[-1]
        raise CommandExecutionError(
            f"rollout {old['id']} of {mods} {old['state']} at "
            f"{(old.get('halted') or {}).get('site', '?')}: salt-run rollout.resume "
            f"{old['id']}, or start over: salt-run rollout.apply {mods} restart=True"
        )
    began = time.time()
    targets = _targets(tgt, tgt_type)
    sites, steps = _plan(targets)
    planned = time.time()
    # Side by side with the plan it was slower here: both load the master.
    _preflight([m for s in steps for m in s["minions"]])
    now = time.time()
    record = {
        "id": time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}",
        "mods": mods,
        "test": test,
        "saltenv": saltenv,
        "timeout": timeout,
        "started": now,
        "plan_seconds": round(planned - began, 3),  # the pillars compiled here
        "preflight_seconds": round(now - planned, 3),  # every minion's hastack.validate
        "state": "running",
        "sites": sites,
        "steps": [dict(s, state="pending") for s in steps],
    }
    with _Lock():
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
        )
        _say(
            f"rollout {record['id']} of {mods}{' (test)' if test else ''}: {len(steps)} steps in {', '.join(sites)}"
        )
        if test:
            _preview(record)
        else:
            _run(record)
    return _result(record)


def _preview(record):
    """``test=True``: one ``state.apply test=True`` job for every minion (nothing
    changes, so the order does not matter), then each site's gates as they stand."""
    minions = [m for s in record["steps"] for m in s["minions"]]
    whole = {"minions": minions}
    try:
        changed = _apply(record, whole, minions)
    except Halted as halt:
        changed = whole.get("changed", {})
        record["halted"] = dict(halt.where, message=str(halt))
    for step in record["steps"]:
        step["changed"] = {m: changed.get(m, []) for m in step["minions"]}
        step["state"] = "preview"
        label = _label(step)
        would = sum(1 for m in step["minions"] if step["changed"][m])
        _say(f"{step['site']} {label}: {', '.join(step['minions'])} ({would} would change)")
    for site in record["sites"]:
        last = [s for s in record["steps"] if s["site"] == site][0]
        gates = _gates(record, site, last)
        failing = {n: r["message"] for n, r in gates.items() if not r["ok"]}
        record["sites"][site]["gates_now"] = gates
        if failing and not record.get("halted"):
            name = next(iter(failing))
            record["halted"] = {"site": site, "gate": name, "message": failing[name]}
    record["state"] = "halted" if record.get("halted") else "done"
    record["ended"] = time.time()
    _save(record)
    _fire(record, "done", seconds=round(record["ended"] - record["started"], 3), preview=True)


@_operator_facing
def resume(rollout=None):
    """
    Go on with a halted rollout from the step that halted: the minions of that step
    that applied cleanly, and every step done before, are not applied again; a step
    that halted on a gate runs its gates first.

    rollout
        Its id (default: the last halted rollout).

    CLI Example:

    .. code-block:: bash

        salt-run rollout.resume
        salt-run rollout.resume 20261206T171500-123
    """
    if rollout is None:
        halted = [r for r in _records() if r["state"] == "halted" and not r["test"]]
        if not halted:
            raise SaltInvocationError("rollout: no halted rollout to resume")
        record = halted[-1]
    else:
        record = _load(str(rollout))
        if record is None:
            raise SaltInvocationError(f"rollout: no rollout {rollout!r}")
    if record["test"]:
        raise SaltInvocationError(f"rollout: {record['id']} was a preview (test=True)")
    if record["state"] == "done":
        raise SaltInvocationError(f"rollout: {record['id']} is done")
    _preflight([m for s in record["steps"] if s["state"] != "done" for m in s["minions"]])
    with _Lock():
        halted = record.pop("halted", None)
        record["state"] = "running"
        record.setdefault("resumes", []).append({"at": time.time(), "halted": halted})
        _save(record)
        _fire(record, "resumed", halted=halted)
        _say(
            f"rollout {record['id']} resumed at {(halted or {}).get('site')} {(halted or {}).get('step')}"
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

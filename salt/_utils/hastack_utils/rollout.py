"""
The rollout's steps, as pure logic: a site's canary, then its batches (a size or a
percentage of the site's minions), each batch cut so that it never takes more nodes of
one Pacemaker cluster out of service at once than that cluster tolerates (its
``max_down``). Errors name the pillar key (``SaltInvocationError``).
"""

import math
import re

from salt.exceptions import SaltInvocationError

from hastack_utils import failover

PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def batch_size(spec, total, key):
    """The number of minions in a batch of ``spec`` (an integer, or a percentage string
    such as ``"25%"``) out of ``total``: at least one."""
    if isinstance(spec, bool):
        raise SaltInvocationError(f"{key}: a number of minions or a percentage, not {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise SaltInvocationError(f"{key}: at least 1 minion, not {spec}")
        return spec
    match = PERCENT_RE.match(spec) if isinstance(spec, str) else None
    if not match or not 0 < float(match.group(1)) <= 100:
        raise SaltInvocationError(
            f"{key}: a number of minions or a percentage such as '25%', not {spec!r}"
        )
    return max(1, math.floor(total * float(match.group(1)) / 100))


def steps(site, minions, canary=(), batch=1, clusters=None, first=None):
    """The steps of ``site``: ``[{site, kind, index, minions}]``, the canary first (when
    there is one), then the batches in the minions' order. ``first`` (the site's Ceph
    admin minion: the cluster's side of a change, which every consumer needs) goes
    alone before the canary, as a canary step of its own (or as the first batch when
    there is no canary), unless it is in the canary. ``clusters`` is
    ``{name: {nodes, failover}}``: a batch holds at most the failover policy's
    ``max_down`` nodes of each (a node that does not fit waits for the next batch). A canary outside the site, or one
    that takes more of a cluster than it tolerates, is refused naming the key."""
    key = f"hastack:sites:{site}"
    if not isinstance(canary or [], list):
        raise SaltInvocationError(f"{key}:rollout:canary: a list of minion ids, not {canary!r}")
    minions = list(dict.fromkeys(minions))
    canary = list(dict.fromkeys(canary or ()))
    outside = [m for m in canary if m not in minions]
    if outside:
        raise SaltInvocationError(
            f"{key}:rollout:canary: not minions of site {site}: {', '.join(outside)}"
        )
    cluster_of, tolerates = _clusters(clusters or {}, key)
    size = batch_size(batch, len(minions), f"{key}:rollout:batch")
    out = []
    if first in minions and first not in canary:
        out.append(
            {"site": site, "kind": "canary" if canary else "batch", "index": 0, "minions": [first]}
        )
    if canary:
        left = [m for m in canary if m not in _take(canary, len(canary), cluster_of, tolerates)]
        if left:
            cluster = cluster_of[left[0]]
            taking = sum(cluster_of.get(m) == cluster for m in canary)
            raise SaltInvocationError(
                f"{key}:rollout:canary: takes {taking} nodes of Pacemaker cluster {cluster} at "
                f"once, which tolerates {tolerates[cluster]}"
            )
        out.append({"site": site, "kind": "canary", "index": len(out), "minions": canary})
    rest = [m for m in minions if m not in canary and not (out and m in out[0]["minions"])]
    while rest:
        taken = _take(rest, size, cluster_of, tolerates)
        out.append({"site": site, "kind": "batch", "index": len(out), "minions": taken})
        rest = [m for m in rest if m not in taken]
    return out


def _take(candidates, size, cluster_of, tolerates):
    """Up to ``size`` of ``candidates``, in order, with at most ``tolerates[c]`` nodes
    of each cluster ``c`` (the first candidate always fits: every max_down is 1 or more)."""
    taken, counts = [], {}
    for minion in candidates:
        if len(taken) == size:
            break
        cluster = cluster_of.get(minion)
        if cluster is not None:
            if counts.get(cluster, 0) >= tolerates[cluster]:
                continue
            counts[cluster] = counts.get(cluster, 0) + 1
        taken.append(minion)
    return taken


def _clusters(clusters, key):
    """``({node: cluster}, {cluster: max_down})``. Each cluster is ``{nodes, failover,
    addresses}`` as its pillar has them (``hastack:pacemaker:nodes``,
    ``hastack:failover``, ``hastack:floating_ips:addresses``): what it
    tolerates is the failover policy's ``max_down``, defaults and checks included."""
    cluster_of, tolerates = {}, {}
    for name, spec in clusters.items():
        spec = spec if isinstance(spec, dict) else {}
        nodes = spec.get("nodes")
        try:
            tolerates[name] = failover.policy(spec.get("failover"), nodes, spec.get("addresses"))[
                "max_down"
            ]
        except SaltInvocationError as err:
            raise SaltInvocationError(f"{key}: Pacemaker cluster {name}: {err}") from err
        for node in nodes:
            if node in cluster_of:
                raise SaltInvocationError(
                    f"{key}: node {node} is in Pacemaker clusters {cluster_of[node]} and {name}"
                )
            cluster_of[node] = name
    return cluster_of, tolerates


# A cephx key as base64 (28 bytes, type 1): what a message must never carry.
KEY_RE = re.compile(r"AQ[A-Za-z0-9+/]{36}==")


def redact(text):
    """``text`` with anything shaped like a cephx key replaced."""
    return KEY_RE.sub("(a cephx key)", str(text))


def outcome(minions, returns, test=False):
    """What one ``state.apply`` job did on ``minions`` (``returns``: LocalClient's
    ``full_return`` answers): ``(changed, applied, failure)``. ``changed`` maps each
    minion that returned to the ids of the states that changed (or, under ``test``,
    would); ``applied`` lists the minions on which every state succeeded; ``failure`` is
    the first problem in the minions' order (``{minion, state?, message}``) or None."""
    changed, failed, failure = {}, set(), None

    def fail(minion, message, state=None):
        nonlocal failure
        failed.add(minion)
        if failure is None:
            failure = {"minion": minion, "message": redact(message)[:2000]}
            if state is not None:
                failure["state"] = state

    for minion in minions:
        res = (returns or {}).get(minion)
        if not isinstance(res, dict) or res.get("out") == "no_return" or "ret" not in res:
            fail(minion, f"{minion} did not return")
            continue
        ret = res["ret"]
        if not isinstance(ret, dict):
            # A render error: Salt returns a list of messages.
            fail(minion, "; ".join(map(str, ret)) if isinstance(ret, list) else ret, "(render)")
            continue
        ids = []
        states = [(key, value) for key, value in ret.items() if isinstance(value, dict)]
        for key, state in sorted(states, key=lambda kv: kv[1].get("__run_num__", 0)):
            sid = state.get("__id__") or key
            if state.get("result") is False:
                fail(minion, state.get("comment"), sid)
            elif state.get("changes") or (test and state.get("result") is None):
                ids.append(sid)
        changed[minion] = ids
        if res.get("retcode", 0) not in (0, None) and minion not in failed:
            fail(minion, f"state.apply returned {res['retcode']}")
    applied = [m for m in minions if m in changed and m not in failed]
    return changed, applied, failure

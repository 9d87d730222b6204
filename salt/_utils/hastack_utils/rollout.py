"""
The rollout's steps, as pure logic: a site's canary, then its batches (a size or a
percentage of the site's minions), each batch cut so that it never takes more nodes of
one Pacemaker cluster out of service at once than that cluster tolerates (its
``max_down``). Errors name the pillar key (``SaltInvocationError``).
"""

import math
import re

from salt.exceptions import SaltInvocationError

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


def steps(site, minions, canary=(), batch=1, clusters=None):
    """The steps of ``site``: ``[{site, kind, index, minions}]``, the canary first (when
    there is one), then the batches in the minions' order. ``clusters`` is
    ``{name: {nodes, max_down}}``: a batch holds at most ``max_down`` nodes of each (a
    node that does not fit waits for the next batch). A canary outside the site, or one
    that takes more of a cluster than it tolerates, is refused naming the key."""
    key = f"hastack:sites:{site}"
    if not isinstance(canary or [], list):
        raise SaltInvocationError(f"{key}:canary: a list of minion ids, not {canary!r}")
    minions = list(dict.fromkeys(minions))
    canary = list(dict.fromkeys(canary or ()))
    outside = [m for m in canary if m not in minions]
    if outside:
        raise SaltInvocationError(f"{key}:canary: not minions of site {site}: {', '.join(outside)}")
    limits = _limits(clusters or {}, key)
    size = batch_size(batch, len(minions), f"{key}:batch")
    out = []
    if canary:
        over = _over(canary, limits)
        if over:
            raise SaltInvocationError(
                f"{key}:canary: takes {over[1]} nodes of Pacemaker cluster {over[0]} at "
                f"once, which tolerates {limits[over[0]][1]}"
            )
        out.append({"site": site, "kind": "canary", "index": 0, "minions": canary})
    rest = [m for m in minions if m not in canary]
    while rest:
        taken, counts = [], {}
        for minion in rest:
            if len(taken) == size:
                break
            cluster = _cluster_of(minion, limits)
            if cluster is not None:
                if counts.get(cluster, 0) >= limits[cluster][1]:
                    continue
                counts[cluster] = counts.get(cluster, 0) + 1
            taken.append(minion)
        out.append({"site": site, "kind": "batch", "index": len(out), "minions": taken})
        rest = [m for m in rest if m not in taken]
    return out


def _limits(clusters, key):
    limits, seen = {}, {}
    for name, spec in clusters.items():
        spec = spec if isinstance(spec, dict) else {}
        nodes, max_down = spec.get("nodes"), spec.get("max_down")
        if not isinstance(nodes, list) or not nodes:
            raise SaltInvocationError(f"{key}: Pacemaker cluster {name}: nodes must be a list")
        if (
            isinstance(max_down, bool)
            or not isinstance(max_down, int)
            or not 1 <= max_down < len(nodes)
        ):
            # As the failover's max_down: at least one node down, never all of them.
            raise SaltInvocationError(
                f"{key}: Pacemaker cluster {name}: max_down must be 1 to {len(nodes) - 1}, "
                f"not {max_down!r}"
            )
        for node in nodes:
            if node in seen:
                raise SaltInvocationError(
                    f"{key}: node {node} is in Pacemaker clusters {seen[node]} and {name}"
                )
            seen[node] = name
        limits[name] = (set(nodes), max_down)
    return limits


def _cluster_of(minion, limits):
    return next((name for name, (nodes, _) in limits.items() if minion in nodes), None)


def _over(minions, limits):
    counts = {}
    for minion in minions:
        cluster = _cluster_of(minion, limits)
        if cluster is not None:
            counts[cluster] = counts.get(cluster, 0) + 1
            if counts[cluster] > limits[cluster][1]:
                return cluster, counts[cluster]
    return None

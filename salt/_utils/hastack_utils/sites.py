"""
Sites in the pillar: ``hastack:sites:<site>`` holds what differs from site to site (its
Ceph cluster, OpenStack cloud, Pacemaker nodes...) and how a rollout takes the site
(``rollout``: order, canary, batch, gates). A minion's site is ``hastack:site``.

The layers, each over the one before, key by key (mappings merge, anything else
replaces):

1. the formula's ``defaults.yaml`` (merged later, by ``hastack.validate``);
2. the global pillar: ``hastack:*`` outside ``sites`` and ``minion``;
3. the minion's site: ``hastack:sites:<site>``, without its ``rollout``;
4. the minion's own overrides: ``hastack:minion``.

Errors name the pillar key (``SaltInvocationError``).
"""

import copy
import re

import salt.utils.dictupdate
from salt.exceptions import SaltInvocationError

from hastack_utils import rollout

SITE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
ROLLOUT_KEYS = ("order", "canary", "batch", "gates", "ceph_health", "settle")
# The worst Ceph health a gate lets through, by name.
CEPH_HEALTH = ("HEALTH_OK", "HEALTH_WARN")
GATE_TARGETS = ("step", "site")
# Where each layer's keys sit in the pillar (for key_pillar and error messages).
LAYERS = ("hastack", "hastack:sites:{site}", "hastack:minion")


def _fail(key, message):
    raise SaltInvocationError(f"{key}: {message}")


def _merge(base, over):
    return salt.utils.dictupdate.merge(
        copy.deepcopy(base), copy.deepcopy(over), strategy="recurse", merge_lists=False
    )


def defined(pillar):
    """The sites the pillar defines (``hastack:sites``), checked for shape, in rollout
    order: ``{site: {order, canary, batch, gates, ceph_health, settle, settings}}``,
    where ``settings`` is the site's layer (the site without ``rollout``). An empty
    mapping when the pillar has no sites (one site, the global pillar). A minion may see
    only its own site's settings; every minion sees every site's ``rollout``."""
    given = (pillar or {}).get("sites")
    if given is None:
        return {}
    if not isinstance(given, dict) or not given:
        _fail("hastack:sites", "a mapping of site names to their settings")
    out = []
    for position, (name, spec) in enumerate(given.items()):
        key = f"hastack:sites:{name}"
        if not SITE_RE.match(str(name)):
            _fail(key, "a site name is letters, digits, '-' or '_'")
        if not isinstance(spec, dict):
            _fail(key, "must be a mapping of the site's settings")
        for inner in ("sites", "site", "minion"):
            if inner in spec:
                _fail(f"{key}:{inner}", "not a site setting")
        if "ceph" in spec and not isinstance(spec["ceph"], dict):
            _fail(f"{key}:ceph", "must be a mapping: the site's Ceph cluster")
        settings = {k: v for k, v in spec.items() if k != "rollout"}
        out.append(
            (
                position,
                str(name),
                dict(rollout_settings(spec.get("rollout"), key), settings=settings),
            )
        )
    ordered = sorted(out, key=lambda item: (item[2]["order"] is None, item[2]["order"], item[0]))
    return {name: spec for _, name, spec in ordered}


def rollout_settings(spec, site_key):
    """A site's ``rollout`` settings checked, with their defaults (no canary, batches
    of one, ``HEALTH_WARN`` let through, no operator gates, no settle time)."""
    key = f"{site_key}:rollout"
    spec = {} if spec is None else spec
    if not isinstance(spec, dict):
        _fail(key, "must be a mapping (order, canary, batch, gates, ceph_health)")
    unknown = sorted(set(spec) - set(ROLLOUT_KEYS))
    if unknown:
        _fail(f"{key}:{unknown[0]}", f"unknown setting (known: {', '.join(ROLLOUT_KEYS)})")
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        _fail(f"{key}:order", f"a whole number (lower goes first), not {order!r}")
    canary = spec.get("canary", [])
    if not isinstance(canary, list) or not all(isinstance(m, str) and m for m in canary):
        _fail(f"{key}:canary", f"a list of minion ids, not {canary!r}")
    batch = spec.get("batch", 1)
    rollout.batch_size(batch, 1, f"{key}:batch")  # its shape; the size needs the site
    health = spec.get("ceph_health", "HEALTH_WARN")
    if health not in CEPH_HEALTH:
        _fail(f"{key}:ceph_health", f"the worst health let through: {' or '.join(CEPH_HEALTH)}")
    gates = spec.get("gates", {})
    if not isinstance(gates, dict):
        _fail(f"{key}:gates", "a mapping of gate names to {fun, args, kwargs, tgt}")
    checked = {}
    for name, gate in gates.items():
        gkey = f"{key}:gates:{name}"
        if not isinstance(gate, dict):
            _fail(gkey, "a mapping: {fun, args, kwargs, tgt}")
        unknown = sorted(set(gate) - {"fun", "args", "kwargs", "tgt"})
        if unknown:
            _fail(f"{gkey}:{unknown[0]}", "unknown setting (known: fun, args, kwargs, tgt)")
        if not isinstance(gate.get("fun"), str) or "." not in gate["fun"]:
            _fail(f"{gkey}:fun", "an execution function, such as 'cmd.run'")
        if not isinstance(gate.get("args", []), list):
            _fail(f"{gkey}:args", "a list")
        if not isinstance(gate.get("kwargs", {}), dict):
            _fail(f"{gkey}:kwargs", "a mapping")
        tgt = gate.get("tgt", "step")
        if not isinstance(tgt, str) or not tgt:
            _fail(f"{gkey}:tgt", "'step' (the minions just done), 'site', or a minion id")
        checked[str(name)] = {
            "fun": gate["fun"],
            "args": list(gate.get("args", [])),
            "kwargs": dict(gate.get("kwargs", {})),
            "tgt": tgt,
        }
    settle = spec.get("settle", 0)
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle <= 3600:
        _fail(f"{key}:settle", f"seconds (0 to 3600) the gates may take to pass, not {settle!r}")
    return {
        "order": order,
        "canary": list(canary),
        "batch": batch,
        "ceph_health": health,
        "gates": checked,
        "settle": settle,
    }


def rollouts(sites):
    """What every minion must agree on: each site's ``rollout`` settings, in order
    (not its settings: a minion may see only its own site's)."""
    return [
        (name, {k: v for k, v in spec.items() if k != "settings"}) for name, spec in sites.items()
    ]


def site_of(pillar, minion_id, sites=None):
    """The site of ``minion_id`` by its pillar (``hastack:site``), checked against the
    sites the pillar defines; None when the pillar defines no sites."""
    sites = defined(pillar) if sites is None else sites
    if not sites:
        return None
    site = (pillar or {}).get("site")
    if site is None:
        _fail(
            "hastack:site",
            f"minion {minion_id} is in no site: set it to one of {', '.join(sites)}",
        )
    if site not in sites:
        _fail(
            "hastack:site",
            f"unknown site {site!r} for minion {minion_id} (hastack:sites has {', '.join(sites)})",
        )
    return site


def layered(pillar, minion_id, with_minion=True):
    """The ``hastack`` pillar of ``minion_id`` with its layers applied (global, then its
    site, then ``hastack:minion``), and ``origins`` (see ``where``): a cephx key's
    ``key_pillar`` and an error's key name where the setting really is."""
    if not isinstance(pillar, dict):
        _fail("hastack", "the pillar tree is missing or not a mapping")
    sites = defined(pillar)
    site = site_of(pillar, minion_id, sites)
    own = pillar.get("minion", {})
    if not isinstance(own, dict):
        _fail("hastack:minion", "must be a mapping (this minion's own overrides)")
    for inner in ("sites", "site", "minion"):
        if inner in own:
            _fail(f"hastack:minion:{inner}", "not a setting a minion overrides")
    layers = [("hastack", {k: v for k, v in pillar.items() if k not in ("sites", "minion")})]
    if site is not None and not sites[site]["settings"].get("ceph"):
        # A minion may see only its own site's settings (keys included): the others'
        # need not be in its pillar, its own must.
        _fail(
            f"hastack:sites:{site}:ceph",
            f"required: the site's Ceph cluster (fsid, mon_host, ...), for minion {minion_id}",
        )
    if site is not None:
        layers.append((f"hastack:sites:{site}", sites[site]["settings"]))
    if with_minion and own:
        layers.append(("hastack:minion", own))
    tree = {}
    for _, layer in layers:
        tree = _merge(tree, layer)
    return tree, _origins(layers)


def _origins(layers):
    """``{merged path: real path}`` for every setting (mapping or value) a layer
    supplies: the last layer that sets it wins, as in the merge."""
    origins = {}
    for prefix, layer in layers:
        for path in _paths(layer):
            origins[f"hastack:{path}"] = f"{prefix}:{path}"
    return origins


def _paths(tree, prefix=""):
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out.append(path)
        if isinstance(value, dict):
            out += _paths(value, f"{path}:")
    return out


def where(path, origins):
    """Where the setting the merged tree has at ``path`` really is in the pillar: the
    layer that supplied it (or its nearest enclosing mapping), else ``path`` itself."""
    probe = path
    while probe:
        if probe in origins:
            return origins[probe] + path[len(probe) :]
        probe = probe.rpartition(":")[0]
    return path


def renamed(err, origins):
    """``err`` (a ``SaltInvocationError`` naming a key of the merged tree) naming where
    the setting really is."""
    key, sep, message = str(err).partition(": ")
    if not sep or not key.startswith("hastack"):
        return err
    return SaltInvocationError(f"{where(key, origins)}: {message}")


def setting(pillar, minion_id, path):
    """The value at ``path`` (such as ``openstack:cloud``) of ``minion_id``'s
    ``hastack`` pillar with its layers applied, or None."""
    tree = pillar if isinstance(pillar, dict) else {}
    if tree.get("sites") or tree.get("minion"):
        tree = layered(tree, minion_id)[0]
    for part in path.split(":"):
        if not isinstance(tree, dict) or part not in tree:
            return None
        tree = tree[part]
    return tree


def configured(salt_funcs, minion_id, path, default=None):
    """What an execution module uses for ``hastack:<path>`` when no argument names it:
    the minion's config file (or grains) first, as ``config.get`` reads them, then its
    layered pillar (its site's, its own), then ``default``."""
    value = salt_funcs["config.get"](f"hastack:{path}", None, omit_pillar=True)
    if value is None:
        value = setting(salt_funcs["pillar.get"]("hastack", {}, unmask=True), minion_id, path)
    return default if value is None else value

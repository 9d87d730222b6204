"""
Pacemaker configuration as plain data, through the Pacemaker command-line tools.

Reads the CIB (``cibadmin``) into the shape of the ``hastack:pacemaker`` pillar, builds
a ``<configuration>`` from that shape, verifies it (``crm_verify``), predicts placement
(``crm_simulate``, also with nodes failed) and writes a change as one patch guarded by
the CIB's epoch (``crm_diff`` + ``cibadmin --patch``): when someone else changed the
configuration since it was read, Pacemaker refuses the patch (rc 103) and the write is
retried on a fresh read, so no concurrent update is lost.

Every function works on the live cluster, or on a CIB file with ``cib_file`` (then a
write holds an exclusive ``flock`` on ``<cib_file>.lock``: Pacemaker does not lock files).

The plain shape::

    properties: {stonith-enabled: 'false'}
    resource_defaults: {resource-stickiness: '100'}
    primitives:
      p_IP: {agent: 'ocf:heartbeat:IPaddr2', params: {ip: 192.168.122.130},
             meta: {}, ops: {monitor: {interval: 120s, timeout: 60s}}}
    groups: {g_basic_services: [p_mysql, p_rabbitmq]}
    clones: {cl_ovs: p_ovs}
    locations: {lo_h1_alice: {rsc: p_h1, node: alice, score: '10000'}}
    colocations: {co_x: {rsc: p_a, with_rsc: p_IP, score: INFINITY}}
    orders: {o_x: {first: p_IP, then: p_a, kind: Mandatory}}

:depends: pacemaker-cli-utils (cibadmin, crm_diff, crm_verify, crm_simulate)
"""

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import xml.etree.ElementTree as ET

import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "pacemaker"

SECTIONS = ("properties", "resource_defaults", "primitives", "groups", "clones", "locations",
            "colocations", "orders")
# cibadmin: "Update was older than existing configuration": someone else wrote first.
RC_OLD_DATA = 103
# Properties Pacemaker keeps for itself; nobody declares them.
OWN_PROPERTIES = ("dc-version", "cluster-infrastructure", "cluster-name", "have-watchdog",
                  "last-lrm-refresh")
ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
AGENT_RE = re.compile(r"^(ocf:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+|(lsb|systemd|service|stonith):[A-Za-z0-9_.@-]+)$")
SCORE_RE = re.compile(r"^([+-]?(INFINITY|inf|\d+))$")
ORDER_KINDS = ("Mandatory", "Optional", "Serialize")


def __virtual__():
    for tool in ("cibadmin", "crm_diff", "crm_verify", "crm_simulate"):
        if not salt.utils.path.which(tool):
            return (False, f"pacemaker: '{tool}' is missing (install pacemaker-cli-utils)")
    return __virtualname__


def _run(argv, cib_file=None, ok_codes=(0,), env=None):
    env = dict(env or {}, **({"CIB_file": cib_file} if cib_file else {}))
    res = __salt__["cmd.run_all"](argv, python_shell=False, env=env, ignore_retcode=True,
                                  output_loglevel="debug")
    if res["retcode"] not in ok_codes:
        err = CommandExecutionError(
            f"{argv[0]} failed (rc {res['retcode']}): {(res['stderr'] or res['stdout']).strip()}"
        )
        err.retcode = res["retcode"]
        raise err
    return res


@contextlib.contextmanager
def _locked(cib_file):
    """Serialize read-modify-write on a CIB file; the live CIB needs no lock (epochs)."""
    if not cib_file:
        yield
        return
    with open(f"{cib_file}.lock", "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- CIB <-> data


def _nvpairs(parent, tag):
    out = {}
    for block in parent.findall(tag):
        out.update({nv.get("name"): nv.get("value") for nv in block.findall("nvpair")})
    return out


def _primitive_data(prim):
    agent = ":".join(p for p in (prim.get("class"), prim.get("provider"), prim.get("type")) if p)
    ops = {op.get("name"): {k: v for k, v in op.attrib.items() if k not in ("id", "name")}
           for op in prim.findall("operations/op")}
    return {"agent": agent, "params": _nvpairs(prim, "instance_attributes"),
            "meta": _nvpairs(prim, "meta_attributes"), "ops": ops}


def parse_configuration(cib_xml):
    """
    A CIB's ``<configuration>`` in the plain shape (see the module docs), plus the CIB's
    ``epoch`` and ``admin_epoch``.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.parse_configuration "$(cibadmin --query)"
    """
    try:
        root = ET.fromstring(cib_xml)
    except ET.ParseError as err:
        raise CommandExecutionError(f"unreadable CIB: {err}") from err
    conf = root.find("configuration")
    data = {name: {} for name in SECTIONS}
    data["properties"] = _nvpairs(conf.find("crm_config"), "cluster_property_set")
    for own in OWN_PROPERTIES:
        data["properties"].pop(own, None)
    rsc_defaults = conf.find("rsc_defaults")
    if rsc_defaults is not None:
        data["resource_defaults"] = _nvpairs(rsc_defaults, "meta_attributes")
    resources = conf.find("resources")
    for prim in resources.findall("primitive"):
        data["primitives"][prim.get("id")] = _primitive_data(prim)
    for group in resources.findall("group"):
        data["groups"][group.get("id")] = [p.get("id") for p in group.findall("primitive")]
        for prim in group.findall("primitive"):
            data["primitives"][prim.get("id")] = _primitive_data(prim)
    for clone in resources.findall("clone"):
        inner = clone.find("primitive")
        if inner is not None:
            data["primitives"][inner.get("id")] = _primitive_data(inner)
            data["clones"][clone.get("id")] = inner.get("id")
    for loc in conf.findall("constraints/rsc_location"):
        data["locations"][loc.get("id")] = {"rsc": loc.get("rsc"), "node": loc.get("node"),
                                            "score": loc.get("score")}
    for col in conf.findall("constraints/rsc_colocation"):
        data["colocations"][col.get("id")] = {"rsc": col.get("rsc"),
                                              "with_rsc": col.get("with-rsc"),
                                              "score": col.get("score")}
    for order in conf.findall("constraints/rsc_order"):
        data["orders"][order.get("id")] = {k: order.get(k) for k in ("first", "then", "kind", "score")
                                           if order.get(k) is not None}
    data["epoch"] = int(root.get("epoch", 0))
    data["admin_epoch"] = int(root.get("admin_epoch", 0))
    return data


def _nv_block(parent, tag, block_id, values):
    if values:
        block = ET.SubElement(parent, tag, id=block_id)
        for name, value in sorted(values.items()):
            ET.SubElement(block, "nvpair", id=f"{block_id}-{name}", name=str(name), value=str(value))


def _primitive_xml(parent, rid, spec):
    parts = spec["agent"].split(":")
    attrs = {"id": rid, "class": parts[0], "type": parts[-1]}
    if len(parts) == 3:
        attrs["provider"] = parts[1]
    prim = ET.SubElement(parent, "primitive", attrs)
    _nv_block(prim, "instance_attributes", f"{rid}-instance_attributes", spec.get("params"))
    _nv_block(prim, "meta_attributes", f"{rid}-meta_attributes", spec.get("meta"))
    if spec.get("ops"):
        ops = ET.SubElement(prim, "operations")
        for name, op in sorted(spec["ops"].items()):
            interval = str(op.get("interval", "0s"))
            ET.SubElement(ops, "op", {"id": f"{rid}-{name}-{interval}", "name": name,
                                      **{k: str(v) for k, v in sorted(op.items())}})


def _configuration_xml(config, nodes=None):
    """A ``<configuration>`` element for the plain shape; ids derive from names."""
    conf = ET.Element("configuration")
    crm = ET.SubElement(conf, "crm_config")
    _nv_block(crm, "cluster_property_set", "cib-bootstrap-options", config.get("properties"))
    conf.append(nodes if nodes is not None else ET.Element("nodes"))
    resources = ET.SubElement(conf, "resources")
    primitives = config.get("primitives") or {}
    groups, clones = config.get("groups") or {}, config.get("clones") or {}
    inside = {m for members in groups.values() for m in members} | set(clones.values())
    for rid in sorted(set(primitives) - inside):
        _primitive_xml(resources, rid, primitives[rid])
    for gid, members in sorted(groups.items()):
        group = ET.SubElement(resources, "group", id=gid)
        for member in members:
            _primitive_xml(group, member, primitives[member])
    for cid, rid in sorted(clones.items()):
        _primitive_xml(ET.SubElement(resources, "clone", id=cid), rid, primitives[rid])
    constraints = ET.SubElement(conf, "constraints")
    for lid, loc in sorted((config.get("locations") or {}).items()):
        ET.SubElement(constraints, "rsc_location", id=lid, rsc=loc["rsc"], node=loc["node"],
                      score=str(loc["score"]))
    for cid, col in sorted((config.get("colocations") or {}).items()):
        ET.SubElement(constraints, "rsc_colocation", {"id": cid, "rsc": col["rsc"],
                                                      "with-rsc": col["with_rsc"],
                                                      "score": str(col["score"])})
    for oid, order in sorted((config.get("orders") or {}).items()):
        attrs = {"id": oid, "first": order["first"], "then": order["then"]}
        attrs.update({k: str(order[k]) for k in ("kind", "score") if k in order})
        ET.SubElement(constraints, "rsc_order", attrs)
    _nv_block(ET.SubElement(conf, "rsc_defaults"), "meta_attributes", "rsc-options",
              config.get("resource_defaults"))
    return conf


def normalize(config):
    """
    The plain shape with every value a string, as it reads back from a CIB: compare
    pillar data with ``configuration()`` output through this.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.normalize "$(salt-call --out=json pillar.get hastack:pacemaker)"
    """
    root = ET.Element("cib", epoch="0", admin_epoch="0")
    root.append(_configuration_xml(config))
    data = parse_configuration(ET.tostring(root, encoding="unicode"))
    return {name: data[name] for name in SECTIONS}


# --------------------------------------------------------------------------- reading


def cib_xml(cib_file=None):
    """
    The whole CIB as XML text.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.cib_xml cib_file=/tmp/cib.xml
    """
    return _run(["cibadmin", "--query"], cib_file)["stdout"]


def configuration(cib_file=None):
    """
    The cluster's configuration in the plain shape (see the module docs).

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.configuration
    """
    return parse_configuration(cib_xml(cib_file))


def _with_undeclared(current, wanted):
    """The declaration plus the items it does not name (kept, not removed). An undeclared
    group or clone holding a primitive the declaration places elsewhere goes: it would
    put that primitive in the CIB twice."""
    merged = {}
    for section in SECTIONS:
        merged[section] = dict(current.get(section) or {})
        merged[section].update(wanted.get(section) or {})
    placed = {m for members in (wanted.get("groups") or {}).values() for m in members}
    placed |= set((wanted.get("clones") or {}).values())
    for gid in set(merged["groups"]) - set(wanted.get("groups") or {}):
        if placed & set(merged["groups"][gid]):
            del merged["groups"][gid]
    for cid in set(merged["clones"]) - set(wanted.get("clones") or {}):
        if merged["clones"][cid] in placed:
            del merged["clones"][cid]
    return merged


def _candidate(cib_text, config, remove_undeclared=True):
    """The given CIB with its configuration replaced by ``config`` (its nodes kept; and
    unless ``remove_undeclared``, the items ``config`` does not name)."""
    if not remove_undeclared:
        config = _with_undeclared(parse_configuration(cib_text), config)
    root = ET.fromstring(cib_text)
    old = root.find("configuration")
    new = _configuration_xml(config, nodes=old.find("nodes"))
    root.remove(old)
    root.insert(0, new)
    return ET.tostring(root, encoding="unicode")


def verify(config=None, cib_file=None, remove_undeclared=False):
    """
    ``crm_verify`` on the CIB (live or file), or with ``config`` on the candidate CIB
    that ``write`` would give. Returns ``{valid, messages}``.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.verify cib_file=/tmp/cib.xml
    """
    with tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
        path = os.path.join(tmp, "cib.xml")
        text = cib_xml(cib_file)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(_candidate(text, config, remove_undeclared) if config is not None else text)
        res = _run(["crm_verify", "--xml-file", path], ok_codes=range(256))
    messages = [line.strip() for line in (res["stderr"] + res["stdout"]).splitlines() if line.strip()]
    return {"valid": res["retcode"] == 0, "messages": messages}


def _placement(sim_output):
    root = ET.fromstring(sim_output)
    status = root.find("revised_cluster_status")
    if status is None:
        status = root.find("cluster_status")
    seen = {}
    for rsc in status.iter("resource"):
        node = rsc.find("node")
        seen.setdefault(rsc.get("id"), []).append(node.get("name") if node is not None else None)
    # A clone's instances share an id: they give the sorted list of nodes they run on.
    return {rid: nodes[0] if len(nodes) == 1 else sorted(n for n in nodes if n)
            for rid, nodes in seen.items()}


def simulate(online, failed=None, config=None, cib_file=None):
    """
    Where every resource would run, ``{resource: node or None}`` (a clone: the list of
    its nodes): the ``online`` nodes
    up with quorum, then the ``failed`` nodes failed. With ``config``, for the candidate
    configuration instead of the current one.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.simulate '[alice, bob, charlie]' failed='[alice]' cib_file=/tmp/cib.xml
    """
    with tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
        start, up = os.path.join(tmp, "start.xml"), os.path.join(tmp, "up.xml")
        text = cib_xml(cib_file)
        with open(start, "w", encoding="utf-8") as fh:
            fh.write(_candidate(text, config) if config is not None else text)
        # crm_simulate writes temporary files; keep them out of /var/lib/pacemaker.
        env = {"CIB_shadow_dir": tmp}
        argv = ["crm_simulate", "--xml-file", start, "--simulate", "--quorum", "1",
                "--save-output", up]
        for node in online:
            argv += ["--node-up", node]
        _run(argv, env=env)
        argv = ["crm_simulate", "--xml-file", up, "--simulate", "--output-as=xml"]
        for node in failed or []:
            argv += ["--node-fail", node]
        return _placement(_run(argv, env=env)["stdout"])


# --------------------------------------------------------------------------- writing


def write(config, cib_file=None, remove_undeclared=False, retries=5):
    """
    Make the CIB's configuration hold ``config`` (and, unless ``remove_undeclared``,
    keep the items it does not name) in one patch guarded by the epoch: if someone else
    changed it meanwhile, Pacemaker refuses (rc 103) and the patch is made again from a
    fresh read, up to ``retries`` times. Returns the new epoch.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.write "$(cat config.json)" cib_file=/tmp/cib.xml
    """
    if remove_undeclared:
        return _write_edit(lambda current: config, cib_file, retries)
    return _write_edit(lambda current: _with_undeclared(current, config), cib_file, retries)


def _write_edit(edit, cib_file=None, retries=5):
    """Write ``edit(configuration as read)`` as one epoch-guarded patch. ``edit`` runs on
    every fresh read, so a change made from a stale read never reverts someone else's."""
    for attempt in range(retries + 1):
        with _locked(cib_file), tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
            old_path, new_path = os.path.join(tmp, "old.xml"), os.path.join(tmp, "new.xml")
            old = cib_xml(cib_file)
            with open(old_path, "w", encoding="utf-8") as fh:
                fh.write(old)
            with open(new_path, "w", encoding="utf-8") as fh:
                fh.write(_candidate(old, edit(parse_configuration(old))))
            diff = _run(["crm_diff", "--original", old_path, "--new", new_path],
                        ok_codes=(0, 1))["stdout"]
            if not diff.strip():
                return parse_configuration(old)["epoch"]
            # The version without num_updates (source and target): the patch then applies
            # only to the very configuration it was made from (rc 103 otherwise).
            head, sep, tail = diff.partition("</version>")
            patch = re.sub(r' num_updates="\d+"', "", head) + sep + tail
            patch_path = os.path.join(tmp, "patch.xml")
            with open(patch_path, "w", encoding="utf-8") as fh:
                fh.write(patch)
            try:
                _run(["cibadmin", "--patch", "--xml-file", patch_path], cib_file)
            except CommandExecutionError as err:
                if getattr(err, "retcode", None) == RC_OLD_DATA and attempt < retries:
                    log.info("pacemaker: the CIB changed under us; re-reading (try %s)", attempt + 2)
                    continue
                raise
        return configuration(cib_file)["epoch"]
    raise CommandExecutionError("pacemaker: the CIB kept changing; gave up")


# --------------------------------------------------------------------------- pillar


def validate(config, nodes, base="hastack:pacemaker"):
    """
    Check a declaration (the plain shape plus ``nodes``) and return it normalized.
    Every error names the pillar key: unknown resources in groups, clones and
    constraints, bad scores, ids used twice, malformed agents, unknown nodes.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.validate "$(salt-call --out=json pillar.get hastack:pacemaker)" '[alice, bob]'
    """

    def need(cond, key, message):
        if not cond:
            raise SaltInvocationError(f"{key}: {message}")

    need(isinstance(config, dict), base, "must be a mapping")
    need(isinstance(nodes, list) and nodes, f"{base}:nodes", "a list of the cluster's node names")
    seen = {}
    for section in ("primitives", "groups", "clones", "locations", "colocations", "orders"):
        items = config.get(section) or {}
        need(isinstance(items, dict), f"{base}:{section}", "must be a mapping of id to settings")
        for item_id in items:
            key = f"{base}:{section}:{item_id}"
            need(ID_RE.match(str(item_id)), key, "not a valid XML id")
            need(item_id not in seen, key, f"id '{item_id}' is already used in {base}:{seen.get(item_id)}")
            seen[item_id] = section
    primitives = config.get("primitives") or {}
    for rid, spec in primitives.items():
        key = f"{base}:primitives:{rid}"
        need(isinstance(spec, dict), key, "must be a mapping")
        unknown = set(spec) - {"agent", "params", "meta", "ops"}
        need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        need(isinstance(spec.get("agent"), str) and AGENT_RE.match(spec["agent"]), f"{key}:agent",
             f"not an agent like 'ocf:heartbeat:IPaddr2': {spec.get('agent')!r}")
        for part in ("params", "meta", "ops"):
            need(isinstance(spec.get(part) or {}, dict), f"{key}:{part}", "must be a mapping")
    resources = set(primitives) | set(config.get("groups") or {}) | set(config.get("clones") or {})
    members = {}
    for gid, group in (config.get("groups") or {}).items():
        need(isinstance(group, list) and group, f"{base}:groups:{gid}", "a list of primitives")
        for member in group:
            need(member in primitives, f"{base}:groups:{gid}", f"'{member}' is not a primitive here")
            need(member not in members, f"{base}:groups:{gid}", f"'{member}' is already in {members.get(member)}")
            members[member] = gid
    for cid, rid in (config.get("clones") or {}).items():
        need(rid in primitives, f"{base}:clones:{cid}", f"'{rid}' is not a primitive here")
        need(rid not in members, f"{base}:clones:{cid}", f"'{rid}' is already in {members.get(rid)}")
        members[rid] = cid

    def score(value, key):
        need(SCORE_RE.match(str(value)), key, f"not a score (an integer or [+-]INFINITY): {value!r}")

    for lid, loc in (config.get("locations") or {}).items():
        key = f"{base}:locations:{lid}"
        need(loc.get("rsc") in resources, f"{key}:rsc", f"unknown resource {loc.get('rsc')!r}")
        need(loc.get("node") in nodes, f"{key}:node", f"unknown node {loc.get('node')!r} (nodes: {', '.join(nodes)})")
        score(loc.get("score"), f"{key}:score")
    for cid, col in (config.get("colocations") or {}).items():
        key = f"{base}:colocations:{cid}"
        for ref in ("rsc", "with_rsc"):
            need(col.get(ref) in resources, f"{key}:{ref}", f"unknown resource {col.get(ref)!r}")
        score(col.get("score"), f"{key}:score")
    for oid, order in (config.get("orders") or {}).items():
        key = f"{base}:orders:{oid}"
        for ref in ("first", "then"):
            need(order.get(ref) in resources, f"{key}:{ref}", f"unknown resource {order.get(ref)!r}")
        if "kind" in order:
            need(order["kind"] in ORDER_KINDS, f"{key}:kind", f"one of {', '.join(ORDER_KINDS)}")
        if "score" in order:
            score(order["score"], f"{key}:score")
    return normalize(config)


# --------------------------------------------------------------------------- locations


def _locations_changed(current, set_=None, remove=()):
    config = {section: dict(current.get(section) or {}) for section in SECTIONS}
    for lid in remove:
        config["locations"].pop(lid, None)
    config["locations"].update(set_ or {})
    return config


def _check_location(rsc, node, score, current, nodes=None):
    if rsc not in set(current["primitives"]) | set(current["groups"]) | set(current["clones"]):
        raise SaltInvocationError(f"rsc: no resource, group or clone '{rsc}' in the CIB")
    if nodes is not None and node not in nodes:
        raise SaltInvocationError(f"node: '{node}' is not a node of the cluster ({', '.join(nodes)})")
    if not SCORE_RE.match(str(score)):
        raise SaltInvocationError(f"score: '{score}' is not a Pacemaker score (an integer or INFINITY)")


def location_set(constraint_id, rsc, node, score, cib_file=None, test=False):
    """
    Declare that ``rsc`` prefers (positive ``score``) or avoids (negative) ``node``,
    as the location constraint ``constraint_id`` (created or changed), in one
    epoch-guarded write. Returns ``{old, new}`` of the constraint, or ``{}`` when it is
    already so. With ``test=True`` nothing is written.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.location_set lo_host1_prefer_alice p_nova-compute-host1 alice 10000
    """
    if not ID_RE.match(str(constraint_id)):
        raise SaltInvocationError(f"constraint_id: '{constraint_id}' is not a valid XML id")
    text = cib_xml(cib_file)
    current = parse_configuration(text)
    _check_location(rsc, node, score, current, sorted(_cib_nodes(text)) or None)
    wanted = {"rsc": rsc, "node": node, "score": str(score)}
    old = current["locations"].get(constraint_id)
    if old == wanted:
        return {}
    if not test:
        _write_edit(lambda cur: _locations_changed(cur, set_={constraint_id: wanted}), cib_file)
    return {"old": old, "new": wanted}


def location_remove(constraint_id, cib_file=None, test=False):
    """
    Remove the location constraint ``constraint_id``. Returns ``{old, new: None}``, or
    ``{}`` when there is no such constraint.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.location_remove lo_host1_prefer_alice
    """
    old = configuration(cib_file)["locations"].get(constraint_id)
    if old is None:
        return {}
    if not test:
        _write_edit(lambda cur: _locations_changed(cur, remove=[constraint_id]), cib_file)
    return {"old": old, "new": None}


def move(rsc, node, cib_file=None, test=False):
    """
    Move ``rsc`` to ``node`` the way ``crm_resource --move`` does: the constraint
    ``cli-prefer-<rsc>`` with score INFINITY (``clear`` and ``crm_resource --clear``
    remove it). Returns ``{old, new}`` or ``{}``.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.move g_keystone bob
    """
    return location_set(f"cli-prefer-{rsc}", rsc, node, "INFINITY", cib_file, test)


def clear(rsc, cib_file=None, test=False):
    """
    Remove what ``move``, ``crm_resource --move`` and ``crm_resource --ban`` left for
    ``rsc`` (``cli-prefer-<rsc>``, ``cli-ban-<rsc>-on-<node>``). Returns the removed ids.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.clear g_keystone
    """
    ids = sorted(lid for lid, loc in configuration(cib_file)["locations"].items()
                 if loc["rsc"] == rsc and (lid == f"cli-prefer-{rsc}"
                                           or lid.startswith(f"cli-ban-{rsc}-on-")))
    if ids and not test:
        _write_edit(lambda cur: _locations_changed(cur, remove=ids), cib_file)
    return ids


# --------------------------------------------------------------------------- nodes


def _cib_nodes(cib_text):
    """``{node name: in standby}`` for the nodes the CIB knows (``<nodes>``)."""
    root = ET.fromstring(cib_text)
    return {n.get("uname"): _nvpairs(n, "instance_attributes").get("standby") in ("on", "true", "1", "yes")
            for n in root.findall("configuration/nodes/node") if n.get("uname")}


def status(cib_file=None):
    """
    The cluster as ``crm_mon`` sees it: ``{dc, quorum, nodes: {name: {online, standby,
    maintenance}}, resources: {rsc: node or None}}`` (a clone: the sorted list of the
    nodes it runs on).

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.status
    """
    root = ET.fromstring(_run(["crm_mon", "--one-shot", "--output-as=xml"], cib_file)["stdout"])
    dc = root.find("summary/current_dc")
    nodes = {n.get("name"): {k: n.get(k) == "true" for k in ("online", "standby", "maintenance")}
             for n in root.findall("nodes/node")}
    # crm_mon shows standby only for online nodes; the CIB says it for all.
    for name, standby in _cib_nodes(cib_xml(cib_file)).items():
        if standby and name in nodes:
            nodes[name]["standby"] = True
    placed = {}
    for rsc in root.find("resources").iter("resource"):
        running = [n.get("name") for n in rsc.findall("node")]
        if rsc.get("role") not in ("Started", "Promoted", "Unpromoted", "Master", "Slave"):
            running = []
        placed.setdefault(rsc.get("id"), []).extend(running)
    return {
        "dc": dc.get("name") if dc is not None and dc.get("present") == "true" else None,
        "quorum": dc is not None and dc.get("with_quorum") == "true",
        "nodes": nodes,
        "resources": {rid: (where[0] if len(where) == 1 else (sorted(where) or None))
                      for rid, where in placed.items()},
    }


def _set_standby(node, value, cib_file, test):
    known = _cib_nodes(cib_xml(cib_file))
    if node not in known:
        raise SaltInvocationError(f"node: '{node}' is not a node of the cluster ({', '.join(sorted(known))})")
    old = "on" if known[node] else "off"
    if old == value:
        return {}
    if not test:
        # One attribute through crm_attribute: it changes that nvpair alone, so nothing
        # another writer did is overwritten.
        _run(["crm_attribute", "--node", node, "--name", "standby", "--lifetime", "forever",
              "--update", value], cib_file)
    return {"old": old, "new": value}


def node_standby(node, cib_file=None, test=False):
    """
    Put ``node`` in standby (its resources move off it; it stays a member). Returns
    ``{old, new}`` of its standby attribute, or ``{}`` when it already is.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.node_standby alice
    """
    return _set_standby(node, "on", cib_file, test)


def node_online(node, cib_file=None, test=False):
    """
    Take ``node`` out of standby. Returns ``{old, new}`` or ``{}``.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.node_online alice
    """
    return _set_standby(node, "off", cib_file, test)


# --------------------------------------------------------------------------- failover


SHIFT_PREFIX = "lo_hastack_shift_"


def _shift_id(rsc, node):
    return f"{SHIFT_PREFIX}{rsc}_from_{node}"


def shift_away(node, nodes, fallback=None, cib_file=None, test=False):
    """
    Move every resource that prefers ``node`` (a location constraint with a positive
    score) to a surviving node, and confirm by simulation that nothing is left on
    ``node``. The target is the first surviving node in ``fallback`` (an ordered list),
    else the least loaded node in the simulated placement with ``node`` failed. The
    original preferences stay; one constraint ``lo_hastack_shift_<rsc>_from_<node>`` per
    resource, with the same score, is added in one epoch-guarded write, so ``restore``
    undoes exactly this. With ``test=True`` only the plan is returned.

    Returns ``{"plan": {rsc: {from, to, constraint}}, "placement": {...}}``.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.shift_away alice '[alice, bob, charlie]' fallback='[bob, charlie]'
    """
    if node not in nodes:
        raise SaltInvocationError(f"node: '{node}' is not one of {', '.join(nodes)}")
    survivors = [n for n in nodes if n != node]
    current = configuration(cib_file)
    preferring = {lid: loc for lid, loc in current["locations"].items()
                  if loc["node"] == node and not lid.startswith(SHIFT_PREFIX)
                  and not str(loc["score"]).startswith("-")}
    before = simulate(nodes, failed=[node], cib_file=cib_file)
    load = {n: 0 for n in survivors}
    for where in before.values():
        for placed in where if isinstance(where, list) else [where]:
            if placed in load:
                load[placed] += 1
    plan, config = {}, {s: dict(current[s]) for s in SECTIONS}
    for lid, loc in sorted(preferring.items()):
        ordered = [n for n in (fallback or []) if n in survivors]
        target = ordered[0] if ordered else min(survivors, key=lambda n: (load[n], n))
        load[target] += 1
        shift = _shift_id(loc["rsc"], node)
        plan[loc["rsc"]] = {"from": node, "to": target, "constraint": shift}
        config["locations"][shift] = {"rsc": loc["rsc"], "node": target, "score": loc["score"]}
    placement = simulate(nodes, failed=[node], config=config, cib_file=cib_file)
    left = [r for r, where in placement.items()
            if where == node or (isinstance(where, list) and node in where)]
    wrong = [r for r, step in plan.items() if placement.get(r) != step["to"]]
    if left or wrong:
        raise CommandExecutionError(
            f"the simulated placement after the shift does not hold: still on {node}: {left}; "
            f"not on their target: {wrong}"
        )
    if plan and not test:
        added = {step["constraint"]: config["locations"][step["constraint"]] for step in plan.values()}
        _write_edit(lambda cur: _locations_changed(cur, set_=added), cib_file)
    return {"plan": plan, "placement": placement}


def restore(node, cib_file=None, test=False):
    """
    Undo ``shift_away(node)``: remove the ``lo_hastack_shift_*_from_<node>`` constraints,
    so the original preferences for ``node`` apply again. Returns the removed ids.

    CLI Example:

    .. code-block:: bash

        salt-call pacemaker.restore alice
    """
    removed = sorted(lid for lid in configuration(cib_file)["locations"]
                     if lid.startswith(SHIFT_PREFIX) and lid.endswith(f"_from_{node}"))
    if removed and not test:
        _write_edit(lambda cur: _locations_changed(cur, remove=removed), cib_file)
    return removed

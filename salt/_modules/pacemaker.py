"""
Pacemaker configuration as plain data, through the Pacemaker command-line tools.

Reads the CIB (``cibadmin``) into the shape of the ``hastack:pacemaker`` pillar, edits
the XML it read so that exactly what is declared holds, verifies the result
(``crm_verify``), predicts placement (``crm_simulate``, also with nodes failed) and
writes a change as one patch guarded by the CIB's epoch (``crm_diff`` + ``cibadmin
--patch``): when someone else changed the configuration since it was read, Pacemaker
refuses the patch (rc 103) and the edit is made again on a fresh read, so no
concurrent update is lost.

**Lossless.** A write changes only the elements and attributes that are declared:
an item's undeclared parameters, meta attributes, operations and their ids, whole
sections hastack does not model (fencing topology, tags, templates, bundles, node
attributes, utilization, undeclared alerts and defaults) and everything Pacemaker
keeps for itself stay as they were. ``remove_undeclared`` removes whole undeclared
items of the declared sections only.

Every function works on the live cluster, or on a CIB file with ``cib_file`` (then
reads hold a shared and writes an exclusive ``flock`` on ``<cib_file>.lock``:
Pacemaker's tools rewrite a CIB file in place and do not lock it).

The plain shape (every value a string once normalized)::

    properties: {stonith-enabled: 'false'}
    resource_defaults: {resource-stickiness: '100'}
    operation_defaults: {timeout: 90s}
    primitives:
      p_IP: {agent: 'ocf:heartbeat:IPaddr2', params: {ip: 192.168.122.130},
             meta: {}, utilization: {}, ops: {monitor: {interval: 120s, timeout: 60s}}}
      p_db: {agent: 'ocf:pacemaker:Stateful',
             ops: {monitor-promoted: {name: monitor, role: Promoted, interval: 10s}}}
    groups: {g_basic_services: [p_mysql, p_rabbitmq]}      # or {resources: [...], meta: {}}
    clones: {cl_ovs: p_ovs,                                # or {rsc: ..., meta: {}}
             cl_db: {rsc: p_db, meta: {promotable: 'true', promoted-max: '1'}}}
    locations:
      lo_h1_alice: {rsc: p_h1, node: alice, score: '10000'}   # optional role
      lo_h3_not_alice: {rsc: p_h3, rules: [{score: -INFINITY, expressions: [
                        {expression: {attribute: '#uname', operation: eq, value: alice}}]}]}
    colocations:
      co_x: {rsc: p_a, with_rsc: cl_db, with_rsc_role: Promoted, score: INFINITY}
      co_set: {score: -100, sets: [{resources: [p_a, p_b], sequential: 'false'}]}
    orders:
      o_x: {first: cl_db, first_action: promote, then: p_a, kind: Mandatory}
      o_set: {kind: Optional, sets: [{resources: [p_a, p_b], require_all: 'false'}]}
    alerts:
      al_hastack: {path: /usr/local/bin/alert.sh, meta: {timeout: 10s},
                   select: [nodes], recipients: {al_hastack_master: {value: salt}}}

Pillar keys are Pacemaker's XML attribute names with ``_`` for ``-`` (``with_rsc`` is
``with-rsc``); property, meta and parameter names and rule attributes are Pacemaker's
own.

:depends: pacemaker-cli-utils (cibadmin, crm_diff, crm_verify, crm_simulate, crm_mon)
"""

import contextlib
import fcntl
import logging
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET

import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import cib

log = logging.getLogger(__name__)

__virtualname__ = "pacemaker"

# crm_diff writes the (epoch-guardable) v2 patch format for CIBs of feature set 3.0.9 on.
V2_PATCH_FEATURE_SET = "3.0.9"
# cibadmin: "Update was older than existing configuration": someone else wrote first.
RC_OLD_DATA = 103
# cibadmin --create of an id that exists (pcmk_rc "Name not unique"; older tools: 76).
RC_EXISTS, RC_EXISTS_OLD = 108, 76


def __virtual__():
    for tool in ("cibadmin", "crm_diff", "crm_verify", "crm_simulate"):
        if not salt.utils.path.which(tool):
            return (False, f"pacemaker: '{tool}' is missing (install pacemaker-cli-utils)")
    return __virtualname__


def _run(argv, cib_file=None, ok_codes=(0,), env=None):
    env = dict(env or {}, **({"CIB_file": cib_file} if cib_file else {}))
    res = __salt__["cmd.run_all"](
        argv, python_shell=False, env=env, ignore_retcode=True, output_loglevel="debug"
    )
    if res["retcode"] not in ok_codes:
        err = CommandExecutionError(
            f"{argv[0]} failed (rc {res['retcode']}): {(res['stderr'] or res['stdout']).strip()}"
        )
        err.retcode = res["retcode"]
        raise err
    return res


@contextlib.contextmanager
def _locked(cib_file, exclusive=True):
    """Serialize access to a CIB file: Pacemaker's tools rewrite it in place, so a reader
    running beside a writer can see half a file. The live CIB needs no lock (epochs)."""
    if not cib_file:
        yield
        return
    with open(f"{cib_file}.lock", "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- the plain shape


def parse_configuration(cib_xml):
    """
    A CIB's ``<configuration>`` in the plain shape (see the module docs), every item it
    holds, plus ``resource_ids`` (every primitive, group, clone and bundle), the CIB's
    ``epoch`` and ``admin_epoch``.

    cib_xml
        The CIB as XML text (``cibadmin --query``).

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.parse_configuration "$(cibadmin --query)"
    """
    return cib.read_configuration(cib.parse(cib_xml))


def normalize(config):
    """
    A declaration (the plain shape) in canonical form, as ``diff`` compares it: every
    value a string, groups as ``{resources, meta}``, clones as ``{rsc, meta}``.

    config
        The declaration (``hastack:pacemaker`` without ``nodes``).

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.normalize "$(salt-call --out=json pillar.get hastack:pacemaker)"
    """
    return cib.normalize(config)


def validate(config, nodes, base="hastack:pacemaker"):
    """
    Check a declaration (the plain shape plus ``nodes``) and return it in canonical form.
    Every error names the pillar key: unknown resources in groups, clones, constraints
    and sets, bad scores, roles and actions, ids used twice, malformed agents, rules and
    alerts, unknown nodes.

    config
        The declaration (``hastack:pacemaker`` without ``nodes``).
    nodes
        The cluster's node names.
    base
        The pillar path errors are named under.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.validate "$(salt-call --out=json pillar.get hastack:pacemaker)" '[alice, bob]'
    """
    return cib.validate(config, nodes, base)


# --------------------------------------------------------------------------- reading


def _query(cib_file):
    return _run(["cibadmin", "--query"], cib_file)["stdout"]


def cib_xml(cib_file=None):
    """
    The whole CIB as XML text.

    cib_file
        Read this CIB file instead of the live cluster's CIB.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.cib_xml cib_file=/tmp/cib.xml
    """
    with _locked(cib_file, exclusive=False):
        return _query(cib_file)


def configuration(cib_file=None):
    """
    The cluster's configuration in the plain shape (see the module docs): every item
    the CIB holds, declared or not.

    cib_file
        Read this CIB file instead of the live cluster's CIB.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.configuration
    """
    return parse_configuration(cib_xml(cib_file))


def diff(config, cib_file=None, remove_undeclared=False):
    """
    What a write of ``config`` would change: ``{"<section>:<id>": {old, new}}`` with,
    for each declared item, only its declared part (``old`` is ``None`` for a new item;
    ``new`` is ``None`` for an item ``remove_undeclared`` removes).

    config
        The declaration (the plain shape; see ``validate``).
    cib_file
        Compare with this CIB file instead of the live cluster's CIB.
    remove_undeclared
        Also list the undeclared items of the declared sections, which a write with
        ``remove_undeclared`` removes.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.diff "$(salt-call --out=json pillar.get hastack:pacemaker)"
    """
    return cib.diff(configuration(cib_file), cib.normalize(config), remove_undeclared)


def verify(config=None, cib_file=None, remove_undeclared=False):
    """
    ``crm_verify`` on the CIB (live or file), or with ``config`` on the candidate CIB
    that ``write`` would give. Returns ``{valid, messages}``.

    config
        A declaration to check as written (default: check the CIB as it is).
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    remove_undeclared
        Check the candidate with the undeclared items removed.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.verify cib_file=/tmp/cib.xml
    """
    with tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
        path = os.path.join(tmp, "cib.xml")
        text = cib_xml(cib_file)
        if config is not None:
            text = cib.candidate(text, cib.normalize(config), remove_undeclared)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        res = _run(["crm_verify", "--xml-file", path], ok_codes=range(256))
    messages = [
        line.strip() for line in (res["stderr"] + res["stdout"]).splitlines() if line.strip()
    ]
    return {"valid": res["retcode"] == 0, "messages": messages}


def _simulated(cib_text, online, failed=(), scores=False):
    """crm_simulate's XML for the CIB text with the ``online`` nodes up (with quorum),
    then the ``failed`` ones failed."""
    with tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
        start, up = os.path.join(tmp, "start.xml"), os.path.join(tmp, "up.xml")
        with open(start, "w", encoding="utf-8") as fh:
            fh.write(cib_text)
        # crm_simulate writes temporary files; keep them out of /var/lib/pacemaker.
        env = {"CIB_shadow_dir": tmp}
        argv = [
            "crm_simulate",
            "--xml-file",
            start,
            "--simulate",
            "--quorum",
            "1",
            "--save-output",
            up,
        ]
        for node in online:
            argv += ["--node-up", node]
        _run(argv, env=env)
        argv = ["crm_simulate", "--xml-file", up, "--simulate", "--output-as=xml"]
        if scores:
            argv.append("--show-scores")
        for node in failed or []:
            argv += ["--node-fail", node]
        return ET.fromstring(_run(argv, env=env)["stdout"])


def simulate(online, failed=None, config=None, cib_file=None, roles=False):
    """
    Where every resource would run: ``{resource: node or None}``; a group runs where
    its primitives do; a clone, a promotable clone and what they hold give the sorted
    list of their nodes. The ``online`` nodes come up with quorum, then the ``failed``
    nodes fail.

    online
        The nodes to bring up (usually every node of the cluster).
    failed
        The nodes to fail after that.
    config
        Simulate the CIB as a write of this declaration would leave it.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    roles
        Return ``{resource: {nodes, promoted}}`` instead (``promoted``: where a
        promotable clone's instances are promoted).

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.simulate '[alice, bob, charlie]' failed='[alice]'
    """
    text = cib_xml(cib_file)
    if config is not None:
        text = cib.candidate(text, cib.normalize(config))
    tree = cib.simulated_tree(_simulated(text, online, failed))
    if roles:
        return {
            rid: {"nodes": item["nodes"], "promoted": item["promoted"]}
            for rid, item in tree.items()
        }
    return cib.flatten(tree)


# --------------------------------------------------------------------------- writing


def write(config, cib_file=None, remove_undeclared=False, retries=5):
    """
    Make the CIB hold ``config``: exactly the declared items and attributes change;
    with ``remove_undeclared`` the undeclared items of the declared sections also go.
    One patch guarded by the epoch: if someone else changed the CIB meanwhile,
    Pacemaker refuses it (rc 103) and the edit is made again on a fresh read, up to
    ``retries`` times. Returns the new epoch.

    config
        The declaration (the plain shape; see ``validate``).
    cib_file
        Write this CIB file instead of the live cluster's CIB.
    remove_undeclared
        Remove undeclared primitives, groups, clones, constraints, alerts, properties
        and defaults (never the failover's shifts, ``crm_resource`` moves and bans, or
        fencing devices).
    retries
        How often to re-read and retry when another writer came first.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.write "$(cat config.json)" cib_file=/tmp/cib.xml
    """
    wanted = cib.normalize(config)
    return _write_edit(lambda root: cib.apply(root, wanted, remove_undeclared), cib_file, retries)


def _write_edit(edit, cib_file=None, retries=5):
    """Write ``edit(parsed CIB)`` as one epoch-guarded patch. ``edit`` runs on every
    fresh read, so a change made from a stale read never reverts someone else's."""
    for attempt in range(retries + 1):
        with _locked(cib_file), tempfile.TemporaryDirectory(prefix="hastack-pcmk-") as tmp:
            old_path, new_path = os.path.join(tmp, "old.xml"), os.path.join(tmp, "new.xml")
            old = _query(cib_file)
            root = cib.parse(old)
            epoch = int(root.get("epoch", 0))
            new = edit(cib.parse(old))
            if _version(root.get("crm_feature_set")) < _version(V2_PATCH_FEATURE_SET):
                # A CIB from before Pacemaker 1.1.12 (an upgraded cluster) makes crm_diff
                # write a v1 diff, which cannot be epoch-guarded (its digest covers
                # num_updates): diff as if the feature set were newer; the CIB keeps its own.
                for doc in (root, new):
                    doc.set("crm_feature_set", V2_PATCH_FEATURE_SET)
            with open(old_path, "w", encoding="utf-8") as fh:
                fh.write(ET.tostring(root, encoding="unicode"))
            with open(new_path, "w", encoding="utf-8") as fh:
                fh.write(ET.tostring(new, encoding="unicode"))
            patch = _patch(old_path, new_path)
            if patch is None:
                return epoch
            patch_path = os.path.join(tmp, "patch.xml")
            with open(patch_path, "w", encoding="utf-8") as fh:
                fh.write(patch)
            try:
                _run(["cibadmin", "--patch", "--xml-file", patch_path], cib_file)
            except CommandExecutionError as err:
                if getattr(err, "retcode", None) == RC_OLD_DATA and attempt < retries:
                    log.info(
                        "pacemaker: the CIB changed under us; re-reading (try %s)", attempt + 2
                    )
                    continue
                raise
            return int(cib.parse(_query(cib_file)).get("epoch", 0))
    raise CommandExecutionError("pacemaker: the CIB kept changing; gave up")


def _version(text):
    return tuple(int(part) for part in re.findall(r"\d+", text or "0"))


def _patch(old_path, new_path):
    """The epoch-guarded patch from one CIB to the other, or None when they are equal."""
    diff_text = _run(["crm_diff", "--original", old_path, "--new", new_path], ok_codes=(0, 1))[
        "stdout"
    ]
    if not diff_text.strip():
        return None
    # The version without num_updates (source and target): the patch then applies only
    # to the very configuration it was made from (rc 103 otherwise).
    head, sep, tail = diff_text.partition("</version>")
    return re.sub(r' num_updates="\d+"', "", head) + sep + tail


# --------------------------------------------------------------------------- locations


def _check_location(rsc, node, score, current, nodes=None):
    if rsc not in current["resource_ids"]:
        raise SaltInvocationError(f"rsc: no resource, group or clone '{rsc}' in the CIB")
    if nodes is not None and node not in nodes:
        raise SaltInvocationError(
            f"node: '{node}' is not a node of the cluster ({', '.join(nodes)})"
        )
    if not cib.SCORE_RE.match(str(score)):
        raise SaltInvocationError(
            f"score: '{score}' is not a Pacemaker score (an integer or INFINITY)"
        )


def _remove_ids(item_ids, cib_file):
    _write_edit(lambda root: cib.apply(root, {}, remove=item_ids), cib_file)


def location_set(constraint_id, rsc, node, score, cib_file=None, test=False):
    """
    Declare that ``rsc`` prefers (positive ``score``) or avoids (negative) ``node``,
    as the location constraint ``constraint_id`` (created or changed), in one
    epoch-guarded write; what else the constraint holds (a role, resource-discovery)
    stays. Returns ``{old, new}`` of the constraint, or ``{}`` when it is already so.

    constraint_id
        The location constraint's id.
    rsc
        A primitive, group or clone of the CIB.
    node
        A node of the cluster.
    score
        An integer or ``[+-]INFINITY``.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only say what would change.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.location_set lo_host1_prefer_alice p_nova-compute-host1 alice 10000
    """
    if not cib.ID_RE.match(str(constraint_id)):
        raise SaltInvocationError(f"constraint_id: '{constraint_id}' is not a valid XML id")
    text = cib_xml(cib_file)
    current = parse_configuration(text)
    _check_location(rsc, node, score, current, sorted(cib.cib_nodes(text)) or None)
    wanted = {"rsc": str(rsc), "node": str(node), "score": str(score)}
    old = cib.view(current["locations"].get(constraint_id), wanted)
    if old == wanted:
        return {}
    if not test:
        _write_edit(lambda root: cib.apply(root, {"locations": {constraint_id: wanted}}), cib_file)
    return {"old": old, "new": wanted}


def location_remove(constraint_id, cib_file=None, test=False):
    """
    Remove the location constraint ``constraint_id``. Returns ``{old, new: None}``, or
    ``{}`` when there is no such constraint.

    constraint_id
        The location constraint's id.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only say what would change.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.location_remove lo_host1_prefer_alice
    """
    old = configuration(cib_file)["locations"].get(constraint_id)
    if old is None:
        return {}
    if not test:
        _remove_ids([constraint_id], cib_file)
    return {"old": old, "new": None}


def move(rsc, node, cib_file=None, test=False):
    """
    Move ``rsc`` to ``node`` the way ``crm_resource --move`` does: the constraint
    ``cli-prefer-<rsc>`` with score INFINITY (``clear`` and ``crm_resource --clear``
    remove it). Returns ``{old, new}`` or ``{}``.

    rsc
        A primitive, group or clone of the CIB.
    node
        A node of the cluster.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only say what would change.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.move g_keystone bob
    """
    return location_set(f"cli-prefer-{rsc}", rsc, node, "INFINITY", cib_file, test)


def clear(rsc, cib_file=None, test=False):
    """
    Remove what ``move``, ``crm_resource --move`` and ``crm_resource --ban`` left for
    ``rsc`` (``cli-prefer-<rsc>``, ``cli-ban-<rsc>-on-<node>``). Returns the removed ids.

    rsc
        A primitive, group or clone.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only say what would be removed.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.clear g_keystone
    """
    ids = sorted(
        lid
        for lid, loc in configuration(cib_file)["locations"].items()
        if loc.get("rsc") == rsc
        and (lid == f"cli-prefer-{rsc}" or lid.startswith(f"cli-ban-{rsc}-on-"))
    )
    if ids and not test:
        _remove_ids(ids, cib_file)
    return ids


# --------------------------------------------------------------------------- nodes


def status(cib_file=None, offline_standby=True):
    """
    The cluster as ``crm_mon`` sees it: ``{dc, quorum, nodes: {name: {online, standby,
    maintenance, unclean}}, resources: {rsc: node or None}}`` (a group: where its primitives
    run; a clone and what it holds: the sorted list of its nodes).

    cib_file
        Read this CIB file instead of the live cluster.

    offline_standby
        Also read from the CIB whether an offline node is in standby (``crm_mon`` says
        it for online nodes only): one more ``cibadmin`` call. ``False``: ``crm_mon``
        alone, as the ``hastack_cluster`` beacon and the failover's confirmation read
        it. Default: ``True``.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.status
    """
    with _locked(cib_file, exclusive=False):
        root = ET.fromstring(_run(["crm_mon", "--one-shot", "--output-as=xml"], cib_file)["stdout"])
    dc = root.find("summary/current_dc")
    nodes = {
        n.get("name"): {
            k: n.get(k) == "true" for k in ("online", "standby", "maintenance", "unclean")
        }
        for n in root.findall("nodes/node")
    }
    # crm_mon shows standby only for online nodes; the CIB says it for all.
    for name, standby in (cib.cib_nodes(cib_xml(cib_file)) if offline_standby else {}).items():
        if standby and name in nodes:
            nodes[name]["standby"] = True
    return {
        "dc": dc.get("name") if dc is not None and dc.get("present") == "true" else None,
        "quorum": dc is not None and dc.get("with_quorum") == "true",
        "nodes": nodes,
        "resources": cib.flatten(cib.placement_tree(root.find("resources"))),
    }


def health(resources=None, cib_file=None):
    """
    Whether the cluster is fit to go on with a rollout: ``{healthy, problems}``, where
    ``problems`` names what is wrong: no quorum, each node out of service (offline,
    unclean, standby, maintenance), each failed action (``crm_mon``'s failures: the
    operation, node and exit reason), each of ``resources`` not started.
    A CIB file has no DC: its quorum is the CIB's ``have-quorum``.

    resources
        The resources that must run (default: every primitive in the CIB that is not
        meant to be stopped, ``target-role=Stopped``).

    cib_file
        Read this CIB file instead of the live cluster.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.health
        salt '*' pacemaker.health '[p_IP, g_basic_services]'
    """
    if resources is not None and (
        not isinstance(resources, list) or not all(isinstance(r, str) for r in resources)
    ):
        raise SaltInvocationError("resources: a list of resource ids")
    with _locked(cib_file, exclusive=False):
        root = ET.fromstring(_run(["crm_mon", "--one-shot", "--output-as=xml"], cib_file)["stdout"])
        text = cib_xml(cib_file) if (cib_file or resources is None) else None
    quorum = None
    if cib_file:
        quorum = ET.fromstring(text).get("have-quorum") in ("1", "true")
    if resources is None:
        resources = cib.meant_to_run(text)
    problems = cib.health_problems(root, resources, quorum=quorum)
    return {"healthy": not problems, "problems": problems}


def _set_standby(node, value, cib_file, test):
    known = cib.cib_nodes(cib_xml(cib_file))
    if node not in known:
        raise SaltInvocationError(
            f"node: '{node}' is not a node of the cluster ({', '.join(sorted(known))})"
        )
    old = "on" if known[node] else "off"
    if old == value:
        return {}
    if not test:
        # One attribute through crm_attribute: it changes that nvpair alone, so nothing
        # another writer did is overwritten.
        with _locked(cib_file):
            _run(
                [
                    "crm_attribute",
                    "--node",
                    node,
                    "--name",
                    "standby",
                    "--lifetime",
                    "forever",
                    "--update",
                    value,
                ],
                cib_file,
            )
    return {"old": old, "new": value}


def node_standby(node, cib_file=None, test=False):
    """
    Put ``node`` in standby (its resources move off it; it stays a member). Returns
    ``{old, new}`` of its standby attribute, or ``{}`` when it already is.

    node
        The node's name, as the cluster knows it.

    cib_file
        Work on a CIB file instead of the live cluster.

    test
        Report what would change and change nothing (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.node_standby alice
    """
    return _set_standby(node, "on", cib_file, test)


def node_online(node, cib_file=None, test=False):
    """
    Take ``node`` out of standby. Returns ``{old, new}`` or ``{}``.

    node
        The node's name, as the cluster knows it.

    cib_file
        Work on a CIB file instead of the live cluster.

    test
        Report what would change and change nothing (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.node_online alice
    """
    return _set_standby(node, "off", cib_file, test)


# --------------------------------------------------------------------------- failover


def _shift_work(conf, node, survivors, scores):
    """What a shift away from ``node`` has to move: ``({label: item}, {label: reason
    it is skipped})``; a label is the resource, with its role when it has one."""
    todo, skipped = {}, {}
    for (rsc, role), score in sorted(
        cib.preferring(conf, node).items(), key=lambda kv: (kv[0][0], kv[0][1] or "")
    ):
        label = rsc if role is None else f"{rsc} ({role})"
        reason = cib.not_shiftable(conf, rsc)
        banned_by_config = {
            loc.get("node")
            for loc in (conf.get("locations") or {}).values()
            if loc.get("rsc") == rsc and str(loc.get("score")) in ("-INFINITY", "-inf")
        }
        if not reason and survivors and set(survivors) <= banned_by_config:
            # Bound to the node on purpose (an evacuate-mode compute identity): it waits
            # for the node, and is no failure to shift.
            reason = f"bound to {node}: a -INFINITY location on every other node"
        if reason:
            skipped[label] = reason
            continue
        todo[label] = {
            "rsc": rsc,
            "role": role,
            "score": score,
            # Survivors Pacemaker bans it from (allocation score -INFINITY with the node
            # failed) come last: a shift of what it depends on may still open them.
            "banned": [n for n in survivors if (scores.get(rsc) or {}).get(n) == "-INFINITY"],
            "size": sum(1 for rid in conf["primitives"] if rsc in cib.lineage(conf, rid)) or 1,
            "tried": {},  # target: where the simulation put it instead
            "next": [],  # where the cluster itself put it last time
        }
    return todo, skipped


def _shift_locations(todo, targets, node):
    """The ``lo_hastack_shift_*`` locations that send each resource to its target."""
    out = {}
    for label, target in targets.items():
        item = todo[label]
        loc = {"rsc": item["rsc"], "node": target, "score": item["score"]}
        if item["role"]:
            loc["role"] = item["role"]
        out[cib.shift_id(item["rsc"], node, item["role"])] = loc
    return out


def _choose_target(item, survivors, preferred, loads):
    """The next survivor to try: where the cluster put it, else the first preferred one,
    else the least loaded; banned survivors last; None when every one was tried."""
    untried = [n for n in survivors if n not in item["tried"]]
    for group in (item["next"], preferred):
        ordered = [n for n in group if n in untried and n not in item["banned"]]
        if ordered:
            return ordered[0]
    allowed = [n for n in untried if n not in item["banned"]] or untried
    return min(allowed, key=lambda n: (loads[n], n)) if allowed else None


def _settle_targets(text, nodes, node, todo, load, preferred):
    """Targets for ``todo`` that all hold in one simulation with ``node`` failed:
    ``(targets, placement tree or None, {label: why refused})``. A resource the cluster
    puts elsewhere is retried there, then on the next candidate; one that landed keeps
    its target. Every miss uses up a candidate, so this ends."""
    survivors = [n for n in nodes if n != node]
    held, refused = {}, {}
    while True:
        targets, loads = {}, dict(load)
        for label, item in list(todo.items()):
            target = held.get(label) or _choose_target(item, survivors, preferred, loads)
            if target is None:
                tried = "; ".join(
                    f"to {t}: the cluster put it on {', '.join(p) or 'no node'}"
                    + (" (allocation score -INFINITY)" if t in item["banned"] else "")
                    for t, p in item["tried"].items()
                )
                refused[label] = f"no survivor takes it ({tried})"
                del todo[label]
                continue
            loads[target] += item["size"]
            targets[label] = target
        if not targets:
            return {}, None, refused
        candidate = cib.candidate(text, {"locations": _shift_locations(todo, targets, node)})
        tree = cib.simulated_tree(_simulated(candidate, nodes, [node]))
        placed = {
            label: cib.placement_of(tree, todo[label]["rsc"], todo[label]["role"])
            for label in targets
        }
        missed = [label for label, target in targets.items() if target not in placed[label]]
        if not missed:
            return targets, tree, refused
        held = {label: target for label, target in targets.items() if label not in missed}
        for label in missed:
            todo[label]["tried"][targets[label]] = placed[label]
            todo[label]["next"] = [n for n in placed[label] if n in survivors]


def _write_shift_plan(node, plan, cib_file, test):
    """Write the constraints of a plan an earlier ``shift_away(test=True)`` returned."""
    if not isinstance(plan, dict):
        raise SaltInvocationError("plan: the 'plan' mapping a test=True shift_away returned")
    added = {}
    for label, move in plan.items():
        if not isinstance(move, dict) or not {"to", "score", "constraint"} <= set(move):
            raise SaltInvocationError(f"plan: '{label}' needs to, score and constraint")
        rsc = str(label).split(" (", 1)[0]
        if move["constraint"] != cib.shift_id(rsc, node, move.get("role")):
            raise SaltInvocationError(f"plan: '{label}' is not a shift away from {node}")
        loc = {"rsc": rsc, "node": move["to"], "score": move["score"]}
        if move.get("role"):
            loc["role"] = move["role"]
        added[move["constraint"]] = loc
    if added and not test:
        _write_edit(lambda root: cib.apply(root, {"locations": added}), cib_file)
    return {"plan": plan, "skipped": {}, "refused": {}, "placement": None}


def shift_away(node, nodes, fallback=None, cib_file=None, test=False, plan=None):
    """
    Move everything that prefers ``node`` (a location with a positive score for it, by
    ``node=`` or by a ``#uname eq`` rule, for a primitive, group, clone or promotable
    clone) to a surviving node, and confirm by simulation with ``node`` failed that each
    lands on its target. A target is a survivor the cluster allows (its allocation
    score is not -INFINITY): the first in ``fallback`` (an ordered list), else the least
    loaded; when the simulation places a resource elsewhere (anti-affinity, a ban), the
    next candidate is tried. The original preferences stay; one constraint
    ``lo_hastack_shift_<rsc>_from_<node>`` per resource, with the same score and role,
    is added in one epoch-guarded write, so ``restore`` undoes exactly this. A
    resource stopped or unmanaged on purpose is skipped and does not hold back the rest.

    Returns ``{plan: {rsc: {from, to, constraint, score[, role]}}, skipped: {rsc:
    reason}, refused: {rsc: reason}, placement: {...}}``; the call fails (retcode 1)
    when something could not be shifted.

    node
        The node that is gone.
    nodes
        Every node of the cluster.
    fallback
        Preferred targets, in order.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only plan and simulate; nothing is written. The plan is the one a real run makes.
    plan
        Write this plan (what a ``test=True`` call returned under ``plan``) as it is:
        one epoch-guarded write of its constraints, without planning and simulating
        again (a failover that has planned already). ``placement`` is then None.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.shift_away alice '[alice, bob, charlie]' fallback='[bob, charlie]'
    """
    if node not in nodes:
        raise SaltInvocationError(f"node: '{node}' is not one of {', '.join(nodes)}")
    if plan is not None:
        return _write_shift_plan(node, plan, cib_file, test)
    survivors = [n for n in nodes if n != node]
    text = cib_xml(cib_file)
    conf = parse_configuration(text)
    base = _simulated(text, nodes, [node], scores=True)
    base_tree = cib.simulated_tree(base)
    load = {
        n: sum(1 for rid in conf["primitives"] if n in (base_tree.get(rid) or {}).get("nodes", []))
        for n in survivors
    }
    todo, skipped = _shift_work(conf, node, survivors, cib.allocation_scores(base))
    preferred = [n for n in (fallback or []) if n in survivors]
    targets, tree, refused = _settle_targets(text, nodes, node, todo, load, preferred)
    plan = {}
    for label, target in targets.items():
        item = todo[label]
        plan[label] = {
            "from": node,
            "to": target,
            "score": item["score"],
            "constraint": cib.shift_id(item["rsc"], node, item["role"]),
        }
        if item["role"]:
            plan[label]["role"] = item["role"]
    if plan and not test:
        added = _shift_locations(todo, targets, node)
        _write_edit(lambda root: cib.apply(root, {"locations": added}), cib_file)
    if refused:
        __context__["retcode"] = 1
    return {
        "plan": plan,
        "skipped": skipped,
        "refused": refused,
        "placement": cib.flatten(tree or base_tree),
    }


def restore(node, cib_file=None, test=False):
    """
    Undo ``shift_away(node)``: remove its ``lo_hastack_shift_*_from_<node>``
    constraints, so the original preferences for ``node`` apply again and the
    constraints are exactly as they were before the shift. Returns the removed ids.

    node
        The node that is back.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.
    test
        Only say what would be removed.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.restore alice
    """
    mine = re.compile(rf"^{cib.SHIFT_PREFIX}.+_from_{re.escape(node)}(_promoted|_unpromoted)?$")
    removed = sorted(lid for lid in configuration(cib_file)["locations"] if mine.match(lid))
    if removed and not test:
        _remove_ids(removed, cib_file)
    return removed


def settle(placement, timeout=60, cib_file=None):
    """
    Wait until the live placement (``status()['resources']``) holds ``placement`` for
    every resource it names, polling ``crm_mon`` locally. Returns ``{settled, placement,
    waited}`` (seconds); ``settled`` is False when ``timeout`` passed first.

    placement
        ``{rsc: node or [nodes]}`` as ``shift_away`` returns it under ``placement``.
    timeout
        Seconds to wait at most (default 60).
    cib_file
        Read this CIB file instead of the live cluster.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.settle '{p_IP: bob}' timeout=30
    """
    start = time.monotonic()
    while True:
        now = status(cib_file)["resources"]
        if all(now.get(rsc) == where for rsc, where in placement.items()):
            return {"settled": True, "placement": now, "waited": time.monotonic() - start}
        if time.monotonic() - start > float(timeout):
            return {"settled": False, "placement": now, "waited": time.monotonic() - start}
        time.sleep(0.2)


def fence_history(node):
    """
    The fencer's history of ``node`` (``stonith_admin --history --verbose``: without
    ``--verbose`` it hides failed and pending attempts), pending attempts
    first, then by completion, oldest first: ``[{action, status, reason, by, for,
    completed}]``; ``status`` is ``success``,
    ``failed`` or ``pending``. Read on a live cluster node.

    node
        The node whose fencing to read.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.fence_history alice
    """
    if not salt.utils.path.which("stonith_admin"):
        raise CommandExecutionError(
            "pacemaker: 'stonith_admin' is missing (install pacemaker-cli-utils)"
        )
    argv = ["stonith_admin", "--history", node, "--verbose", "--output-as=xml"]
    root = ET.fromstring(_run(argv, ok_codes=(0, 1))["stdout"])
    events = [
        {
            "action": ev.get("action"),
            "status": ev.get("status"),
            "reason": ev.get("exit-reason") or ev.get("extended-status"),
            "by": ev.get("delegate") or ev.get("origin"),
            "for": ev.get("client"),
            "completed": ev.get("completed"),
        }
        for ev in root.iter("fence_event")
        if ev.get("target") == node
    ]
    return sorted(events, key=lambda e: (e["status"] != "pending", e["completed"] or ""))


# --------------------------------------------------------------------------- cluster-wide locks


def _lock_xml(name, values):
    set_id = cib.LOCK_PREFIX + name
    el = ET.Element("cluster_property_set", {"id": set_id})
    for key, value in sorted(values.items()):
        ET.SubElement(el, "nvpair", {"id": f"{set_id}-{key}", "name": key, "value": str(value)})
    return ET.tostring(el, encoding="unicode")


def _lock_read(name, cib_file):
    set_el = cib.parse(cib_xml(cib_file)).find(
        f"configuration/crm_config/cluster_property_set[@id='{cib.LOCK_PREFIX}{name}']"
    )
    if set_el is None:
        return None
    return {nv.get("name"): nv.get("value") for nv in set_el.findall("nvpair")}


def lock_read(name, cib_file=None):
    """
    The cluster-wide lock ``name`` as the CIB holds it: ``{holder, value, renewed}``, or
    None when nobody holds it (one ``cibadmin`` query of the ``crm_config`` section).

    name
        The lock's id, e.g. ``incident-alice``.
    cib_file
        Read this CIB file instead of the live cluster's CIB.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.lock_read incident-alice
    """
    with _locked(cib_file, exclusive=False):
        text = _run(["cibadmin", "--query", "--scope", "crm_config"], cib_file)["stdout"]
    set_el = ET.fromstring(text).find(f"cluster_property_set[@id='{cib.LOCK_PREFIX}{name}']")
    if set_el is None:
        return None
    held = {nv.get("name"): nv.get("value") for nv in set_el.findall("nvpair")}
    return {
        "holder": held.get("holder"),
        "value": held.get("value"),
        "renewed": int(held.get("renewed") or 0),
    }


def lock(name, holder, value="", lease=300, cib_file=None):
    """
    Take the cluster-wide lock ``name``, kept in the CIB (a ``cluster_property_set``
    with the id ``hastack-lock-<name>``; Pacemaker ignores its names, and it is no part
    of the configuration ``pacemaker.configured`` manages): whoever reaches a node of the cluster (every
    master of a multi-master setup) sees the same lock, and the CIB manager creates an
    element atomically, so exactly one of concurrent takers gets it. A lock held by
    another holder is taken over only when it was not renewed for ``lease`` seconds.
    Returns ``{acquired, holder, value, renewed}`` (the holder and value in the CIB
    after the call).

    name
        The lock's id (letters, digits, ``-``, ``_``).
    holder
        Who takes it, e.g. the master's id.
    value
        What it holds, e.g. an incident id.
    lease
        Seconds after its last renewal that another holder may take the lock over.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.lock incident-alice master1 value=alice-20261130T2000-1a2b3c
    """
    if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", str(name)):
        raise SaltInvocationError(f"name: not a lock id: {name!r}")
    now = int(time.time())
    mine = {"holder": holder, "value": value, "renewed": now}
    with _locked(cib_file):
        res = _run(
            ["cibadmin", "--create", "--scope", "crm_config", "--xml-text", _lock_xml(name, mine)],
            cib_file,
            ok_codes=(0, RC_EXISTS, RC_EXISTS_OLD),
        )
    if res["retcode"] == 0:
        return dict(mine, acquired=True)
    held = _lock_read(name, cib_file) or {}
    stale = now - int(held.get("renewed") or 0) > float(lease)
    if held.get("holder") != holder and not stale:
        return {
            "acquired": False,
            "holder": held.get("holder"),
            "value": held.get("value"),
            "renewed": int(held.get("renewed") or 0),
        }

    def renew(root):
        set_id = cib.LOCK_PREFIX + name
        set_el = root.find(f"configuration/crm_config/cluster_property_set[@id='{set_id}']")
        current = {nv.get("name"): nv for nv in set_el.findall("nvpair")}
        if current.get("holder") is not None and current["holder"].get("value") != held.get(
            "holder"
        ):
            raise CommandExecutionError(f"lock {name}: taken by someone else meanwhile")
        for key, val in mine.items():
            if key in current:
                current[key].set("value", str(val))
            else:
                ET.SubElement(
                    set_el, "nvpair", {"id": f"{set_id}-{key}", "name": key, "value": str(val)}
                )
        return root

    try:
        _write_edit(renew, cib_file)
    except CommandExecutionError:
        held = _lock_read(name, cib_file) or {}
        return {
            "acquired": False,
            "holder": held.get("holder"),
            "value": held.get("value"),
            "renewed": int(held.get("renewed") or 0),
        }
    return dict(mine, acquired=True)


def unlock(name, holder, cib_file=None):
    """
    Release the lock ``name`` if ``holder`` holds it. Returns True when it was released,
    False when it was not held, or held by another holder (then it stays).

    name
        The lock's id.
    holder
        Who releases it.
    cib_file
        Work on this CIB file instead of the live cluster's CIB.

    CLI Example:

    .. code-block:: bash

        salt '*' pacemaker.unlock incident-alice master1
    """
    held = _lock_read(name, cib_file)
    if not held or held.get("holder") != holder:
        return False

    def drop(root):
        parent = root.find("configuration/crm_config")
        for set_el in parent.findall(f"cluster_property_set[@id='{cib.LOCK_PREFIX}{name}']"):
            holder_el = set_el.find("nvpair[@name='holder']")
            if holder_el is None or holder_el.get("value") != holder:
                raise CommandExecutionError(f"lock {name}: taken by someone else meanwhile")
            parent.remove(set_el)
        return root

    try:
        _write_edit(drop, cib_file)
    except CommandExecutionError:
        return False
    return True

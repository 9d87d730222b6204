"""
The CIB mapping: Pacemaker's XML configuration read into the plain shape of the
``hastack:pacemaker`` pillar, declarations checked and put in canonical form, and
declared changes applied to the parsed XML in place, so that whatever is not
declared stays as it was. Also reads placements (crm_mon and crm_simulate XML) and
the failover's own constraint names. No command runs here: ``_modules/pacemaker.py``
runs Pacemaker's tools and hands their XML to these functions.

A bad declaration is a ``SaltInvocationError`` naming the pillar key; a CIB that
cannot be read or edited as declared is a ``CommandExecutionError``.
"""

import re
import xml.etree.ElementTree as ET

from salt.exceptions import CommandExecutionError, SaltInvocationError

SECTIONS = (
    "properties",
    "resource_defaults",
    "operation_defaults",
    "primitives",
    "groups",
    "clones",
    "locations",
    "colocations",
    "orders",
    "alerts",
)


NVPAIR_SECTIONS = {  # section: (configuration child, block tag, id of a new block)
    "properties": ("crm_config", "cluster_property_set", "cib-bootstrap-options"),
    "resource_defaults": ("rsc_defaults", "meta_attributes", "rsc-options"),
    "operation_defaults": ("op_defaults", "meta_attributes", "op-options"),
}
# The id prefix of the cluster_property_sets that hold hastack's cluster-wide locks
# (pacemaker.lock): Pacemaker ignores their names; the mapping leaves them out.
LOCK_PREFIX = "hastack-lock-"
# Sections of items with ids (not name/value pairs): what remove_undeclared removes from.
ITEM_SECTIONS = tuple(section for section in SECTIONS if section not in NVPAIR_SECTIONS)


CONSTRAINT_TAGS = {
    "locations": "rsc_location",
    "colocations": "rsc_colocation",
    "orders": "rsc_order",
}


# Properties Pacemaker keeps for itself; nobody declares them.
OWN_PROPERTIES = (
    "dc-version",
    "cluster-infrastructure",
    "cluster-name",
    "have-watchdog",
    "last-lrm-refresh",
)


ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


AGENT_RE = re.compile(
    r"^(ocf:[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+|(lsb|systemd|service|stonith):[A-Za-z0-9_.@-]+)$"
)


SCORE_RE = re.compile(r"^([+-]?(INFINITY|inf|\d+))$")


ORDER_KINDS = ("Mandatory", "Optional", "Serialize")


ROLES = ("Started", "Stopped", "Promoted", "Unpromoted", "Master", "Slave")


ACTIONS = ("start", "stop", "promote", "demote")


RULE_CHILDREN = ("rule", "expression", "date_expression", "rsc_expression", "op_expression")


ALERT_SELECT = ("nodes", "fencing", "resources", "attributes")


RESOURCE_TAGS = ("primitive", "group", "clone", "master", "bundle")


# Items hastack's failover and the operators' own tools own: remove_undeclared keeps them.
SHIFT_PREFIX = "lo_hastack_shift_"


CLI_PREFIXES = ("cli-prefer-", "cli-ban-")


def parse(cib_text):
    """The CIB as an element tree, comments kept (an operator's notes survive writes)."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    try:
        return ET.fromstring(cib_text, parser=parser)
    except ET.ParseError as err:
        raise CommandExecutionError(f"unreadable CIB: {err}") from err


def _text(value):
    """A pillar value as Pacemaker writes it (YAML booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key(attr):
    return attr.replace("-", "_")


def _attr(key):
    return key.replace("_", "-")


def _role(role):
    """Pacemaker 2.1 names for the roles (Master/Slave are the old spellings)."""
    return {"Master": "Promoted", "Slave": "Unpromoted"}.get(role, role)


class _Ids:
    """The ids in use in a CIB; hands out new unique ones."""

    def __init__(self, root):
        self.used = {el.get("id") for el in root.iter() if el.get("id")}

    def new(self, base):
        base = re.sub(r"[^A-Za-z0-9_.:-]", "_", base)
        if not re.match(r"^[A-Za-z_]", base):
            base = f"_{base}"
        candidate, n = base, 1
        while candidate in self.used:
            candidate, n = f"{base}-{n}", n + 1
        self.used.add(candidate)
        return candidate


def _plain_blocks(parent, tag):
    """The attribute blocks that apply always (no rule): the ones a declaration edits.
    hastack's own locks (``pacemaker.lock``) are not configuration."""
    return [
        b
        for b in parent.findall(tag)
        if b.find("rule") is None and not (b.get("id") or "").startswith(LOCK_PREFIX)
    ]


def _nvpairs(parent, tag):
    out = {}
    for block in _plain_blocks(parent, tag) if parent is not None else []:
        for nv in block.findall("nvpair"):
            if nv.get("name") is not None:
                out.setdefault(nv.get("name"), nv.get("value"))
    return out


def _set_nvpairs(parent, tag, block_id, values, ids, remove=()):
    """Set ``values`` in ``parent``'s ``tag`` blocks: an existing nvpair keeps its id and
    block, a new one goes to the first block without a rule. Nothing else is touched."""
    blocks = _plain_blocks(parent, tag)
    found = {}
    for block in blocks:
        for nv in block.findall("nvpair"):
            found.setdefault(nv.get("name"), nv)
    for name, value in values.items():
        value = _text(value)
        nv = found.get(name)
        if nv is not None:
            if nv.get("value") != value:
                nv.set("value", value)
            continue
        if not blocks:
            blocks.append(ET.SubElement(parent, tag, id=ids.new(block_id)))
        found[name] = ET.SubElement(
            blocks[0], "nvpair", id=ids.new(f"{blocks[0].get('id')}-{name}"), name=name, value=value
        )
    for name in remove:
        for block in blocks:
            for nv in block.findall("nvpair"):
                if nv.get("name") == name:
                    block.remove(nv)


def _op_data(op):
    data = {k: v for k, v in op.attrib.items() if k != "id"}
    params = _nvpairs(op, "instance_attributes")
    if params:
        data["params"] = params
    return data


def _op_key(op, taken):
    key = op.get("name") + (f"-{_role(op.get('role')).lower()}" if op.get("role") else "")
    if key in taken:
        key = f"{key}-{op.get('interval', '0')}"
    return key


def _primitive_data(prim):
    agent = ":".join(p for p in (prim.get("class"), prim.get("provider"), prim.get("type")) if p)
    ops = {}
    for op in prim.findall("operations/op"):
        ops[_op_key(op, ops)] = _op_data(op)
    data = {
        "agent": agent or None,
        "params": _nvpairs(prim, "instance_attributes"),
        "meta": _nvpairs(prim, "meta_attributes"),
        "ops": ops,
        "utilization": _nvpairs(prim, "utilization"),
    }
    if prim.get("template"):
        data["template"] = prim.get("template")
    return data


def _rule_data(el):
    """A rule (or expression) as data: its attributes but the id, nested rules and
    expressions under ``expressions``, a date_spec or duration under its tag."""
    data = {k: v for k, v in el.attrib.items() if k != "id"}
    children = []
    for child in el:
        if not isinstance(child.tag, str):
            continue
        if child.tag in RULE_CHILDREN:
            children.append({child.tag: _rule_data(child)})
        else:
            data[child.tag] = {k: v for k, v in child.attrib.items() if k != "id"}
    if children:
        data["expressions"] = children
    return data


def _set_data(rset):
    data = {_key(k): v for k, v in rset.attrib.items() if k != "id"}
    data["resources"] = [ref.get("id") for ref in rset.findall("resource_ref")]
    return data


def _constraint_data(el):
    data = {_key(k): v for k, v in el.attrib.items() if k != "id"}
    rules = [_rule_data(r) for r in el.findall("rule")]
    if rules:
        data["rules"] = rules
    sets = [_set_data(s) for s in el.findall("resource_set")]
    if sets:
        data["sets"] = sets
    return data


def _alert_data(alert):
    data = {
        "path": alert.get("path"),
        "meta": _nvpairs(alert, "meta_attributes"),
        "params": _nvpairs(alert, "instance_attributes"),
        "recipients": {
            r.get("id"): {
                "value": r.get("value"),
                "meta": _nvpairs(r, "meta_attributes"),
                "params": _nvpairs(r, "instance_attributes"),
            }
            for r in alert.findall("recipient")
        },
    }
    select = alert.find("select")
    if select is not None:
        data["select"] = [
            child.tag[len("select_") :]
            for child in select
            if isinstance(child.tag, str) and child.tag.startswith("select_")
        ]
    if alert.get("description") is not None:
        data["description"] = alert.get("description")
    return data


def read_configuration(root):
    """The plain shape of a parsed CIB (see the module docs), everything it holds."""
    conf = root.find("configuration")
    if conf is None:
        raise CommandExecutionError("unreadable CIB: it has no <configuration>")
    data = {name: {} for name in SECTIONS}
    for section, (child, tag, _) in NVPAIR_SECTIONS.items():
        data[section] = _nvpairs(conf.find(child), tag)
    for own in OWN_PROPERTIES:
        data["properties"].pop(own, None)
    resources = conf.find("resources")
    if resources is None:
        resources = ET.Element("resources")
    # A bundle's primitive belongs to the bundle, which hastack does not model.
    in_bundles = {p.get("id") for p in resources.findall("bundle/primitive")}
    for prim in resources.iter("primitive"):
        if prim.get("id") not in in_bundles:
            data["primitives"][prim.get("id")] = _primitive_data(prim)
    for group in resources.iter("group"):
        data["groups"][group.get("id")] = {
            "resources": [p.get("id") for p in group.findall("primitive")],
            "meta": _nvpairs(group, "meta_attributes"),
        }
    for tag in ("clone", "master"):
        for clone in resources.iter(tag):
            inner = [c for c in clone if c.tag in ("primitive", "group")]
            meta = _nvpairs(clone, "meta_attributes")
            if tag == "master":  # the pre-2.0 promotable clone
                meta.setdefault("promotable", "true")
            data["clones"][clone.get("id")] = {
                "rsc": inner[0].get("id") if inner else None,
                "meta": meta,
            }
    for section, tag in CONSTRAINT_TAGS.items():
        for el in conf.findall(f"constraints/{tag}"):
            data[section][el.get("id")] = _constraint_data(el)
    for alert in conf.findall("alerts/alert"):
        data["alerts"][alert.get("id")] = _alert_data(alert)
    data["resource_ids"] = sorted(
        {el.get("id") for tag in RESOURCE_TAGS for el in resources.iter(tag)}
    )
    data["epoch"] = int(root.get("epoch", 0))
    data["admin_epoch"] = int(root.get("admin_epoch", 0))
    return data


def _texts(mapping):
    return {str(k): _text(v) for k, v in (mapping or {}).items()}


def _norm_rule(data):
    out = {}
    for k, v in data.items():
        if k == "expressions":
            out[k] = [{tag: _norm_rule(body) for tag, body in child.items()} for child in v]
        elif isinstance(v, dict):
            out[k] = _texts(v)
        else:
            out[k] = _text(v)
    return out


def _norm_constraint(spec):
    out = {}
    for k, v in spec.items():
        if k == "rules":
            out[k] = [_norm_rule(rule) for rule in v]
        elif k == "sets":
            out[k] = [
                dict(
                    {sk: _text(sv) for sk, sv in s.items() if sk != "resources"},
                    resources=[str(r) for r in s["resources"]],
                )
                for s in v
            ]
        else:
            out[k] = _text(v)
    return out


def normalize(config):
    """A declaration in the canonical shape: strings everywhere, groups and clones as
    mappings, only what is declared (what is not declared is not managed)."""
    out = {section: {} for section in SECTIONS}
    for section in NVPAIR_SECTIONS:
        out[section] = _texts(config.get(section))
    for rid, spec in (config.get("primitives") or {}).items():
        prim = {"agent": str(spec["agent"])}
        for part in ("params", "meta", "utilization"):
            if spec.get(part):
                prim[part] = _texts(spec[part])
        if spec.get("ops"):
            prim["ops"] = {
                str(key): {
                    k: (_texts(v) if k == "params" else _text(v)) for k, v in (op or {}).items()
                }
                for key, op in spec["ops"].items()
            }
        out["primitives"][str(rid)] = prim
    for gid, spec in (config.get("groups") or {}).items():
        spec = spec if isinstance(spec, dict) else {"resources": spec}
        group = {"resources": [str(m) for m in spec["resources"]]}
        if spec.get("meta"):
            group["meta"] = _texts(spec["meta"])
        out["groups"][str(gid)] = group
    for cid, spec in (config.get("clones") or {}).items():
        spec = spec if isinstance(spec, dict) else {"rsc": spec}
        clone = {"rsc": str(spec["rsc"])}
        if spec.get("meta"):
            clone["meta"] = _texts(spec["meta"])
        out["clones"][str(cid)] = clone
    for section in CONSTRAINT_TAGS:
        for cid, spec in (config.get(section) or {}).items():
            out[section][str(cid)] = _norm_constraint(spec)
    for aid, spec in (config.get("alerts") or {}).items():
        alert = {"path": str(spec["path"])}
        for part in ("meta", "params"):
            if spec.get(part):
                alert[part] = _texts(spec[part])
        if "select" in spec:
            alert["select"] = [str(s) for s in spec["select"] or []]
        if spec.get("recipients"):
            alert["recipients"] = {
                str(rid): dict(
                    {"value": str(r["value"])},
                    **{p: _texts(r[p]) for p in ("meta", "params") if r.get(p)},
                )
                for rid, r in spec["recipients"].items()
            }
        out["alerts"][str(aid)] = alert
    return out


def _op_matcher(ops, declared):
    """For each declared op key, the op among ``ops`` (``(attrs, payload)`` pairs) it
    stands for: same name and role, the same interval when several ops are declared
    with that name and role (or when one has it), else the first of that name and role."""
    wanted = {}
    for key, spec in declared.items():
        ident = (spec.get("name", key), _role(spec.get("role")))
        wanted.setdefault(ident, []).append(key)
    out = {}
    for key, spec in declared.items():
        name, role = spec.get("name", key), _role(spec.get("role"))
        same = [p for p in ops if p[0].get("name") == name and _role(p[0].get("role")) == role]
        exact = [p for p in same if p[0].get("interval") == spec.get("interval")]
        if exact:
            out[key] = exact[0]
        elif same and len(wanted[(name, role)]) == 1:
            out[key] = same[0]
    return out


def view(current, want):
    """``current`` cut down to what ``want`` declares: the part of an item that is
    managed, to be compared with the declaration."""
    if not isinstance(want, dict):
        return current
    if not isinstance(current, dict):
        return None if current is None else current
    out = {}
    for key, wanted in want.items():
        if key == "ops":
            ops = [(attrs, attrs) for attrs in (current.get("ops") or {}).values()]
            matched = _op_matcher(ops, wanted)
            out[key] = {
                k: view(matched[k][1], spec) if k in matched else None for k, spec in wanted.items()
            }
        elif isinstance(wanted, dict):
            out[key] = view(current.get(key) or {}, wanted)
        else:
            out[key] = current.get(key)
    return out


def _fencing_ids(current):
    return {
        rid
        for rid, prim in current["primitives"].items()
        if str(prim.get("agent") or "").startswith("stonith:")
    }


def _kept(section, item_id, item, fencing):
    """Undeclared items that ``remove_undeclared`` leaves alone: the failover's shifts,
    the operators' own moves and bans (``crm_resource --move/--ban``), fencing devices
    (ids in ``fencing``) and the constraints that place them."""
    if section == "primitives":
        return item_id in fencing
    if section in CONSTRAINT_TAGS:
        if item_id.startswith(SHIFT_PREFIX) or item_id.startswith(CLI_PREFIXES):
            return True
        refs = {item.get(k) for k in ("rsc", "with_rsc", "first", "then")} - {None}
        refs |= {r for rset in item.get("sets") or [] for r in rset["resources"]}
        return bool(refs) and refs <= fencing
    return False


def diff(current, wanted, remove_undeclared=False):
    """``{"<section>:<id>": {old, new}}``: what a write of ``wanted`` changes."""
    changes = {}
    declared_primitives = set(wanted.get("primitives") or {})
    fencing = _fencing_ids(current)
    for section in SECTIONS:
        have, want = current.get(section) or {}, wanted.get(section) or {}
        for item_id in sorted(want):
            old = have.get(item_id)
            if section == "groups" and old is not None:
                # Undeclared primitives an operator put in a declared group stay there.
                old = dict(old, resources=[m for m in old["resources"] if m in declared_primitives])
            old = view(old, want[item_id])
            if old != want[item_id]:
                changes[f"{section}:{item_id}"] = {"old": old, "new": want[item_id]}
        if remove_undeclared:
            for item_id in sorted(set(have) - set(want)):
                if not _kept(section, item_id, have[item_id], fencing):
                    changes[f"{section}:{item_id}"] = {"old": have[item_id], "new": None}
    return changes


def _child(parent, tag):
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag)
    return el


def _find(conf, item_id):
    return conf.find(f".//*[@id='{item_id}']")


def _detach(conf, el):
    for parent in conf.iter():
        if el in list(parent):
            parent.remove(el)
            return parent
    return None


def _declared_as(conf, item_id, tags, what):
    el = _find(conf, item_id)
    if el is not None and el.tag not in tags:
        raise CommandExecutionError(
            f"'{item_id}' is a {el.tag} in the CIB, but it is declared as {what}: "
            "remove or rename one of them"
        )
    return el


def _apply_primitive(el, spec, ids):
    rid = el.get("id")
    parts = spec["agent"].split(":")
    attrs = {
        "class": parts[0],
        "provider": parts[1] if len(parts) == 3 else None,
        "type": parts[-1],
    }
    for name, value in attrs.items():
        if value is None:
            el.attrib.pop(name, None)
        elif el.get(name) != value:
            el.set(name, value)
    el.attrib.pop("template", None)
    for part, tag in (
        ("params", "instance_attributes"),
        ("meta", "meta_attributes"),
        ("utilization", "utilization"),
    ):
        if spec.get(part):
            _set_nvpairs(el, tag, f"{rid}-{tag}", spec[part], ids)
    if spec.get("ops"):
        ops_el = _child(el, "operations")
        existing = [(op.attrib, op) for op in ops_el.findall("op")]
        matched = _op_matcher(existing, spec["ops"])
        for key, op_spec in spec["ops"].items():
            name = op_spec.get("name", key)
            op = (
                matched[key][1]
                if key in matched
                else ET.SubElement(
                    ops_el,
                    "op",
                    id=ids.new(f"{rid}-{name}-interval-{op_spec.get('interval', '0s')}"),
                    name=name,
                    interval=op_spec.get("interval", "0s"),
                )
            )
            for attr, value in op_spec.items():
                if attr == "params":
                    _set_nvpairs(
                        op, "instance_attributes", f"{op.get('id')}-instance_attributes", value, ids
                    )
                elif op.get(attr) != value:
                    op.set(attr, value)


def _rule_xml(parent, tag, data, base, ids):
    el = ET.SubElement(parent, tag, id=ids.new(base))
    for key, value in data.items():
        if key == "expressions":
            for child in value:
                for ctag, body in child.items():
                    _rule_xml(el, ctag, body, f"{el.get('id')}-{ctag.split('_')[0]}", ids)
        elif isinstance(value, dict):
            ET.SubElement(el, key, dict(value, id=ids.new(f"{el.get('id')}-{key}")))
        else:
            el.set(key, value)
    return el


REFERENCE_ATTRS = (
    "rsc",
    "with-rsc",
    "first",
    "then",
    "rsc-role",
    "with-rsc-role",
    "first-action",
    "then-action",
)


def _apply_constraint(el, spec, ids):
    cid = el.get("id")
    for key, value in spec.items():
        if key not in ("rules", "sets") and el.get(_attr(key)) != value:
            el.set(_attr(key), value)
    if "rules" in spec:
        for attr in ("node", "score"):
            el.attrib.pop(attr, None)
        if [_rule_data(r) for r in el.findall("rule")] != spec["rules"]:
            for rule in el.findall("rule"):
                el.remove(rule)
            for rule in spec["rules"]:
                _rule_xml(el, "rule", rule, f"{cid}-rule", ids)
    elif "node" in spec:
        for rule in el.findall("rule"):
            el.remove(rule)
    if "sets" in spec:
        for attr in REFERENCE_ATTRS:
            el.attrib.pop(attr, None)
        if [_set_data(s) for s in el.findall("resource_set")] != spec["sets"]:
            for rset in el.findall("resource_set"):
                el.remove(rset)
            for rset in spec["sets"]:
                set_el = ET.SubElement(el, "resource_set", id=ids.new(f"{cid}-set"))
                for key, value in rset.items():
                    if key != "resources":
                        set_el.set(_attr(key), value)
                for ref in rset["resources"]:
                    ET.SubElement(set_el, "resource_ref", id=ref)
    elif any(k in spec for k in ("rsc", "with_rsc", "first", "then")):
        for rset in el.findall("resource_set"):
            el.remove(rset)


def _alert_part(parent, conf, item_id, tag, attr, spec, ids):
    """An alert or recipient: found or created, its one valued attribute (``path``,
    ``value``) and its meta/params set."""
    el = _declared_as(conf, item_id, (tag,), f"an alert {tag}" if tag != "alert" else "an alert")
    if el is None:
        el = ET.SubElement(parent, tag, {"id": item_id, attr: spec[attr]})
    elif el.get(attr) != spec[attr]:
        el.set(attr, spec[attr])
    for part, block in (("meta", "meta_attributes"), ("params", "instance_attributes")):
        if spec.get(part):
            _set_nvpairs(el, block, f"{item_id}-{block}", spec[part], ids)
    return el


def _apply_alert(conf, aid, spec, ids):
    el = _alert_part(_child(conf, "alerts"), conf, aid, "alert", "path", spec, ids)
    if "select" in spec and _alert_data(el).get("select") != spec["select"]:
        for old in el.findall("select"):
            el.remove(old)
        if spec["select"]:
            select = ET.Element("select")
            for kind in spec["select"]:
                ET.SubElement(select, f"select_{kind}")
            recipients = [i for i, c in enumerate(el) if c.tag == "recipient"]
            el.insert(recipients[0] if recipients else len(el), select)
    for rid, rspec in (spec.get("recipients") or {}).items():
        _alert_part(el, conf, rid, "recipient", "value", rspec, ids)


def _apply_resources(conf, wanted, ids):
    resources = _child(conf, "resources")
    declared_primitives = set(wanted["primitives"])
    for rid, spec in wanted["primitives"].items():
        el = _declared_as(conf, rid, ("primitive",), "a primitive")
        if el is None:
            el = ET.SubElement(resources, "primitive", id=rid)
        _apply_primitive(el, spec, ids)
    for gid, spec in wanted["groups"].items():
        el = _declared_as(conf, gid, ("group",), "a group")
        if el is None:
            el = ET.SubElement(resources, "group", id=gid)
        members = [c for c in el if c.tag == "primitive"]
        if [m.get("id") for m in members if m.get("id") in declared_primitives] != spec[
            "resources"
        ]:
            for member in members:
                el.remove(member)
            for rid in spec["resources"]:
                member = next((m for m in members if m.get("id") == rid), None)
                if member is None:
                    member = _find(conf, rid)
                    _detach(conf, member)
                el.append(member)
            for member in members:
                if member.get("id") in spec["resources"]:
                    continue
                # A declared primitive this group no longer lists goes where it is declared
                # (top level unless another group or a clone takes it); an operator's own
                # primitive stays in the group.
                (resources if member.get("id") in declared_primitives else el).append(member)
        if spec.get("meta"):
            _set_nvpairs(el, "meta_attributes", f"{gid}-meta_attributes", spec["meta"], ids)
    for cid, spec in wanted["clones"].items():
        el = _declared_as(conf, cid, ("clone", "master"), "a clone")
        if el is None:
            el = ET.SubElement(resources, "clone", id=cid)
        inner = [c for c in el if c.tag in ("primitive", "group")]
        if [c.get("id") for c in inner] != [spec["rsc"]]:
            for child in inner:
                el.remove(child)
                resources.append(child)
            child = _find(conf, spec["rsc"])
            _detach(conf, child)
            el.append(child)
        meta = dict(spec.get("meta") or {})
        if el.tag == "master":  # promotable by its tag
            meta.pop("promotable", None)
        if meta:
            _set_nvpairs(el, "meta_attributes", f"{cid}-meta_attributes", meta, ids)


def _remove_items(conf, item_ids, keep):
    """Remove items by id; what they hold that is declared (``keep``) moves to the top
    level of ``<resources>`` instead of going with them."""
    resources = _child(conf, "resources")
    for item_id in item_ids:
        el = _find(conf, item_id)
        if el is None:
            continue
        for child in list(el):
            if child.get("id") in keep and child.tag in ("primitive", "group"):
                el.remove(child)
                resources.append(child)
        _detach(conf, el)


def _drop_empty_containers(conf):
    """A group or clone that a move left without resources is not valid: it goes."""
    changed = True
    while changed:
        changed = False
        for el in list(conf.iter()):
            if el.tag in ("group", "clone", "master") and not [
                c for c in el if c.tag in ("primitive", "group")
            ]:
                _detach(conf, el)
                changed = True


def apply(root, wanted, remove_undeclared=False, remove=()):
    """Edit the parsed CIB ``root`` in place so that ``wanted`` (canonical) holds; with
    ``remove_undeclared`` remove what the declared sections do not name; remove the
    items in ``remove``. Nothing else changes."""
    wanted = {section: wanted.get(section) or {} for section in SECTIONS}
    conf = root.find("configuration")
    current = read_configuration(root)
    ids = _Ids(root)
    for section, (child, tag, block_id) in NVPAIR_SECTIONS.items():
        drop = (
            [n for n in current[section] if n not in wanted[section]] if remove_undeclared else []
        )
        if wanted[section] or drop:
            _set_nvpairs(_child(conf, child), tag, block_id, wanted[section], ids, remove=drop)
    if wanted["primitives"] or wanted["groups"] or wanted["clones"]:
        _apply_resources(conf, wanted, ids)
    for section, tag in CONSTRAINT_TAGS.items():
        for cid, spec in wanted[section].items():
            el = _declared_as(conf, cid, (tag,), f"a {tag}")
            if el is None:
                el = ET.SubElement(_child(conf, "constraints"), tag, id=cid)
            _apply_constraint(el, spec, ids)
    for aid, spec in wanted["alerts"].items():
        _apply_alert(conf, aid, spec, ids)
    doomed = list(remove)
    if remove_undeclared:
        fencing = _fencing_ids(current)
        for section in ITEM_SECTIONS:
            doomed += [
                item_id
                for item_id, item in current[section].items()
                if item_id not in wanted[section] and not _kept(section, item_id, item, fencing)
            ]
    keep = set(wanted["primitives"]) | set(wanted["groups"])
    _remove_items(conf, doomed, keep)
    _drop_empty_containers(conf)
    return root


def candidate(cib_text, config, remove_undeclared=False):
    """The CIB text with ``config`` (canonical) applied."""
    root = apply(parse(cib_text), config, remove_undeclared)
    return ET.tostring(root, encoding="unicode")


ACTIVE_ROLES = ("Started", "Promoted", "Unpromoted", "Master", "Slave")


def placement_tree(resources):
    """``{id: {nodes, promoted, cloned}}`` from a ``<resources>`` status element
    (crm_mon, crm_simulate): a group or clone lists the nodes of what it holds."""
    tree = {}

    def entry(rid, cloned):
        return tree.setdefault(rid, {"nodes": [], "promoted": [], "cloned": cloned})

    def walk(el, owners, cloned):
        for child in el:
            rid = (child.get("id") or "").split(":")[0]
            if child.tag == "resource":
                running = (
                    [n.get("name") for n in child.findall("node")]
                    if child.get("role") in ACTIVE_ROLES
                    else []
                )
                for target in [rid] + owners:
                    item = entry(target, cloned)
                    item["nodes"] += running
                    if _role(child.get("role")) == "Promoted":
                        item["promoted"] += running
            elif child.tag in ("group", "clone", "bundle"):
                inner_cloned = cloned or child.tag != "group"
                entry(rid, inner_cloned)
                walk(child, owners + [rid], inner_cloned)
            elif child.tag == "replica":
                walk(child, owners, cloned)

    if resources is not None:
        walk(resources, [], False)
    for item in tree.values():
        item["nodes"] = sorted(set(item["nodes"]))
        item["promoted"] = sorted(set(item["promoted"]))
    return tree


def flatten(tree):
    """``{id: node or None}``; what is cloned: the sorted list of its nodes."""
    return {
        rid: (
            item["nodes"]
            if item["cloned"]
            else (item["nodes"][0] if len(item["nodes"]) == 1 else (item["nodes"] or None))
        )
        for rid, item in tree.items()
    }


def health_problems(crm_mon, resources=(), quorum=None):
    """What is wrong with a cluster, from ``crm_mon --output-as=xml`` (the parsed root):
    no quorum (``quorum`` overrides what the DC says, for a CIB file without one), each
    node out of service (offline, unclean, standby, maintenance), each failed action
    (``<failures>``), and each of ``resources`` not running anywhere. ``[]``: healthy."""
    problems = []
    dc = crm_mon.find("summary/current_dc")
    if quorum is None:
        quorum = dc is not None and dc.get("with_quorum") == "true"
    if not quorum:
        problems.append("no quorum")
    # A node out of service already counts against what the cluster tolerates.
    for node in crm_mon.findall("nodes/node"):
        name = node.get("name")
        if node.get("unclean") == "true":
            problems.append(f"node {name} is unclean")
        elif node.get("online") != "true":
            problems.append(f"node {name} is offline")
        elif node.get("standby") == "true":
            problems.append(f"node {name} is in standby")
        elif node.get("maintenance") == "true":
            problems.append(f"node {name} is in maintenance")
    for failure in crm_mon.findall("failures/failure"):
        reason = failure.get("exitreason") or failure.get("exitstatus") or "failed"
        problems.append(
            f"failed action {failure.get('op_key')} on {failure.get('node')}: {reason} "
            f"(rc {failure.get('exitcode')})"
        )
    placement = flatten(placement_tree(crm_mon.find("resources")))
    for rid in resources:
        if not placement.get(rid):
            problems.append(f"resource {rid} is not started")
    return problems


def simulated_tree(result):
    status = result.find("revised_cluster_status")
    if status is None:
        status = result.find("cluster_status")
    return placement_tree(status.find("resources"))


def allocation_scores(result):
    """``{resource: {node: score}}`` as Pacemaker weighed each node when it placed the
    resource (the first assignment step that names it: a group's, a clone's, a
    primitive's own)."""
    scores, step = {}, {}
    for weight in result.iter("node_weight"):
        rid, function = weight.get("id"), weight.get("function")
        if step.setdefault(rid, function) == function:
            scores.setdefault(rid, {})[weight.get("node")] = weight.get("score")
    return scores


def _need(cond, key, message):
    if not cond:
        raise SaltInvocationError(f"{key}: {message}")


def _check_score(value, key):
    _need(
        value is not None and SCORE_RE.match(str(value)),
        key,
        f"not a score (an integer or [+-]INFINITY): {value!r}",
    )


def _check_mapping(value, key, what="a mapping"):
    _need(isinstance(value, dict), key, f"must be {what}")
    for name, item in value.items():
        _need(not isinstance(item, (dict, list)), f"{key}:{name}", "must be a plain value")


def _check_rule(rule, key, top=True):
    _need(isinstance(rule, dict), key, "a rule: a mapping with score and expressions")
    if top:
        _need(
            "score" in rule or "score-attribute" in rule,
            key,
            "a location rule needs a score (or score-attribute)",
        )
    if "score" in rule:
        _check_score(rule["score"], f"{key}:score")
    if "boolean-op" in rule:
        _need(rule["boolean-op"] in ("and", "or"), f"{key}:boolean-op", "and or or")
    expressions = rule.get("expressions")
    _need(
        isinstance(expressions, list) and expressions,
        f"{key}:expressions",
        "a list of expressions, e.g. [{expression: {attribute: '#uname', operation: eq, value: alice}}]",
    )
    for i, child in enumerate(expressions):
        ckey = f"{key}:expressions:{i}"
        _need(
            isinstance(child, dict) and len(child) == 1 and next(iter(child)) in RULE_CHILDREN,
            ckey,
            f"one of {', '.join(RULE_CHILDREN)} with its attributes",
        )
        tag, body = next(iter(child.items()))
        if tag == "rule":
            _check_rule(body, f"{ckey}:rule", top=False)
        else:
            _need(isinstance(body, dict), f"{ckey}:{tag}", "a mapping of attributes")


def _check_sets(sets, key, resources):
    _need(isinstance(sets, list) and sets, f"{key}:sets", "a list of resource sets")
    for i, rset in enumerate(sets):
        skey = f"{key}:sets:{i}"
        _need(isinstance(rset, dict), skey, "a mapping with resources")
        unknown = set(rset) - {
            "resources",
            "sequential",
            "require_all",
            "role",
            "action",
            "ordering",
            "score",
            "kind",
        }
        _need(not unknown, skey, f"unknown setting(s): {', '.join(sorted(unknown))}")
        members = rset.get("resources")
        _need(isinstance(members, list) and members, f"{skey}:resources", "a list of resources")
        for member in members:
            _need(member in resources, f"{skey}:resources", f"unknown resource {member!r}")
        for flag in ("sequential", "require_all"):
            if flag in rset:
                _need(_text(rset[flag]) in ("true", "false"), f"{skey}:{flag}", "true or false")
        if "role" in rset:
            _need(rset["role"] in ROLES, f"{skey}:role", f"one of {', '.join(ROLES)}")
        if "action" in rset:
            _need(rset["action"] in ACTIONS, f"{skey}:action", f"one of {', '.join(ACTIONS)}")


def _check_constraint(spec, key, pair, extras, resources):
    """A constraint is either the ``pair`` of resources (with ``extras``) or ``sets``."""
    _need(isinstance(spec, dict), key, "must be a mapping")
    unknown = set(spec) - set(pair) - set(extras) - {"sets"}
    _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
    if "sets" in spec:
        _need(not set(pair) & set(spec), key, f"either {' and '.join(pair)}, or sets; not both")
        _check_sets(spec["sets"], key, resources)
    else:
        for ref in pair:
            _need(spec.get(ref) in resources, f"{key}:{ref}", f"unknown resource {spec.get(ref)!r}")
    for role in ("role", "rsc_role", "with_rsc_role"):
        if role in spec:
            _need(spec[role] in ROLES, f"{key}:{role}", f"one of {', '.join(ROLES)}")
    for action in ("first_action", "then_action"):
        if action in spec:
            _need(spec[action] in ACTIONS, f"{key}:{action}", f"one of {', '.join(ACTIONS)}")
    if "score" in spec:
        _check_score(spec["score"], f"{key}:score")


def _container_spec(spec, key, inner, form):
    """What a group or clone holds: the plain form, or ``inner`` of ``{inner, meta}``."""
    if isinstance(spec, dict):
        _need(not set(spec) - {inner, "meta"}, key, form)
        _check_mapping(spec.get("meta") or {}, f"{key}:meta")
        return spec.get(inner)
    return spec


def _claim(members, member, owner, key, known, what):
    """``member`` goes into ``owner`` (a group or clone): known, and in nothing else."""
    _need(known, key, f"'{member}' is not {what} here")
    _need(member not in members, key, f"'{member}' is already in {members.get(member)}")
    members[member] = owner


def validate(config, nodes, base="hastack:pacemaker"):
    """A declaration (the plain shape) checked against ``nodes`` and put in canonical
    form; every error names the pillar key under ``base``."""
    _need(isinstance(config, dict), base, "must be a mapping")
    _need(isinstance(nodes, list) and nodes, f"{base}:nodes", "a list of the cluster's node names")
    unknown = set(config) - set(SECTIONS)
    _need(not unknown, base, f"unknown section(s): {', '.join(sorted(map(str, unknown)))}")
    for section in NVPAIR_SECTIONS:
        _check_mapping(
            config.get(section) or {}, f"{base}:{section}", "a mapping of names to values"
        )
    seen = {}
    for section in SECTIONS:
        if section in NVPAIR_SECTIONS:
            continue
        items = config.get(section) or {}
        _need(isinstance(items, dict), f"{base}:{section}", "must be a mapping of id to settings")
        for item_id in items:
            key = f"{base}:{section}:{item_id}"
            _need(ID_RE.match(str(item_id)), key, "not a valid XML id")
            _need(
                item_id not in seen,
                key,
                f"id '{item_id}' is already used in {base}:{seen.get(item_id)}",
            )
            seen[item_id] = section
    primitives = config.get("primitives") or {}
    for rid, spec in primitives.items():
        key = f"{base}:primitives:{rid}"
        _need(isinstance(spec, dict), key, "must be a mapping")
        unknown = set(spec) - {"agent", "params", "meta", "ops", "utilization"}
        _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        _need(
            isinstance(spec.get("agent"), str) and AGENT_RE.match(spec["agent"]),
            f"{key}:agent",
            f"not an agent like 'ocf:heartbeat:IPaddr2': {spec.get('agent')!r}",
        )
        for part in ("params", "meta", "utilization"):
            _check_mapping(spec.get(part) or {}, f"{key}:{part}")
        ops = spec.get("ops") or {}
        _need(isinstance(ops, dict), f"{key}:ops", "a mapping of operation name to its settings")
        for op_key, op in ops.items():
            _need(isinstance(op or {}, dict), f"{key}:ops:{op_key}", "a mapping of settings")
            if "role" in (op or {}):
                _need(op["role"] in ROLES, f"{key}:ops:{op_key}:role", f"one of {', '.join(ROLES)}")
    groups, clones = config.get("groups") or {}, config.get("clones") or {}
    members = {}
    for gid, group in groups.items():
        key = f"{base}:groups:{gid}"
        group = _container_spec(
            group, key, "resources", "a list of primitives, or {resources, meta}"
        )
        _need(isinstance(group, list) and group, key, "a list of primitives")
        for member in group:
            _claim(members, member, gid, key, member in primitives, "a primitive")
    for cid, clone in clones.items():
        key = f"{base}:clones:{cid}"
        clone = _container_spec(clone, key, "rsc", "a primitive or group, or {rsc, meta}")
        _claim(
            members, clone, cid, key, clone in primitives or clone in groups, "a primitive or group"
        )
    resources = set(primitives) | set(groups) | set(clones)
    for lid, loc in (config.get("locations") or {}).items():
        key = f"{base}:locations:{lid}"
        _check_constraint(
            loc, key, ("rsc",), ("node", "score", "role", "resource_discovery", "rules"), resources
        )
        _need("sets" not in loc, f"{key}:sets", "not supported in locations: name one rsc")
        if "rules" in loc:
            _need(
                "node" not in loc and "score" not in loc,
                key,
                "either node and score, or rules (each with its score); not both",
            )
            _need(
                isinstance(loc["rules"], list) and loc["rules"], f"{key}:rules", "a list of rules"
            )
            for i, rule in enumerate(loc["rules"]):
                _check_rule(rule, f"{key}:rules:{i}")
        else:
            _need(
                loc.get("node") in nodes,
                f"{key}:node",
                f"unknown node {loc.get('node')!r} (nodes: {', '.join(nodes)})",
            )
            _check_score(loc.get("score"), f"{key}:score")
        if "resource_discovery" in loc:
            _need(
                loc["resource_discovery"] in ("always", "never", "exclusive"),
                f"{key}:resource_discovery",
                "always, never or exclusive",
            )
    for cid, col in (config.get("colocations") or {}).items():
        key = f"{base}:colocations:{cid}"
        _check_constraint(
            col,
            key,
            ("rsc", "with_rsc"),
            ("score", "rsc_role", "with_rsc_role", "node_attribute", "influence"),
            resources,
        )
        _check_score(col.get("score"), f"{key}:score")
    for oid, order in (config.get("orders") or {}).items():
        key = f"{base}:orders:{oid}"
        _check_constraint(
            order,
            key,
            ("first", "then"),
            ("kind", "score", "first_action", "then_action", "symmetrical", "require_all"),
            resources,
        )
        if "kind" in order:
            _need(order["kind"] in ORDER_KINDS, f"{key}:kind", f"one of {', '.join(ORDER_KINDS)}")
    for aid, alert in (config.get("alerts") or {}).items():
        key = f"{base}:alerts:{aid}"
        _need(isinstance(alert, dict), key, "must be a mapping")
        unknown = set(alert) - {"path", "meta", "params", "select", "recipients"}
        _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        _need(
            isinstance(alert.get("path"), str) and alert["path"].startswith("/"),
            f"{key}:path",
            "the alert agent's absolute path",
        )
        for part in ("meta", "params"):
            _check_mapping(alert.get(part) or {}, f"{key}:{part}")
        select = alert.get("select") or []
        _need(
            isinstance(select, list) and not set(select) - set(ALERT_SELECT),
            f"{key}:select",
            f"a list among {', '.join(ALERT_SELECT)}",
        )
        recipients = alert.get("recipients") or {}
        _need(isinstance(recipients, dict), f"{key}:recipients", "a mapping of id to {value}")
        for rid, rcpt in recipients.items():
            rkey = f"{key}:recipients:{rid}"
            _need(ID_RE.match(str(rid)), rkey, "not a valid XML id")
            _need(rid not in seen, rkey, f"id '{rid}' is already used in {base}:{seen.get(rid)}")
            seen[rid] = f"alerts:{aid}:recipients"
            _need(isinstance(rcpt, dict) and rcpt.get("value"), f"{rkey}:value", "required")
            for part in ("meta", "params"):
                _check_mapping(rcpt.get(part) or {}, f"{rkey}:{part}")
    return normalize(config)


def cib_nodes(cib_text):
    """``{node name: in standby}`` for the nodes the CIB knows (``<nodes>``)."""
    root = ET.fromstring(cib_text)
    return {
        n.get("uname"): _nvpairs(n, "instance_attributes").get("standby")
        in ("on", "true", "1", "yes")
        for n in root.findall("configuration/nodes/node")
        if n.get("uname")
    }


def shift_id(rsc, node, role=None):
    suffix = f"_{_role(role).lower()}" if role and _role(role) != "Started" else ""
    return f"{SHIFT_PREFIX}{rsc}_from_{node}{suffix}"


def _score_value(score):
    text = str(score).lstrip("+")
    if text in ("INFINITY", "inf"):
        return 1000000
    if text in ("-INFINITY", "-inf"):
        return -1000000
    return max(-1000000, min(1000000, int(text)))


def _preference(loc, node):
    """``(score, role)`` with which location ``loc`` draws its resources to ``node``, or
    None: ``node=`` with a positive score, or a rule with a positive score that holds on
    ``node`` by name (``#uname eq node``: how ``crm_resource --move --lifetime`` and
    ``pcs constraint location ... rule`` say it)."""
    if loc.get("node") == node and loc.get("score") is not None:
        return (loc["score"], loc.get("role")) if _score_value(loc["score"]) > 0 else None
    for rule in loc.get("rules") or []:
        if rule.get("boolean-op", "and") != "and" or "score" not in rule:
            continue
        if _score_value(rule["score"]) <= 0:
            continue
        for child in rule.get("expressions") or []:
            body = child.get("expression") or {}
            if (body.get("attribute"), body.get("operation"), body.get("value")) == (
                "#uname",
                "eq",
                node,
            ):
                return rule["score"], rule.get("role") or loc.get("role")
    return None


def lineage(conf, rsc):
    """``rsc`` and what holds it (its group, its clone)."""
    line = [rsc]
    for gid, group in conf["groups"].items():
        if rsc in group["resources"]:
            line.append(gid)
    for cid, clone in conf["clones"].items():
        if clone["rsc"] in line:
            line.append(cid)
    return line


def not_shiftable(conf, rsc):
    """Why ``rsc`` is left alone by a shift, in an operator's words, or None."""
    for rid in lineage(conf, rsc):
        item = (
            conf["primitives"].get(rid) or conf["groups"].get(rid) or conf["clones"].get(rid) or {}
        )
        meta = item.get("meta") or {}
        if str(meta.get("target-role", "")).lower() == "stopped":
            return f"stopped on purpose (target-role=Stopped on {rid})"
        if str(meta.get("is-managed", "true")).lower() in ("false", "no", "off", "0"):
            return f"not managed by Pacemaker (is-managed=false on {rid})"
    return None


def meant_to_run(cib_text):
    """The primitives of a CIB that should be running: all but those stopped on
    purpose or left unmanaged (``not_shiftable``)."""
    conf = read_configuration(parse(cib_text))
    return sorted(p for p in conf["primitives"] if not_shiftable(conf, p) is None)


def preferring(conf, node):
    """``{(rsc, role): score}`` for what prefers ``node`` (the failover's own shifts and
    bans aside); several preferences for one resource: the strongest."""
    out = {}
    for lid, loc in sorted(conf["locations"].items()):
        if lid.startswith(SHIFT_PREFIX) or lid.startswith("cli-ban-"):
            continue
        found = _preference(loc, node)
        if found is None:
            continue
        score, role = found
        rscs = (
            [loc["rsc"]]
            if loc.get("rsc")
            else [r for s in loc.get("sets") or [] for r in s["resources"]]
        )
        role = _role(role) if role and _role(role) != "Started" else None
        for rsc in rscs:
            key = (rsc, role)
            if key not in out or _score_value(score) > _score_value(out[key]):
                out[key] = score
    return out


def placement_of(tree, rsc, role):
    item = tree.get(rsc) or {"nodes": [], "promoted": []}
    return item["promoted"] if role == "Promoted" else item["nodes"]

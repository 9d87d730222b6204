"""Shared test helpers: load a hastack module straight from its file."""

import base64
import importlib.util
import json
import os
import struct
import subprocess

from saltfactories.utils.functional import MultiStateResult

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_module(kind, name):
    """Import ``_modules/<name>.py`` (or ``_states``) as a plain module for pure-logic tests."""
    path = os.path.join(REPO, kind, f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"hastack_{kind.strip('_')}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply(minion, test=False, **kwargs):
    """state.apply hastack; return (retcode, state return dict or error text)."""
    return minion.call("state.apply", "hastack", test=test, **kwargs)


def admin_ceph(facts, *args):
    """The real ceph CLI as client.admin on the lab cluster (JSON output)."""
    proc = subprocess.run(
        ["ceph", "-c", facts["conf"], *args, "-f", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def cluster_snapshot(facts):
    """Pools and entities (with caps and keys) of the lab cluster: to prove nothing changed."""
    pools = sorted(p["pool_name"] for p in admin_ceph(facts, "osd", "pool", "ls", "detail"))
    auth = {
        e["entity"]: (e["key"], e["caps"]) for e in admin_ceph(facts, "auth", "ls")["auth_dump"]
    }
    return pools, auth


def files_snapshot(path):
    """Every file under ``path`` with its bytes; the empty ``<cib>.lock`` files that
    pacemaker reads and writes take (no content, no setting) are left out."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            if name.endswith(".xml.lock"):
                continue
            with open(full, "rb") as fh:
                out[full] = fh.read()
    return out


def rbd(conf, user, *args, keyring=None):
    """The real rbd CLI as a client user, with only the files hastack wrote."""
    argv = ["rbd", "-c", conf, "--id", user, *args]
    if keyring:
        argv += ["--keyring", keyring]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --------------------------------------------------------------------------- Ceph apply facts

GLANCE_KEY = "AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ=="
CINDER_KEY = "AQAAAAAAAAAAABAARkFLRS1jaW5kZXIta2V5IQ=="


OUR_STATE_MODULES = ("ceph_client", "hastack", "libvirt_secret")


def states(state_ret):
    """{state id: salt-factories StateResult} of a state.apply return (a dict)."""
    assert isinstance(state_ret, dict), state_ret
    # Salt's "state function not found" returns carry no __id__: then the id is the
    # second part of the state's key.
    return {
        result.id or result.state_id.split("_|-")[1]: result
        for result in MultiStateResult(raw=state_ret)
    }


def our_changes(state_ret):
    """{state id: changes} of hastack's own states (Salt's file states word their test
    predictions differently from their real changes, so only their ids are compared)."""
    return {
        sid: result.changes
        for sid, result in states(state_ret).items()
        if result.state_id.startswith(tuple(f"{m}_|-" for m in OUR_STATE_MODULES))
        and result.changes
    }


def assert_all_ok(rc, ret):
    assert isinstance(ret, dict), ret
    failed = {k: v["comment"] for k, v in ret.items() if v["result"] is False}
    assert not failed
    assert rc == 0


def fake_key(text):
    secret = text.encode()
    assert len(secret) == 16
    return base64.b64encode(struct.pack("<HIIH", 1, 0, 0, 16) + secret).decode()


# --------------------------------------------------------------------------- CIB facts

CIB_ITEM_SECTIONS = (
    "primitives",
    "groups",
    "clones",
    "locations",
    "colocations",
    "orders",
    "alerts",
)
CIB_NVPAIR_OWNERS = {
    "crm_config": "properties",
    "rsc_defaults": "resource_defaults",
    "op_defaults": "operation_defaults",
}
CIB_PARTS = {
    "instance_attributes": "params",
    "meta_attributes": "meta",
    "utilization": "utilization",
}


def cib_elements(cib_text):
    """``{token: (element, parent token, ancestors)}`` for a CIB's configuration; a token
    is ``tag#id``, or for an element without id its parent's token and its tag."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    out = {}

    def walk(el, parent, chain):
        token = f"{el.tag}#{el.get('id')}" if el.get("id") else f"{parent}/{el.tag}"
        out[token] = (el, parent, chain)
        for child in el:
            if isinstance(child.tag, str):
                walk(child, token, chain + [el])

    walk(ET.fromstring(cib_text).find("configuration"), "", [])
    return out


def cib_facts(elements):
    """Every fact the configuration states: where each element sits, each attribute."""
    facts = set()
    for token, (el, parent, _) in elements.items():
        facts.add((token, "<parent>", parent))
        facts.update((token, k, v) for k, v in el.attrib.items())
    return facts


def _role(role):
    return {"Master": "Promoted", "Slave": "Unpromoted"}.get(role, role)


def declared_fact(token, attr, elements, declared):
    """Whether a fact is one the declaration (canonical, as pacemaker.validate returns
    it) manages, so a write may change it."""
    el, _, chain = elements[token]
    items = {
        item_id: (section, spec)
        for section in CIB_ITEM_SECTIONS
        for item_id, spec in (declared.get(section) or {}).items()
    }
    lineage = chain + [el]
    owners = [(a, items[a.get("id")]) for a in lineage if a.get("id") in items]
    if el.tag == "nvpair" and len(chain) >= 2:
        block, owner = chain[-1], chain[-2]
        name = el.get("name")
        if owner.tag in CIB_NVPAIR_OWNERS:
            return name in (declared.get(CIB_NVPAIR_OWNERS[owner.tag]) or {})
        if owner.get("id") in items:
            spec = items[owner.get("id")][1]
            return name in (spec.get(CIB_PARTS.get(block.tag, "?")) or {})
        if owner.tag == "op":
            return bool(owners)  # an op parameter of a declared primitive's op
        if owner.tag == "recipient" and owners:
            rcpt = (owners[-1][1][1].get("recipients") or {}).get(owner.get("id")) or {}
            return name in (rcpt.get(CIB_PARTS.get(block.tag, "?")) or {})
        return False
    if el.get("id") in items:
        section, spec = items[el.get("id")]
        if attr in ("<parent>", "id"):  # where a declared item sits is declared
            return True
        if section == "primitives":
            return attr in ("class", "provider", "type", "template")
        if section == "alerts":
            return attr in ("path",)
        keys = {k.replace("_", "-") for k in spec}
        if "rules" in spec:
            keys |= {"node", "score"}
        if "sets" in spec:
            keys |= {
                "rsc",
                "with-rsc",
                "first",
                "then",
                "rsc-role",
                "with-rsc-role",
                "first-action",
                "then-action",
            }
        return attr in keys
    if not owners:
        return False
    owner_el, (section, spec) = owners[-1]
    if el.tag == "op" and section == "primitives":
        ops = spec.get("ops") or {}
        idents = {(op.get("name", key), _role(op.get("role"))): op for key, op in ops.items()}
        op = idents.get((el.get("name"), _role(el.get("role"))))
        return op is not None and (attr in op or attr in ("<parent>", "id", "name"))
    if section in ("locations", "colocations", "orders"):
        return True  # a declared constraint's form (node, rules or sets) is declared
    if section == "alerts" and el.tag == "recipient":
        return el.get("id") in (spec.get("recipients") or {})
    if section == "alerts" and el.tag.startswith("select"):
        return "select" in spec
    # A new attribute block or <operations> of a declared item.
    return el.tag in ("operations", *CIB_PARTS) and attr in ("<parent>", "id")


def undeclared_changes(before_text, after_text, declared):
    """The facts of the configuration that changed although the declaration does not
    manage them: ``(lost, added)``, both empty when a write was lossless."""
    before, after = cib_elements(before_text), cib_elements(after_text)
    old, new = cib_facts(before), cib_facts(after)
    lost = sorted(f for f in old - new if not declared_fact(f[0], f[1], before, declared))
    added = sorted(f for f in new - old if not declared_fact(f[0], f[1], after, declared))
    return lost, added

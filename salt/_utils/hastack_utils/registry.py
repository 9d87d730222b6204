"""
What hastack created on a node, so that the ``clean`` SLS can remove what the pillar no
longer names, and never what an operator made by hand: cephx users (per cluster),
keyring files, ``[client.<user>]`` sections (per ceph.conf) and libvirt secrets (per
URI). The record is a small JSON file in the minion's cache directory; the execution
modules add to it when they create something and take away when they remove it.
"""

KINDS = ("users", "keyrings", "conf_sections", "libvirt_secrets")


def empty():
    return {"users": {}, "keyrings": [], "conf_sections": {}, "libvirt_secrets": {}}


def add(record, kind, item, scope=None):
    """``record`` with ``item`` noted (under ``scope``: cluster, conf path or URI)."""
    return _change(record, kind, item, scope, True)


def forget(record, kind, item, scope=None):
    return _change(record, kind, item, scope, False)


def _change(record, kind, item, scope, present):
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    items = record[kind] if scope is None else record[kind].setdefault(scope, [])
    if present and item not in items:
        items.append(item)
        items.sort()
    elif not present and item in items:
        items.remove(item)
    if scope is not None and not items:
        record[kind].pop(scope)
    return record


def stale(record, tree):
    """What ``record`` holds that the validated pillar ``tree`` (``hastack.validate``)
    no longer names for this minion: ``{users: {cluster: [entity]}, keyrings: [path],
    conf_sections: {conf path: [section]}, libvirt_secrets: {uri: [uuid]}}``.

    Users are stale only where this minion is the cluster's admin minion; keyrings and
    sections are wanted for the users whose roles this minion has; libvirt secrets are
    wanted where the libvirt concern applies."""
    clusters = tree.get("clusters") or {}
    wanted_users = {
        name: {f"client.{user}" for user in cluster["users"]} for name, cluster in clusters.items()
    }
    wanted_keyrings = {
        cluster["users"][user]["keyring"]["path"]
        for cluster in clusters.values()
        for user in cluster["local_users"]
    }
    wanted_sections = {}
    for cluster in clusters.values():
        wanted_sections.setdefault(cluster["conf"], set()).update(
            f"client.{user}" for user in cluster["local_users"]
        )
    libvirt = tree.get("libvirt") or {}
    wanted_secrets = set(libvirt.get("secrets") or {}) if libvirt.get("applies") else set()
    admin_of = {name for name, cluster in clusters.items() if cluster["is_admin_minion"]}

    out = empty()
    for cluster, entities in record.get("users", {}).items():
        if cluster in admin_of:
            extra = sorted(set(entities) - wanted_users.get(cluster, set()))
            if extra:
                out["users"][cluster] = extra
    out["keyrings"] = sorted(set(record.get("keyrings", [])) - wanted_keyrings)
    for conf, sections in record.get("conf_sections", {}).items():
        extra = sorted(set(sections) - wanted_sections.get(conf, set()))
        if extra:
            out["conf_sections"][conf] = extra
    for uri, uuids in record.get("libvirt_secrets", {}).items():
        extra = sorted(set(uuids) - wanted_secrets)
        if extra:
            out["libvirt_secrets"][uri] = extra
    return out

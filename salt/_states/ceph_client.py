"""
Ceph client states: pools, cephx users, keyrings and ceph.conf, from pillar.

Every state compares each managed attribute with what it wants, reports
``changes`` as ``{attribute: {old, new}}``, changes nothing under ``test=True`` (and
then predicts exactly what a real run does), and re-reads after a change to verify it.
Keys are never shown: a key change is reported as ``{"key": {"old": "(hidden)",
"new": "(hidden)"}}``. Give keys as ``key_pillar`` (a pillar path) so that the key is
not part of the rendered SLS.

Connection arguments (``cluster``, ``conf_dir``, ``mon_host``, ``admin_keyring``,
``timeout``, ``backend``) are passed to the ``ceph_client`` execution module; see its docs.

.. code-block:: yaml

    hastack-ceph-user-glance:
      ceph_client.user_present:
        - name: client.glance
        - key_pillar: hastack:ceph:users:glance:key
        - caps:
            mon: profile rbd
            osd: profile rbd pool=images
"""

import os

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import cephx, loader, states

__virtualname__ = "ceph_client"

HIDDEN = "(hidden)"
CONN_ARGS = ("cluster", "conf_dir", "mon_host", "admin_keyring", "timeout", "backend")


def __virtual__():
    if "ceph_client.status" not in __salt__:
        # Say why (e.g. which package is missing), as the execution module does.
        return (False, loader.unavailable(__salt__, "ceph_client.status"))
    return __virtualname__


def _ret(name):
    return states.new_ret(name)


def _conn(kwargs):
    return {k: kwargs[k] for k in CONN_ARGS if kwargs.get(k) is not None}


def _finish(ret, changes, write, remaining, done_comment, same_comment):
    return states.converge(
        ret, changes, write, remaining, __opts__["test"], done_comment, same_comment
    )


def cluster_reachable(name, **kwargs):
    """
    Succeed when the cluster's monitors answer within ``timeout`` seconds; fail with a
    clear error otherwise. Require it from cluster states so an unreachable cluster
    stops them before anything changes.

    name
        The cluster name (used for the message).
    """
    ret = _ret(name)
    try:
        info = __salt__["ceph_client.status"](**_conn(kwargs))
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    ret["comment"] = (
        f"Ceph cluster {name} ({info['fsid']}) answers: {info['health']}, "
        f"{info['num_up_osds']}/{info['num_osds']} OSDs up"
    )
    return ret


def pool_present(name, pg_num=32, application="rbd", pillar_key=None, **kwargs):
    """
    Make sure a pool exists with its application enabled (``rbd pool init`` for rbd).
    A pool that already serves another application is refused, in test mode too:
    Ceph asks to confirm adding a second one, and taking one away may cut off its
    users, so that is left to a person.

    name
        The pool name.
    pg_num
        Placement groups: used when creating, and kept at this value afterwards unless
        the pool's PG autoscaler is on (then the autoscaler owns it).
    application
        The pool application (``rbd``, ``rgw``, ``cephfs``, ``nfs`` or ``mgr``).
    pillar_key
        Where the pool is declared (e.g. ``hastack:ceph:pools:images``), named in errors.
    """
    ret = _ret(name)
    conn = _conn(kwargs)
    where = f"{pillar_key}:application" if pillar_key else "application"
    try:
        pool = __salt__["ceph_client.pool_get"](name, **conn)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    others = [app for app in (pool or {}).get("applications", []) if app != application]
    if application and pool is not None and others and application not in pool["applications"]:
        ret["result"] = False
        ret["comment"] = (
            f"{where}: pool {name} serves {', '.join(others)}, not {application}; hastack does "
            f"not change a pool's application. Declare {others[0]} there, or, if nothing uses "
            f"the pool as {others[0]}, run 'ceph osd pool application disable {name} "
            f"{others[0]} --yes-i-really-mean-it' and apply again"
        )
        return ret

    def diff(pool):
        if pool is None:
            return {
                "pool": {"old": None, "new": name},
                "pg_num": {"old": None, "new": pg_num},
                "application": {"old": None, "new": application},
            }
        changes = {}
        if pool["autoscale_mode"] != "on" and pool["pg_num"] != pg_num:
            changes["pg_num"] = {"old": pool["pg_num"], "new": pg_num}
        if application and application not in pool["applications"]:
            changes["application"] = {"old": pool["applications"] or None, "new": application}
        return changes

    changes = diff(pool)

    def write():
        if pool is None:
            __salt__["ceph_client.pool_create"](
                name, pg_num=pg_num, application=application, **conn
            )
        else:
            if "pg_num" in changes:
                __salt__["ceph_client.pool_set"](name, "pg_num", pg_num, **conn)
            if "application" in changes:
                __salt__["ceph_client.pool_application_enable"](name, application, **conn)

    def remaining():
        # A pool that now exists counts as created even if its application failed.
        return set(diff(__salt__["ceph_client.pool_get"](name, refresh=True, **conn)))

    return _finish(
        ret,
        changes,
        write,
        remaining,
        f"Pool {name} {'created' if pool is None else 'updated'}",
        f"Pool {name} is as wanted",
    )


def user_present(name, caps=None, key=None, key_pillar=None, **kwargs):
    """
    Make the cluster hold exactly this key and these caps for a cephx user. A different
    key is a rotation: the cluster then refuses the old key.

    name
        ``client.glance`` or ``glance``.
    caps
        ``{mon: ..., osd: ..., mgr: ..., mds: ...}``; types not given are removed.
    key_pillar
        Pillar path of the key, e.g. ``hastack:ceph:users:glance:key`` (preferred).
    key
        The key itself, for callers that hold it in memory.
    """
    entity = name if "." in name else f"client.{name}"
    ret = _ret(entity)
    conn = _conn(kwargs)
    try:
        caps = cephx.parse_caps(caps or {}, where="caps")
        current = __salt__["ceph_client.entity_get"](entity, **conn)
        key_ok = __salt__["ceph_client.entity_key_matches"](
            entity, key=key, key_pillar=key_pillar, **conn
        )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret

    def diff(current, key_ok):
        if current is None:
            return {
                "entity": {"old": None, "new": entity},
                "key": {"old": None, "new": HIDDEN},
                "caps": {"old": None, "new": caps},
            }
        changes = {}
        if not key_ok:
            changes["key"] = {"old": HIDDEN, "new": HIDDEN}
        if cephx.caps_normalize(current["caps"]) != caps:
            changes["caps"] = {"old": current["caps"], "new": caps}
        return changes

    changes = diff(current, key_ok)

    def write():
        if "key" in changes:
            __salt__["ceph_client.entity_import"](
                entity, caps=caps, key=key, key_pillar=key_pillar, **conn
            )
        else:
            __salt__["ceph_client.entity_caps_set"](entity, caps, **conn)

    def remaining():
        return set(
            diff(
                __salt__["ceph_client.entity_get"](entity, refresh=True, **conn),
                __salt__["ceph_client.entity_key_matches"](
                    entity, key=key, key_pillar=key_pillar, **conn
                ),
            )
        )

    verb = "created" if current is None else ("rotated" if "key" in changes else "updated")
    return _finish(
        ret,
        changes,
        write,
        remaining,
        f"cephx user {entity} {verb}",
        f"cephx user {entity} holds the wanted key and caps",
    )


def user_absent(name, **kwargs):
    """
    Make sure a cephx user does not exist.

    name
        ``client.glance`` or ``glance``.
    """
    entity = name if "." in name else f"client.{name}"
    ret = _ret(entity)
    conn = _conn(kwargs)
    try:
        current = __salt__["ceph_client.entity_get"](entity, **conn)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    changes = {} if current is None else {"entity": {"old": entity, "new": None}}

    def write():
        __salt__["ceph_client.entity_delete"](entity, **conn)

    def remaining():
        gone = __salt__["ceph_client.entity_get"](entity, refresh=True, **conn) is None
        return [] if gone else ["entity"]

    return _finish(
        ret,
        changes,
        write,
        remaining,
        f"cephx user {entity} deleted",
        f"cephx user {entity} is absent",
    )


def keyring_present(
    name, entity, key=None, key_pillar=None, owner="root", group="root", mode="0600"
):
    """
    Make sure a keyring file holds the entity's key, with this owner, group and mode.
    Written atomically; never readable wider than ``mode``; ``changes`` never shows the key.

    name
        The keyring path, e.g. ``/etc/ceph/ceph.client.glance.keyring``.
    entity
        ``client.glance`` or ``glance``.
    key_pillar / key
        As for ``user_present``.
    owner, group
        The file's owner and group (default ``root``); both must exist on the minion.
    mode
        The file's mode as a string such as ``'0640'`` (default ``'0600'``); a mode that
        gives others any access is refused, since every local user could read the key.
    """
    entity = entity if "." in entity else f"client.{entity}"
    ret = _ret(name)
    try:
        mode = cephx.keyring_file_mode(mode)
        current = __salt__["ceph_client.keyring_info"](name, entity, key=key, key_pillar=key_pillar)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret
    wanted = {"owner": owner, "group": group, "mode": mode}

    def diff(current):
        if current is None:
            changes = {"key": {"old": None, "new": HIDDEN}}
            changes.update({k: {"old": None, "new": v} for k, v in wanted.items()})
            return changes
        changes = {}
        if not current.get("key_matches") or current["entities"] != [entity]:
            changes["key"] = {"old": HIDDEN if current["entities"] else None, "new": HIDDEN}
        for attr, value in wanted.items():
            if str(current[attr]) != str(value):
                changes[attr] = {"old": current[attr], "new": value}
        return changes

    changes = diff(current)

    def write():
        if "key" in changes:
            __salt__["ceph_client.keyring_write"](
                name, entity, key=key, key_pillar=key_pillar, owner=owner, group=group, mode=mode
            )
        else:
            __salt__["ceph_client.keyring_meta_set"](name, owner, group, mode)

    def remaining():
        return diff(
            __salt__["ceph_client.keyring_info"](name, entity, key=key, key_pillar=key_pillar)
        )

    return _finish(
        ret,
        changes,
        write,
        remaining,
        f"Keyring {name} {'written' if 'key' in changes else 'updated'}",
        f"Keyring {name} is as wanted",
    )


def conf_present(name, fsid, mon_host, clients=None, options=None):
    """
    Manage the lines hastack owns in a ceph.conf and keep every other line.

    name
        The path, e.g. ``/etc/ceph/ceph.conf``.
    fsid, mon_host
        Set in ``[global]``.
    clients
        ``{user: keyring path}``: a ``[client.<user>]`` section with ``keyring = <path>``
        for each.
    options
        ``{section: {option: value}}``: further options to set.
    """
    settings = {"global": {"fsid": fsid, "mon_host": mon_host}}
    for user, path in (clients or {}).items():
        settings.setdefault(f"client.{user}", {})["keyring"] = path
    for section, opts in (options or {}).items():
        settings.setdefault(section, {}).update(opts)
    ret = __states__["hastack.ini_present"](name, settings)
    if ret["result"] and not __opts__["test"]:
        # Noted for hastack.clean, which removes a section the pillar no longer names.
        for user in clients or {}:
            __salt__["hastack.managed_note"]("conf_sections", f"client.{user}", scope=name)
    return ret


def keyring_absent(name):
    """
    Make sure a keyring file does not exist (``hastack.clean`` uses it for the keyrings
    of users the pillar no longer names).

    name
        The keyring path.
    """
    ret = _ret(name)
    changes = {"keyring": {"old": name, "new": None}} if os.path.exists(name) else {}
    return _finish(
        ret,
        changes,
        write=lambda: __salt__["ceph_client.keyring_remove"](name),
        remaining=lambda: ["keyring"] if os.path.exists(name) else [],
        done_comment=f"Keyring {name} removed",
        same_comment=f"Keyring {name} is absent",
    )


def conf_sections_absent(name, sections):
    """
    Make sure a ceph.conf holds none of these sections; every other line stays.

    name
        The ceph.conf path.
    sections
        Section names, e.g. ``[client.glance]``.
    """
    ret = _ret(name)
    try:
        present = sorted(set(sections) & set(__salt__["hastack.ini_read"](name) or {}))
    except (CommandExecutionError, SaltInvocationError) as err:
        return states.failed(ret, err)
    changes = {f"[{section}]": {"old": "present", "new": None} for section in present}

    def write():
        __salt__["hastack.ini_remove_sections"](name, present)
        for section in present:
            __salt__["hastack.managed_note"]("conf_sections", section, scope=name, present=False)

    def remaining():
        left = set(present) & set(__salt__["hastack.ini_read"](name) or {})
        return [f"[{section}]" for section in left]

    return _finish(
        ret,
        changes,
        write,
        remaining,
        done_comment=f"{name}: {', '.join(present)} removed",
        same_comment=f"{name} holds none of {', '.join(sections)}",
    )


def fs_present(name, metadata_pool, data_pool, **kwargs):
    """
    Make sure a CephFS filesystem exists on these pools. A filesystem of that name on
    other pools is refused, in test mode too: moving a filesystem's pools is not a
    setting, and is left to a person.

    name
        The filesystem's name.
    metadata_pool, data_pool
        Its pools (declare them with ``pool_present``, application ``cephfs``).
    """
    ret = _ret(name)
    conn = _conn(kwargs)
    try:
        current = __salt__["ceph_client.fs_list"](**conn).get(name)
    except (CommandExecutionError, SaltInvocationError) as err:
        return states.failed(ret, err)
    if current is not None and (
        current["metadata_pool"] != metadata_pool or data_pool not in current["data_pools"]
    ):
        ret["result"] = False
        ret["comment"] = (
            f"CephFS {name} exists on pools {current['metadata_pool']} (metadata) and "
            f"{', '.join(current['data_pools'])} (data), not {metadata_pool} and {data_pool}; "
            "hastack does not move a filesystem"
        )
        return ret
    changes = {}
    if current is None:
        changes = {
            "filesystem": {"old": None, "new": name},
            "pools": {"old": None, "new": {"metadata": metadata_pool, "data": data_pool}},
        }
    return _finish(
        ret,
        changes,
        write=lambda: __salt__["ceph_client.fs_create"](name, metadata_pool, data_pool, **conn),
        remaining=lambda: [] if name in __salt__["ceph_client.fs_list"](**conn) else list(changes),
        done_comment=f"CephFS {name} created",
        same_comment=f"CephFS {name} is as wanted",
    )


def fs_dir_present(name, fs, **kwargs):
    """
    Make sure a directory exists in a CephFS filesystem, so that a client whose caps
    name it (``ceph fs authorize <fs> client.<user> <path> rw``) can mount it. Created
    ``0755`` and owned by root; the mounting minion sets its owner (see ``fs_mounted``).

    name
        The directory's absolute path in the filesystem, e.g. ``/nova``.
    fs
        The filesystem's name.
    """
    ret = _ret(f"{fs}:{name}")
    conn = _conn(kwargs)
    current = None
    try:
        # Under test a filesystem this run would create has no directories yet.
        if not __opts__["test"] or fs in __salt__["ceph_client.fs_list"](**conn):
            current = __salt__["ceph_client.fs_dir_info"](fs, name, **conn)
    except (CommandExecutionError, SaltInvocationError) as err:
        return states.failed(ret, err)
    changes = {} if current else {"directory": {"old": None, "new": f"{fs}:{name}"}}
    return _finish(
        ret,
        changes,
        write=lambda: __salt__["ceph_client.fs_dir_create"](fs, name, **conn),
        remaining=lambda: (
            [] if __salt__["ceph_client.fs_dir_info"](fs, name, **conn) else ["directory"]
        ),
        done_comment=f"{name} created in CephFS {fs}",
        same_comment=f"{name} exists in CephFS {fs}",
    )


def fs_mounted(
    name,
    fs,
    path,
    user,
    keyring,
    conf,
    fsid=None,
    client="fuse",
    owner="root",
    group="root",
    mode="0755",
    pillar_key=None,
    timeout=10,
):
    """
    Make sure a CephFS directory is mounted here, with this owner, group and mode at its
    root. A mount point that holds files is refused (they would vanish under the mount),
    and so is another mount there (another filesystem, path, user or cluster): hastack
    does not unmount what runs on it. Both are errors naming ``pillar_key``, with
    nothing changed.

    name
        The mount point; created (owned by root, 0755) if missing.
    fs
        The filesystem's name.
    path
        The directory in it, e.g. ``/nova``.
    user
        The cephx user that mounts it (``nova``, not ``client.nova``).
    keyring, conf
        The user's keyring and the cluster's ceph.conf (see ``keyring_present`` and
        ``conf_present``).
    fsid
        The cluster's fsid: a mount of another cluster is refused.
    client
        ``fuse`` (ceph-fuse, default) or ``kernel``.
    owner
        Of the mounted directory; set in the filesystem, so every node sees it. Owners
        are numbers in CephFS: give the service user the same uid everywhere.
    group
        Of the mounted directory, likewise.
    mode
        Of the mounted directory (default ``'0755'``).
    pillar_key
        Where the mount is declared, named in errors.
    timeout
        Seconds to wait for the cluster when mounting.
    """
    ret = _ret(name)
    where = pillar_key or name
    wanted = {"fs": fs, "path": path, "user": user, "client": client}
    try:
        mode = cephx.file_mode(mode, f"{where}:mode")
        current = __salt__["ceph_client.mount_info"](name)
    except (CommandExecutionError, SaltInvocationError) as err:
        return states.failed(ret, err)
    meta = {"owner": owner, "group": group, "mode": mode}
    if current is None:
        if os.path.isdir(name) and os.listdir(name):
            ret["result"] = False
            ret["comment"] = (
                f"{where}: mount point {name} is not empty: its files would be hidden under "
                "the mount; move them away (or into the CephFS directory) first"
            )
            return ret
        if os.path.exists(name) and not os.path.isdir(name):
            return states.failed(ret, f"{where}: {name} exists and is not a directory")
        # One change: what the mounted directory's owner is becomes known only once
        # mounted, and the mount is reported with the owner it ends with.
        changes = {"mount": {"old": None, "new": dict(wanted, **meta)}}
    else:
        held = {k: current.get(k) for k in wanted}
        if held != wanted or (fsid and current.get("fsid") not in (None, fsid)):
            found = ", ".join(f"{k}={v}" for k, v in sorted(held.items()))
            return states.failed(
                ret,
                f"{where}: {name} already holds another mount ({current['fstype']}: {found}, "
                f"fsid {current.get('fsid')}); hastack does not unmount it: unmount it by hand "
                "if nothing uses it",
            )
        changes = {k: {"old": current[k], "new": v} for k, v in meta.items() if current[k] != v}

    def write():
        if current is None:
            os.makedirs(name, exist_ok=True)
            __salt__["ceph_client.fs_mount"](
                name, fs, path, user, keyring, conf, client=client, timeout=timeout
            )
        held = __salt__["ceph_client.mount_info"](name) or {}
        if any(held.get(k) != v for k, v in meta.items()):
            __salt__["ceph_client.path_meta_set"](name, owner, group, mode)

    def remaining():
        held = __salt__["ceph_client.mount_info"](name)
        if held is None:
            return list(changes)
        left = [k for k, v in meta.items() if held.get(k) != v]
        return ["mount"] if "mount" in changes and left else left

    return _finish(
        ret,
        changes,
        write,
        remaining,
        f"{path} of CephFS {fs} {'mounted on' if current is None else 'updated at'} {name}",
        f"{path} of CephFS {fs} is mounted on {name} as wanted",
    )

"""
Ceph client configuration: pools, cephx entities, keyrings, ceph.conf and CephFS
(filesystems, their directories, and mounts with ceph-fuse or the kernel client).

This is the only hastack code that talks to Ceph. It sends monitor commands through
Ceph's own Python binding (``rados.Rados.mon_command``, one connection per run: about
half a millisecond a command) where the binding imports, else through the ``ceph`` and
``rbd`` command-line tools (about a quarter of a second a process), and edits keyring
and ceph.conf files.

Secrets: a cephx key never goes on a command line (it reaches ``ceph auth import``
through stdin), never appears in a log line, and no public function returns one.
Functions that need a key take ``key_pillar`` (a pillar path such as
``hastack:ceph:users:glance:key``) so that the key is not written into rendered
SLS, or ``key`` for in-process callers such as the ``ceph_client`` states.

Connection arguments accepted by every function that talks to the cluster (each
defaults to the ``hastack:ceph`` pillar key of the same name, then to the value shown):

cluster (``ceph``)
    The cluster name; ``<conf_dir>/<cluster>.conf`` is read if it exists.
conf_dir (``/etc/ceph``)
    Where ceph.conf and keyrings live.
mon_host (pillar ``hastack:ceph:mon_host``)
    Monitor addresses, passed with ``-m``, so the cluster is reachable before any
    ceph.conf exists.
admin_keyring (``<conf_dir>/<cluster>.client.admin.keyring``)
    The keyring of ``client.admin`` on the admin minion.
timeout (``10``)
    Seconds to wait for the monitors; an unreachable cluster is an error after this,
    never a hang.
backend (``auto``)
    ``librados`` (the rados and rbd bindings), ``cli`` (the ceph and rbd commands) or
    ``auto``: librados where the bindings import, else the CLI.

:depends: on the admin minion only: python3-rados and python3-rbd (Ceph's bindings),
    or ceph-common (the ``ceph`` and ``rbd`` commands), and python3-cephfs to create
    CephFS directories; keyrings and ceph.conf need no Ceph tool; a CephFS mount needs
    ceph-fuse (or ceph-common's ``mount.ceph`` for the kernel client).
"""

import contextlib
import errno
import grp
import logging
import os
import pwd
import re
import stat
import tempfile

import salt.utils.json
import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import cephx, schema, sites

try:
    import rados
    import rbd

    HAS_RADOS = True
except ImportError:  # Salt's onedir Python may not load the distribution's binding
    HAS_RADOS = False
try:
    import cephfs

    HAS_CEPHFS = True
except ImportError:
    HAS_CEPHFS = False

log = logging.getLogger(__name__)

__virtualname__ = "ceph_client"

DEFAULTS = {
    "cluster": "ceph",
    "conf_dir": "/etc/ceph",
    "timeout": 10,
    "backend": "auto",
}
BACKENDS = ("auto", "librados", "cli")


def __virtual__():
    # Loads on every minion: keyrings and ceph.conf need no Ceph tool (a compute has
    # only librbd); functions that talk to the cluster say what to install.
    return __virtualname__


# --------------------------------------------------------------------------- keys


def key_valid(key):
    """
    Tell whether ``key`` is a well-formed cephx key (base64 of an AES CryptoKey).

    key
        The key text, as ``ceph auth get-key`` or ``ceph-authtool --gen-print-key`` print it.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.key_valid AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ==
    """
    return cephx.key_valid(key)


def _resolve_key(key=None, key_pillar=None):
    if key_pillar:
        # Salt masks pillar leaves in pillar.get's output; this value stays in-process.
        key = __salt__["pillar.get"](key_pillar, None, unmask=True)
        if key is None:
            raise SaltInvocationError(f"{key_pillar}: no key in pillar")
        where = key_pillar
    else:
        where = "key"
    if key is None:
        raise SaltInvocationError("one of key or key_pillar is required")
    if cephx.decode_key(key) is None:
        raise SaltInvocationError(f"{where}: not a cephx key (base64 of a 28-byte AES key)")
    return key.strip()


# --------------------------------------------------------------------------- caps


def parse_caps(caps, pools=None, where="caps", pools_key="hastack:ceph:pools"):
    """
    Validate and normalize cephx caps; return ``{type: "grant, grant"}``. An error
    names ``where`` (the pillar key).

    caps
        ``{mon|osd|mgr|mds: grants}``, e.g. ``{osd: 'profile rbd pool=volumes, profile
        rbd-read-only pool=images'}``.

    pools
        A list of pool names: every ``pool=`` must name one of them (default: any pool).

    where
        The pillar key or argument an error names (default ``caps``).

    pools_key
        The pillar key that lists the pools, named when a pool is unknown.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.parse_caps '{"mon": "profile rbd", "osd": "profile rbd pool=images"}' '[images]'
    """
    return cephx.parse_caps(caps, pools=pools, where=where, pools_key=pools_key)


def caps_normalize(caps):
    """
    Normalize caps as the cluster holds them, for comparison with ``parse_caps`` output:
    white space folded, ``pool images`` written ``pool=images``. Never fails on caps it
    does not know (someone may have set them by hand).

    caps
        ``{type: grants}`` as ``ceph auth get`` shows them.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.caps_normalize '{"osd": "profile rbd  pool images"}'
    """
    return cephx.caps_normalize(caps)


# --------------------------------------------------------------------------- cluster access


def _conn(kwargs):
    """Resolve connection settings from arguments, then pillar (this minion's site's
    cluster when the pillar has sites), then defaults."""

    def pick(name, default=None):
        value = kwargs.get(name)
        if value is None:
            value = sites.configured(__salt__, __opts__.get("id"), f"ceph:{name}")
        return default if value is None else value

    cluster = pick("cluster", DEFAULTS["cluster"])
    conf_dir = pick("conf_dir", DEFAULTS["conf_dir"])
    conn = {
        "cluster": cluster,
        "conf_dir": conf_dir,
        "mon_host": pick("mon_host"),
        "admin_keyring": pick(
            "admin_keyring", os.path.join(conf_dir, f"{cluster}.client.admin.keyring")
        ),
        "timeout": int(pick("timeout", DEFAULTS["timeout"])),
        "backend": pick("backend", DEFAULTS["backend"]),
    }
    if conn["backend"] not in BACKENDS:
        raise SaltInvocationError(
            f"backend: '{conn['backend']}' is not one of {', '.join(BACKENDS)}"
        )
    if conn["backend"] == "librados" and not HAS_RADOS:
        raise CommandExecutionError(
            "backend librados: the rados and rbd Python bindings do not import here (install "
            "python3-rados and python3-rbd into the Python that runs Salt, or use backend cli)"
        )
    return conn


def _base_argv(tool, conn):
    argv = [tool, "--cluster", conn["cluster"], "-c", _conf_file(conn)]
    if conn["mon_host"]:
        argv += ["-m", conn["mon_host"]]
    argv += ["--id", "admin", "--keyring", conn["admin_keyring"]]
    if tool == "ceph":
        argv += ["--connect-timeout", str(conn["timeout"])]
    else:
        argv += [
            "--client-mount-timeout",
            str(conn["timeout"]),
            "--rados-mon-op-timeout",
            str(conn["timeout"]),
        ]
    return argv


def _run(tool, args, conn, stdin=None, json_out=True, ok_codes=(0,)):
    """Run a ceph tool; return (retcode, parsed stdout, stderr). Output is never logged."""
    if not salt.utils.path.which(tool):
        raise CommandExecutionError(
            f"the '{tool}' command is missing on this minion and Ceph's Python bindings do not "
            f"import (install python3-rados and python3-rbd, or ceph-common): one of them is "
            f"needed where hastack:ceph:admin_minion manages the cluster"
        )
    argv = _base_argv(tool, conn) + list(args)
    if json_out:
        argv += ["--format", "json"]
    log.debug("ceph_client: running %s", " ".join(argv))
    _need_admin_keyring(conn)
    res = __salt__["cmd.run_all"](
        argv,
        python_shell=False,
        stdin=stdin,
        output_loglevel="quiet",
        ignore_retcode=True,
        timeout=conn["timeout"] * 2 + 5,
        env={"CEPH_ARGS": ""},
        reset_system_locale=False,
    )
    rc, out, err = res["retcode"], res["stdout"], res["stderr"]
    if rc not in ok_codes:
        # The ceph CLI says "timed out"; Salt says "Timed out after N seconds" when it
        # kills a command at our deadline (stdout then holds only that message).
        if "timed out" in f"{err} {out}".lower():
            raise _unreachable(conn)
        raise CommandExecutionError(f"{tool} {' '.join(args)} failed (rc {rc}): {err.strip()}")
    if json_out and rc == 0 and out.strip():
        try:
            out = salt.utils.json.loads(out)
        except ValueError as err_:
            raise CommandExecutionError(f"{tool} {' '.join(args)}: unreadable JSON") from err_
    return rc, out, err


def _need_admin_keyring(conn):
    if not os.path.exists(conn["admin_keyring"]):
        raise CommandExecutionError(
            f"admin keyring {conn['admin_keyring']} does not exist "
            "(hastack:ceph:admin_keyring; cluster changes run on hastack:ceph:admin_minion)"
        )


def _conf_file(conn):
    """The cluster's ceph.conf when it exists, else /dev/null: the monitors are reached
    through mon_host before any ceph.conf is written."""
    conf = os.path.join(conn["conf_dir"], f"{conn['cluster']}.conf")
    return conf if os.path.exists(conf) else "/dev/null"


def _unreachable(conn):
    return CommandExecutionError(
        f"Ceph cluster '{conn['cluster']}' at mon_host {conn['mon_host']} did not answer "
        f"within {conn['timeout']} s (check hastack:ceph:mon_host and hastack:ceph:admin_keyring)"
    )


def _use_librados(conn):
    return conn["backend"] == "librados" or (conn["backend"] == "auto" and HAS_RADOS)


def _cluster(conn):
    """The run's librados connection as client.admin (one per cluster, in
    ``__context__``): about half a millisecond a command instead of a ceph process."""
    ckey = ("ceph_client.rados", conn["cluster"], conn["mon_host"], conn["admin_keyring"])
    if ckey in __context__:
        return __context__[ckey]
    _need_admin_keyring(conn)
    settings = {
        "keyring": conn["admin_keyring"],
        "client_mount_timeout": str(conn["timeout"]),
        "rados_mon_op_timeout": str(conn["timeout"]),
    }
    if conn["mon_host"]:
        settings["mon_host"] = conn["mon_host"]
    try:
        cluster = rados.Rados(
            conffile=_conf_file(conn),
            clustername=conn["cluster"],
            name="client.admin",
            conf=settings,
        )
        cluster.connect(timeout=conn["timeout"])
    except rados.TimedOut as err:
        raise _unreachable(conn) from err
    except rados.Error as err:
        raise CommandExecutionError(
            f"cannot connect to Ceph cluster '{conn['cluster']}' at mon_host {conn['mon_host']} "
            f"as client.admin: {err}"
        ) from err
    __context__[ckey] = cluster
    return cluster


def _ceph(conn, command, argv, inbuf=None, ok_codes=(0,), json_out=True):
    """One monitor command; return ``(rc, parsed JSON output or None)``.

    ``command`` is the command as the monitors take it (what the ``ceph`` CLI builds
    from ``argv``): through librados where the binding imports, else the CLI. A key in
    ``inbuf`` goes to the monitors in the request's payload, or on the CLI's stdin;
    never on a command line. Output is never logged.
    """
    if not _use_librados(conn):
        rc, out, _ = _run("ceph", argv, conn, stdin=inbuf, json_out=json_out, ok_codes=ok_codes)
        return rc, (out if json_out and rc == 0 else None)
    cmd = dict(command, **({"format": "json"} if json_out else {}))
    log.debug("ceph_client: librados mon_command %s", " ".join(argv))
    try:
        ret, outbuf, outs = _cluster(conn).mon_command(
            salt.utils.json.dumps(cmd), (inbuf or "").encode(), timeout=conn["timeout"]
        )
    except rados.TimedOut as err:
        raise _unreachable(conn) from err
    except rados.Error as err:
        raise CommandExecutionError(f"ceph {' '.join(argv)} failed: {err}") from err
    rc = -ret
    if rc not in ok_codes:
        if rc == errno.ETIMEDOUT:
            raise _unreachable(conn)
        raise CommandExecutionError(f"ceph {' '.join(argv)} failed (rc {rc}): {outs.strip()}")
    if json_out and rc == 0 and outbuf.strip():
        try:
            return rc, salt.utils.json.loads(outbuf)
        except ValueError as err:
            raise CommandExecutionError(f"ceph {' '.join(argv)}: unreadable JSON") from err
    return rc, None


def _rbd_pool_init(conn, pool, validate=True):
    """``rbd pool init``. ``validate=False`` skips librbd's check that the pool does not
    use pool snapshots, a write that waits for the pool's placement groups to become
    active: a pool created a moment ago has none, and the wait is most of its cost."""
    if not _use_librados(conn):
        _run("rbd", ["pool", "init", pool], conn, json_out=False)
        return
    cluster = _cluster(conn)
    try:
        cluster.conf_set("rbd_validate_pool", "true" if validate else "false")
        try:
            with cluster.open_ioctx(pool) as ioctx:
                rbd.RBD().pool_init(ioctx, False)
        finally:
            cluster.conf_set("rbd_validate_pool", "true")
    except rados.Error as err:
        raise CommandExecutionError(f"rbd pool init {pool} failed: {err}") from err


def _invalidate(conn, what):
    __context__.pop(f"ceph_client.{what}.{conn['cluster']}.{conn['mon_host']}", None)


def _cached(conn, what, reader):
    ckey = f"ceph_client.{what}.{conn['cluster']}.{conn['mon_host']}"
    if ckey not in __context__:
        __context__[ckey] = reader()
    return __context__[ckey]


def status(**kwargs):
    """
    Cluster status: fsid, health, monitor quorum and OSD counts.

    Raises a clear error within ``timeout`` seconds when the monitors do not answer.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.status
    """
    conn = _conn(kwargs)
    _, out = _ceph(conn, {"prefix": "status"}, ["status"])
    osdmap = out.get("osdmap", {})
    osdmap = osdmap.get("osdmap", osdmap)
    return {
        "fsid": out.get("fsid"),
        "health": out.get("health", {}).get("status"),
        "quorum": out.get("quorum_names", []),
        "num_osds": osdmap.get("num_osds"),
        "num_up_osds": osdmap.get("num_up_osds"),
    }


# --------------------------------------------------------------------------- pools


def pool_list(refresh=False, **kwargs):
    """
    Pools with the settings hastack manages: ``{name: {pg_num, applications,
    autoscale_mode, size}}``.

    refresh
        Read the cluster again instead of this run's cached answer (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.pool_list
    """
    conn = _conn(kwargs)
    if refresh:
        _invalidate(conn, "pools")

    def read():
        _, out = _ceph(
            conn, {"prefix": "osd pool ls", "detail": "detail"}, ["osd", "pool", "ls", "detail"]
        )
        return {
            p["pool_name"]: {
                "pg_num": p.get("pg_num"),
                "applications": sorted((p.get("application_metadata") or {}).keys()),
                "autoscale_mode": p.get("pg_autoscale_mode"),
                "size": p.get("size"),
            }
            for p in out or []
        }

    return dict(_cached(conn, "pools", read))


def pool_get(name, refresh=False, **kwargs):
    """
    One pool's settings, or ``None`` when it does not exist.

    name
        The pool name.

    refresh
        Read the cluster again instead of this run's cached answer (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.pool_get images
    """
    return pool_list(refresh=refresh, **kwargs).get(name)


def pool_create(name, pg_num=32, application=None, **kwargs):
    """
    Create a pool; with ``application=rbd`` also run ``rbd pool init``.

    name
        The pool name.

    pg_num
        Placement groups to create it with (default 32).

    application
        The application to enable on it (``rbd``, ``rgw``, ``cephfs``, ...); none by default.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.pool_create images pg_num=32 application=rbd
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    _ceph(
        conn,
        {"prefix": "osd pool create", "pool": name, "pg_num": int(pg_num)},
        ["osd", "pool", "create", name, str(int(pg_num))],
        json_out=False,
    )
    if application == "rbd":
        _rbd_pool_init(conn, name, validate=False)  # new: nothing to validate
    elif application:
        pool_application_enable(name, application, **kwargs)
    return True


def pool_application_enable(name, application, **kwargs):
    """
    Enable an application on a pool; ``rbd`` is done by ``rbd pool init``, which also
    prepares the pool for RBD images.

    name
        The pool name.

    application
        The application (``rbd``, ``rgw``, ``cephfs``, ...).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.pool_application_enable images rbd
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    if application == "rbd":
        _rbd_pool_init(conn, name)
    else:
        _ceph(
            conn,
            {"prefix": "osd pool application enable", "pool": name, "app": application},
            ["osd", "pool", "application", "enable", name, application],
            json_out=False,
        )
    return True


def pool_set(name, var, value, **kwargs):
    """
    Set one pool variable (``ceph osd pool set``).

    name
        The pool name.

    var
        The variable, e.g. ``pg_num`` or ``size``.

    value
        Its new value.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.pool_set images pg_num 64
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    _ceph(
        conn,
        {"prefix": "osd pool set", "pool": name, "var": var, "val": str(value)},
        ["osd", "pool", "set", name, var, str(value)],
        json_out=False,
    )
    return True


# --------------------------------------------------------------------------- cephx entities


def _entity_name(name):
    name = str(name)
    return name if "." in name else f"client.{name}"


def _auth_dump(conn, refresh=False):
    """All entities with their keys: for comparisons inside this process only."""
    if refresh:
        _invalidate(conn, "auth")

    def read():
        _, out = _ceph(conn, {"prefix": "auth ls"}, ["auth", "ls"])
        return {
            e["entity"]: {"key": e.get("key"), "caps": e.get("caps", {})}
            for e in (out or {}).get("auth_dump", [])
        }

    return _cached(conn, "auth", read)


def entity_list(**kwargs):
    """
    cephx entities and their caps (never their keys).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_list
    """
    conn = _conn(kwargs)
    return {name: {"caps": dict(e["caps"])} for name, e in _auth_dump(conn).items()}


def entity_get(name, refresh=False, **kwargs):
    """
    One cephx entity's caps, or ``None`` when it does not exist. The key is never
    returned.

    name
        ``client.glance`` or ``glance``.

    refresh
        Read the cluster again instead of this run's cached answer (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_get client.glance
    """
    conn = _conn(kwargs)
    entity = _auth_dump(conn, refresh=refresh).get(_entity_name(name))
    if entity is None:
        return None
    return {"entity": _entity_name(name), "caps": dict(entity["caps"])}


def entity_key_matches(name, key=None, key_pillar=None, refresh=False, **kwargs):
    """
    Tell whether the cluster holds exactly this key for the entity (``None`` if the
    entity does not exist). The key is compared in this process and never shown.

    name
        ``client.glance`` or ``glance``.

    key_pillar
        The pillar path of the key, e.g. ``hastack:ceph:users:glance:key`` (preferred:
        the key stays out of the command line and the job).

    key
        The key itself, for in-process callers.

    refresh
        Read the cluster again instead of this run's cached answer (default ``False``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_key_matches client.glance key_pillar=hastack:ceph:users:glance:key
    """
    conn = _conn(kwargs)
    key = _resolve_key(key, key_pillar)
    entity = _auth_dump(conn, refresh=refresh).get(_entity_name(name))
    if entity is None:
        return None
    return cephx.decode_key(entity["key"]) == cephx.decode_key(key)


def entity_import(name, caps=None, key=None, key_pillar=None, **kwargs):
    """
    Make the cluster hold exactly this key and these caps for the entity (create,
    rotate or re-cap in one step). The key never reaches a command line.

    name
        ``client.glance`` or ``glance``.

    caps
        ``{mon|osd|mgr|mds: grants}``; types not given are removed.

    key_pillar
        The pillar path of the key (preferred).

    key
        The key itself, for in-process callers.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_import client.glance '{"mon": "profile rbd"}' key_pillar=hastack:ceph:users:glance:key
    """
    conn = _conn(kwargs)
    key = _resolve_key(key, key_pillar)
    caps = parse_caps(caps)
    _invalidate(conn, "auth")
    _ceph(
        conn,
        {"prefix": "auth import"},
        ["auth", "import", "-i", "-"],
        inbuf=cephx.keyring_text(_entity_name(name), key, caps),
        json_out=False,
    )
    # Noted for hastack.clean, which removes it once the pillar no longer names it.
    __salt__["hastack.managed_note"]("users", _entity_name(name), scope=conn["cluster"])
    return True


def entity_caps_set(name, caps, **kwargs):
    """
    Replace an entity's caps, keeping its key (``ceph auth caps``).

    name
        ``client.glance`` or ``glance``.

    caps
        ``{mon|osd|mgr|mds: grants}``; types not given are removed.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_caps_set client.glance '{"mon": "profile rbd", "osd": "profile rbd pool=images"}'
    """
    conn = _conn(kwargs)
    caps = parse_caps(caps)
    pairs = [part for cap_type, text in sorted(caps.items()) for part in (cap_type, text)]
    _invalidate(conn, "auth")
    _ceph(
        conn,
        {"prefix": "auth caps", "entity": _entity_name(name), "caps": pairs},
        ["auth", "caps", _entity_name(name), *pairs],
        json_out=False,
    )
    return True


def entity_delete(name, **kwargs):
    """
    Delete a cephx entity; ``False`` when it did not exist.

    name
        ``client.glance`` or ``glance``.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.entity_delete client.glance
    """
    conn = _conn(kwargs)
    _invalidate(conn, "auth")
    rc, _ = _ceph(
        conn,
        {"prefix": "auth del", "entity": _entity_name(name)},
        ["auth", "del", _entity_name(name)],
        json_out=False,
        ok_codes=(0, errno.ENOENT),
    )
    __salt__["hastack.managed_note"](
        "users", _entity_name(name), scope=conn["cluster"], present=False
    )
    return rc == 0


# --------------------------------------------------------------------------- files


def keyring_mode(mode, where="mode"):
    """
    Normalize a file mode: ``'0640'``, ``'640'`` and YAML's unquoted ``0640`` (the
    integer 416) all give ``'0640'``; anything else is an error naming ``where``.

    mode
        The mode, as a string or as the integer YAML makes of an unquoted ``0640``.

    where
        The pillar key or argument an error names (default ``mode``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.keyring_mode 0640
    """
    return cephx.file_mode(mode, where)


def _file_meta(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return {"owner": owner, "group": group, "mode": f"{stat.S_IMODE(st.st_mode):04o}"}


def _atomic_write(path, text, uid, gid, mode):
    """Write via a private temp file in the same directory, then rename over ``path``."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".hastack-", dir=directory)  # created 0600
    try:
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def keyring_info(path, entity=None, key=None, key_pillar=None):
    """
    What a keyring file holds, without its keys: owner, group, mode, the entities in
    it, and (given ``entity`` and a key) whether it holds exactly that key for the
    entity. ``None`` when the file does not exist.

    path
        The keyring's path.

    entity
        ``client.glance`` or ``glance``: check its key (with ``key_pillar`` or ``key``).

    key_pillar
        The pillar path of the key to compare (preferred).

    key
        The key itself, for in-process callers.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.keyring_info /etc/ceph/ceph.client.glance.keyring client.glance key_pillar=hastack:ceph:users:glance:key
    """
    meta = _file_meta(path)
    if meta is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            keys = cephx.parse_keyring(fh.read())
    except (OSError, UnicodeDecodeError) as err:
        raise CommandExecutionError(f"cannot read keyring {path}: {err}") from err
    info = dict(meta, entities=sorted(keys))
    if entity is not None and (key is not None or key_pillar):
        wanted = _resolve_key(key, key_pillar)
        held = keys.get(_entity_name(entity))
        info["key_matches"] = held is not None and cephx.decode_key(held) == cephx.decode_key(
            wanted
        )
    return info


def keyring_write(path, entity, key=None, key_pillar=None, owner="root", group="root", mode="0600"):
    """
    Write a keyring for one entity, atomically, with the given owner, group and mode.
    The file never exists with a wider mode than asked, not even for a moment.

    path
        The keyring's path.

    entity
        ``client.glance`` or ``glance``.

    key_pillar
        The pillar path of the key (preferred).

    key
        The key itself, for in-process callers.

    owner, group
        The file's owner and group (default ``root``); they must exist on the minion.

    mode
        The file's mode (default ``'0600'``).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.keyring_write /etc/ceph/ceph.client.glance.keyring client.glance key_pillar=hastack:ceph:users:glance:key owner=glance group=glance mode=0640
    """
    key = _resolve_key(key, key_pillar)
    uid, gid = schema.user_id(owner), schema.group_id(group)
    mode = int(keyring_mode(mode), 8)
    try:
        _atomic_write(path, cephx.keyring_text(_entity_name(entity), key), uid, gid, mode)
    except OSError as err:
        raise CommandExecutionError(f"cannot write keyring {path}: {err}") from err
    __salt__["hastack.managed_note"]("keyrings", path)
    return True


def keyring_remove(path):
    """
    Remove a keyring file; ``False`` when it did not exist.

    path
        The keyring's path.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.keyring_remove /etc/ceph/ceph.client.glance.keyring
    """
    try:
        os.unlink(path)
        removed = True
    except FileNotFoundError:
        removed = False
    except OSError as err:
        raise CommandExecutionError(f"cannot remove keyring {path}: {err}") from err
    __salt__["hastack.managed_note"]("keyrings", path, present=False)
    return removed


def keyring_meta_set(path, owner, group, mode):
    """
    Set a keyring's owner, group and mode without rewriting it, so that at no moment
    anyone may read it whom neither the old nor the new setting allows.

    path
        The keyring's path.

    owner, group
        The file's new owner and group.

    mode
        The file's new mode, e.g. ``'0640'``.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.keyring_meta_set /etc/ceph/ceph.client.glance.keyring glance glance 0640
    """
    uid, gid = schema.user_id(owner), schema.group_id(group)
    wanted = int(keyring_mode(mode), 8)
    try:
        st = os.stat(path)
        current = stat.S_IMODE(st.st_mode)
        # Narrow first, then change hands, then widen: at every step the file is
        # readable only by whom both the old and the new setting allow.
        narrow = current & wanted
        if narrow != current:
            os.chmod(path, narrow)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(path, uid, gid)
        if wanted != narrow:
            os.chmod(path, wanted)
    except OSError as err:
        raise CommandExecutionError(f"cannot set owner/mode of {path}: {err}") from err
    return True


# --------------------------------------------------------------------------- CephFS

FUSE_FSTYPES = ("fuse.ceph-fuse", "fuse.ceph")
# ceph-fuse options as a mount.fuse.ceph line or a person may give them, by meaning.
_FUSE_OPTS = {
    "-n": "name",
    "--name": "name",
    "--id": "id",
    "-i": "id",
    "--user": "id",
    "-r": "path",
    "--client_mountpoint": "path",
    "--client-mountpoint": "path",
    "--client_fs": "fs",
    "--client-fs": "fs",
    "--client_mds_namespace": "fs",
    "--client-mds-namespace": "fs",
}


def fs_list(**kwargs):
    """
    CephFS filesystems of the cluster: ``{name: {metadata_pool, data_pools}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_list
    """
    conn = _conn(kwargs)
    _, out = _ceph(conn, {"prefix": "fs ls"}, ["fs", "ls"])
    return {
        fs["name"]: {"metadata_pool": fs.get("metadata_pool"), "data_pools": fs.get("data_pools")}
        for fs in out or []
    }


def fs_create(name, metadata_pool, data_pool, **kwargs):
    """
    Create a CephFS filesystem on two existing pools (``ceph fs new``). A metadata
    server of the cluster then takes it (the cluster's MDS daemons are not managed here).

    name
        The filesystem's name.

    metadata_pool, data_pool
        Its pools; both must exist, with application ``cephfs`` or none yet.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_create cephfs cephfs_metadata cephfs_data
    """
    conn = _conn(kwargs)
    _ceph(
        conn,
        {"prefix": "fs new", "fs_name": name, "metadata": metadata_pool, "data": data_pool},
        ["fs", "new", name, metadata_pool, data_pool],
        json_out=False,
    )
    return True


@contextlib.contextmanager
def _fs_session(conn, fs):
    """A libcephfs session on ``fs`` as client.admin, over the run's librados connection,
    closed on the way out: a session left open holds its capabilities on what it
    touched, and every other client blocks on those until the MDS evicts it (60 s)."""
    if not HAS_CEPHFS:
        raise CommandExecutionError(
            "the cephfs Python binding does not import here (install python3-cephfs into the "
            "Python that runs Salt): the admin minion needs it to create CephFS directories"
        )
    if not HAS_RADOS:
        raise CommandExecutionError(
            "the rados Python binding does not import here (install python3-rados)"
        )
    handle = cephfs.LibCephFS(rados_inst=_cluster(conn))
    try:
        handle.mount(filesystem_name=fs.encode())
    except cephfs.Error as err:
        handle.shutdown()
        raise CommandExecutionError(
            f"cannot open CephFS filesystem '{fs}' as client.admin: {err}"
        ) from err
    try:
        yield handle
    finally:
        handle.unmount()
        handle.shutdown()


def fs_dir_info(fs, path, **kwargs):
    """
    A directory in a CephFS filesystem: ``{mode, uid, gid}``, or ``None`` when it does
    not exist. Read as client.admin through libcephfs.

    fs
        The filesystem's name.

    path
        The directory's absolute path in the filesystem, e.g. ``/nova``.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_dir_info cephfs /nova
    """
    with _fs_session(_conn(kwargs), fs) as handle:
        try:
            st = handle.stat(path.encode())
        except cephfs.ObjectNotFound:
            return None
        except cephfs.Error as err:
            raise CommandExecutionError(f"cannot read {path} in CephFS '{fs}': {err}") from err
    if not stat.S_ISDIR(st.st_mode):
        raise CommandExecutionError(f"{path} in CephFS '{fs}' exists and is not a directory")
    return {"mode": f"{stat.S_IMODE(st.st_mode):04o}", "uid": st.st_uid, "gid": st.st_gid}


def fs_dir_create(fs, path, mode="0755", **kwargs):
    """
    Create a directory (and its parents) in a CephFS filesystem, as client.admin. A
    path that ``ceph fs authorize`` grants must exist before a client can mount it.

    fs
        The filesystem's name.

    path
        The directory's absolute path, e.g. ``/nova``.

    mode
        Its mode (default ``'0755'``); the owner is set by the mounting minion, which
        knows the service user.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_dir_create cephfs /nova
    """
    with _fs_session(_conn(kwargs), fs) as handle:
        try:
            handle.mkdirs(path.encode(), int(cephx.file_mode(mode), 8))
        except cephfs.Error as err:
            raise CommandExecutionError(f"cannot create {path} in CephFS '{fs}': {err}") from err
    return True


def _mds_ranks(conn, fs):
    """The ranks of ``fs`` that are in (each held by an MDS), from the monitors."""
    _, out = _ceph(conn, {"prefix": "fs get", "fs_name": fs}, ["fs", "get", fs])
    return sorted((out or {}).get("mdsmap", {}).get("in") or [])


def _mds_tell(conn, fs, rank, command, argv, handle=None, json_out=True):
    """One command to rank ``rank`` of ``fs``'s metadata servers (what ``ceph tell
    mds.<fs>:<rank> ARGV`` sends): through libcephfs ``handle`` when given, else the
    CLI. Returns the parsed JSON output (``json_out``) or None."""
    what = f"ceph tell mds.{fs}:{rank} {' '.join(argv)}"
    if handle is None:
        _, out, _ = _run("ceph", ["tell", f"mds.{fs}:{rank}", *argv], conn, json_out=json_out)
        return out if json_out else None
    cmd = dict(command, **({"format": "json"} if json_out else {}))
    try:
        ret, outbuf, outs = handle.mds_command(str(rank), salt.utils.json.dumps(cmd), b"")
    except cephfs.Error as err:
        raise CommandExecutionError(f"{what} failed: {err}") from err
    if ret != 0:
        raise CommandExecutionError(f"{what} failed (rc {-ret}): {outs.strip()}")
    if json_out and outbuf.strip():
        try:
            return salt.utils.json.loads(outbuf)
        except ValueError as err:
            raise CommandExecutionError(f"{what}: unreadable JSON") from err
    return None


def fs_evict(hostname, fs=None, **kwargs):
    """
    Evict every CephFS client session of a fenced machine, as client.admin: the
    sessions whose client reported ``hostname`` to the metadata servers, on each rank
    of ``fs`` (default: every filesystem of the cluster). What a dead client held
    (capabilities, locks) is released at once; otherwise every other client that
    touches it blocks until the MDS drops the session (``session_timeout``, 60 s).
    The MDS blocklists an evicted client; a fenced machine mounts anew when it is
    back. Returns ``{fs: [{id, entity, root}]}`` for the sessions evicted; a second
    call finds none.

    hostname
        The machine's host name as its clients report it (``client_metadata.hostname``
        in ``ceph tell mds.<fs>:0 session ls``).

    fs
        One filesystem's name.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_evict compute3
        salt '*' ceph_client.fs_evict compute3 fs=cephfs
    """
    if not hostname or not isinstance(hostname, str):
        raise SaltInvocationError("hostname: the fenced machine's host name is required")
    conn = _conn(kwargs)
    names = [fs] if fs else sorted(fs_list(**kwargs))
    evicted = {}
    for name in names:
        ranks = _mds_ranks(conn, name)
        if not ranks:
            continue
        with contextlib.ExitStack() as stack:
            # libcephfs where the bindings import, else the CLI (one process a command).
            handle = (
                stack.enter_context(_fs_session(conn, name))
                if _use_librados(conn) and HAS_CEPHFS
                else None
            )
            for rank in ranks:
                sessions = _mds_tell(
                    conn, name, rank, {"prefix": "session ls"}, ["session", "ls"], handle
                )
                found = evicted.setdefault(name, [])
                for session in sessions or []:
                    meta = session.get("client_metadata") or {}
                    sid = session["id"]
                    # Another rank may still list one evicted through the first.
                    if meta.get("hostname") != hostname or sid in {e["id"] for e in found}:
                        continue
                    _mds_tell(
                        conn,
                        name,
                        rank,
                        {"prefix": "client evict", "filters": [f"id={sid}"]},
                        ["client", "evict", f"id={sid}"],
                        handle,
                        json_out=False,
                    )
                    log.info(
                        "ceph_client: evicted %s's CephFS session %s from %s", hostname, sid, name
                    )
                    found.append(
                        {
                            "id": sid,
                            "entity": f"client.{meta.get('entity_id', '?')}",
                            "root": meta.get("root"),
                        }
                    )
    return {name: found for name, found in evicted.items() if found}


def _unescape_mountinfo(text):
    # /proc/self/mountinfo writes space, tab, newline and backslash as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _mount_entry(mountpoint):
    """The top mount at ``mountpoint`` in this mount namespace: ``(fstype, source,
    super options)``, or ``None``."""
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and _unescape_mountinfo(fields[4]) == mountpoint:
                fstype, source, superopts = (right.split() + ["", "", ""])[:3]
                found = (fstype, _unescape_mountinfo(source), superopts)
    return found


def _fuse_process_args(mountpoint):
    """What the ceph-fuse serving ``mountpoint`` in this mount namespace was told:
    ``{name, path, fs, conf}`` (unknown ones left out)."""
    my_ns = os.readlink("/proc/self/ns/mnt")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
            if not argv or os.path.basename(argv[0]) != "ceph-fuse":
                continue
            if os.readlink(f"/proc/{pid}/ns/mnt") != my_ns:
                continue
        except OSError:
            continue  # gone meanwhile, or not ours to read
        found, positional = {}, []
        i = 1
        while i < len(argv):
            arg = argv[i]
            opt, eq, value = arg.partition("=")
            if opt in _FUSE_OPTS or arg in ("-c", "--conf"):
                what = _FUSE_OPTS.get(opt, "conf")
                if not eq:
                    i += 1
                    value = argv[i] if i < len(argv) else ""
                found[what] = value
            elif not arg.startswith("-"):
                positional.append(arg)
            i += 1
        if any(os.path.abspath(p) == mountpoint for p in positional):
            if "id" in found and "name" not in found:
                found["name"] = f"client.{found['id']}"
            found.pop("id", None)
            return found
    return {}


def mount_info(mountpoint):
    """
    What is mounted at ``mountpoint`` in this minion's mount namespace, or ``None``:
    ``{client, fstype, fsid, fs, path, user, owner, group, mode}``. ``client`` is
    ``fuse`` (ceph-fuse), ``kernel`` (the kernel's ceph client) or ``other``; the
    CephFS details come from the cluster's own virtual attributes (``fsid``), from the
    ceph-fuse process serving it, or from the kernel mount's source and options.

    mountpoint
        The absolute path of the mount point.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.mount_info /var/lib/nova/instances
    """
    mountpoint = os.path.realpath(mountpoint)
    entry = _mount_entry(mountpoint)
    if entry is None:
        return None
    fstype, source, superopts = entry
    info = {"fstype": fstype, "client": "other", "fsid": None, "fs": None, "path": None}
    info["user"] = None
    if fstype in FUSE_FSTYPES:
        args = _fuse_process_args(mountpoint)
        name = args.get("name", "")
        info.update(
            client="fuse",
            fs=args.get("fs"),
            path=(args.get("path") or "/").rstrip("/") or "/",
            user=name.split(".", 1)[1] if name.startswith("client.") else name or None,
        )
    elif fstype == "ceph":
        opts = dict(o.partition("=")[::2] for o in superopts.split(","))
        # "mon1:6789,mon2:6789:/nova" (old form) or "nova@<fsid>.<fs>=/nova" (new form).
        new_form = re.match(r"^([^@]+)@([0-9a-f-]+)\.([^=]+)=(.*)$", source)
        if new_form:
            user, _, fs, path = new_form.groups()
        else:
            user, fs = opts.get("name"), opts.get("mds_namespace") or opts.get("fs")
            path = source.rsplit(":", 1)[1] if ":" in source else "/"
        info.update(client="kernel", fs=fs, path=(path.rstrip("/") or "/"), user=user)
    if info["client"] != "other":
        try:
            info["fsid"] = os.getxattr(mountpoint, "ceph.cluster_fsid").decode()
        except OSError:
            pass  # a hung or old client: the fsid stays unknown
    info.update(_file_meta(mountpoint) or {})
    return info


def fs_mount(mountpoint, fs, path, user, keyring, conf, client="fuse", timeout=10):
    """
    Mount a CephFS directory with ceph-fuse or the kernel client. No key goes on a
    command line: ceph-fuse reads ``keyring``, the kernel client's ``mount.ceph``
    reads the key through ``conf``. The mount point must exist.

    mountpoint
        Where to mount.

    fs
        The filesystem's name.

    path
        The directory in the filesystem, e.g. ``/nova``; the user's caps must reach it.

    user
        The cephx user (``nova``, not ``client.nova``).

    keyring
        The user's keyring file.

    conf
        The cluster's ceph.conf (its fsid and mon_host).

    client
        ``fuse`` (default) or ``kernel``.

    timeout
        Seconds to wait for the cluster before failing (default 10).

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.fs_mount /var/lib/nova/instances cephfs /nova nova /etc/ceph/ceph.client.nova.keyring /etc/ceph/ceph.conf
    """
    if client == "fuse":
        tool = "ceph-fuse"
        argv = [
            tool,
            "-c",
            conf,
            "-n",
            f"client.{user}",
            "-k",
            keyring,
            "-r",
            path,
            "--client_fs",
            fs,
            "--client_mount_timeout",
            str(timeout),
            mountpoint,
        ]
    elif client == "kernel":
        tool = "mount.ceph"
        argv = [
            "mount",
            "-t",
            "ceph",
            f":{path}",
            mountpoint,
            "-o",
            f"name={user},mds_namespace={fs},conf={conf},mount_timeout={timeout}",
        ]
    else:
        raise SaltInvocationError(f"client: fuse or kernel, got {client!r}")
    if not salt.utils.path.which(tool):
        raise CommandExecutionError(
            f"'{tool}' is missing on this minion (install "
            f"{'ceph-fuse' if client == 'fuse' else 'ceph-common'}) to mount CephFS"
        )
    res = __salt__["cmd.run_all"](
        argv,
        python_shell=False,
        output_loglevel="quiet",
        ignore_retcode=True,
        timeout=timeout * 3 + 5,
        reset_system_locale=False,
    )
    if res["retcode"] != 0:
        text = f"{res['stdout']}\n{res['stderr']}"
        reason = [
            line.split("] ", 1)[-1].strip()
            for line in text.splitlines()
            if "rejected" in line or "failed" in line or "error" in line.lower()
        ]
        raise CommandExecutionError(
            f"cannot mount {path} of CephFS '{fs}' as client.{user} on {mountpoint}: "
            f"{'; '.join(reason) or text.strip()}"
        )
    return True


def path_meta_set(path, owner, group, mode):
    """
    Set a file's or directory's owner, group and mode (for a CephFS mount's root, this
    sets them in the filesystem, for every node that mounts it).

    path
        The path.

    owner, group
        The new owner and group; they must exist on the minion.

    mode
        The new mode, e.g. ``'0750'``.

    CLI Example:

    .. code-block:: bash

        salt '*' ceph_client.path_meta_set /var/lib/nova/instances nova nova 0750
    """
    uid, gid = schema.user_id(owner), schema.group_id(group)
    try:
        os.chown(path, uid, gid)
        os.chmod(path, int(cephx.file_mode(mode), 8))
    except OSError as err:
        raise CommandExecutionError(f"cannot set owner/mode of {path}: {err}") from err
    return True

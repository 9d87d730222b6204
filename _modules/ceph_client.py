"""
Ceph client configuration: pools, cephx entities, keyrings and ceph.conf.

This is the only hastack code that talks to Ceph. It drives the ``ceph`` and ``rbd``
command-line tools with JSON output and edits keyring and ceph.conf files.

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

:depends: ceph-common (the ``ceph`` and ``rbd`` commands)
"""

import base64
import binascii
import grp
import logging
import os
import pwd
import re
import shlex
import stat
import struct
import tempfile
import uuid

import salt.utils.json
import salt.utils.path
from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "ceph_client"

DEFAULTS = {
    "cluster": "ceph",
    "conf_dir": "/etc/ceph",
    "timeout": 10,
}
CAP_TYPES = ("mon", "osd", "mgr", "mds")
# Profiles Ceph (Pacific) accepts per daemon type; anything else is a typo.
PROFILES = {
    "osd": {"rbd", "rbd-read-only", "read-only", "read-write"},
    "mon": {"rbd", "osd", "mds", "mgr", "crash", "simple-rados-client",
            "simple-rados-client-with-blocklist", "fs-client", "role-definer",
            "bootstrap-osd", "bootstrap-mds", "bootstrap-mgr", "bootstrap-rgw",
            "bootstrap-rbd", "bootstrap-rbd-mirror", "rbd-mirror", "rbd-mirror-peer"},
    "mgr": {"rbd", "rbd-read-only", "crash", "osd", "mds", "mon"},
    "mds": set(),
}
PERM_RE = re.compile(r"^(\*|all|[rwx]+)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def __virtual__():
    if not salt.utils.path.which("ceph"):
        return (False, "ceph_client: the 'ceph' command is missing (install ceph-common)")
    return __virtualname__


# --------------------------------------------------------------------------- keys


def _decode_key(key):
    """The 16-byte AES secret of a cephx key, or ``None`` when ``key`` is not one."""
    if not isinstance(key, str):
        return None
    try:
        raw = base64.b64decode(key.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    # struct CryptoKey: u16 type (1 = AES), utime created (u32 sec, u32 nsec), u16 len.
    if len(raw) != 28:
        return None
    ctype, _, _, length = struct.unpack("<HIIH", raw[:12])
    if ctype != 1 or length != 16:
        return None
    return raw[12:]


def key_valid(key):
    """
    Tell whether ``key`` is a well-formed cephx key (base64 of an AES CryptoKey).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.key_valid key_pillar=hastack:ceph:users:glance:key
    """
    return _decode_key(key) is not None


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
    if _decode_key(key) is None:
        raise SaltInvocationError(f"{where}: not a cephx key (base64 of a 28-byte AES key)")
    return key.strip()


# --------------------------------------------------------------------------- caps


def _parse_grant(cap_type, grant, where):
    """Validate one grant; return (normalized text, pools it names)."""
    try:
        tokens = shlex.split(grant)
    except ValueError as err:
        raise SaltInvocationError(f"{where}: cannot parse '{grant}': {err}") from err
    if not tokens:
        raise SaltInvocationError(f"{where}: empty grant in caps")
    # 'pool images' (the old form) and 'pool=images' are the same: keep the second.
    norm = []
    i = 0
    while i < len(tokens):
        if tokens[i] in ("pool", "namespace") and i + 1 < len(tokens):
            norm.append(f"{tokens[i]}={tokens[i + 1]}")
            i += 2
        else:
            norm.append(tokens[i])
            i += 1
    verb, rest = norm[0], norm[1:]
    pools = []
    perms = False
    if verb == "profile":
        if not rest or rest[0] not in PROFILES[cap_type]:
            known = ", ".join(sorted(PROFILES[cap_type])) or "none"
            got = rest[0] if rest else ""
            raise SaltInvocationError(
                f"{where}: unknown {cap_type} profile '{got}' in '{grant}' (known: {known})"
            )
        perms = True
        rest = rest[1:]
    elif verb != "allow":
        raise SaltInvocationError(
            f"{where}: a grant starts with 'allow' or 'profile', not '{verb}' (in '{grant}')"
        )
    # Words that take this many arguments after them.
    arity = {"object_prefix": 1, "network": 1, "tag": 2}
    if cap_type == "mon":
        arity.update({"service": 1, "command": 1, "with": 1})
    i = 0
    while i < len(rest):
        tok = rest[i]
        if tok.startswith("pool="):
            pools.append(tok.split("=", 1)[1])
            if not pools[-1]:
                raise SaltInvocationError(f"{where}: empty pool= in '{grant}'")
        elif tok.startswith(("namespace=", "object_prefix=")):
            pass
        elif verb == "allow" and (PERM_RE.match(tok) or tok in ("class-read", "class-write")):
            perms = True
        elif verb == "allow" and tok == "class" and i + 1 < len(rest):
            perms = True
            i += 1
        elif tok in arity and i + arity[tok] < len(rest):
            perms = perms or tok == "command"
            i += arity[tok]
        else:
            raise SaltInvocationError(f"{where}: unexpected '{tok}' in '{grant}'")
        i += 1
    if not perms:
        raise SaltInvocationError(
            f"{where}: 'allow' needs permissions (r, w, x, *, class-read, class-write) in '{grant}'"
        )
    text = " ".join(shlex.quote(t) if " " in t else t for t in norm)
    return text, pools


def parse_caps(caps, pools=None, where="caps", pools_key="hastack:ceph:pools"):
    """
    Validate and normalize cephx caps; return ``{type: "grant, grant"}``.

    ``caps`` maps a daemon type (mon, osd, mgr, mds) to a grant string such as
    ``profile rbd pool=volumes, profile rbd-read-only pool=images`` or
    ``allow rwx pool=images``. With ``pools`` (a list), every ``pool=`` must name one
    of them. Errors name ``where`` (the pillar key).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.parse_caps '{"mon": "profile rbd", "osd": "profile rbd pool=images"}' '[images]'
    """
    if caps is None:
        return {}
    if not isinstance(caps, dict):
        raise SaltInvocationError(f"{where}: must be a mapping of daemon type to grants")
    result = {}
    for cap_type, text in caps.items():
        if cap_type not in CAP_TYPES:
            raise SaltInvocationError(
                f"{where}:{cap_type}: unknown daemon type (known: {', '.join(CAP_TYPES)})"
            )
        if not isinstance(text, str) or not text.strip():
            raise SaltInvocationError(f"{where}:{cap_type}: must be a non-empty string")
        grants = []
        for grant in re.split(r"[,;]", text):
            norm, named = _parse_grant(cap_type, grant.strip(), f"{where}:{cap_type}")
            if pools is not None:
                for pool in named:
                    if pool not in pools:
                        raise SaltInvocationError(
                            f"{where}:{cap_type}: pool '{pool}' is not defined in {pools_key}"
                        )
            grants.append(norm)
        result[cap_type] = ", ".join(grants)
    return result


def caps_normalize(caps):
    """
    Normalize caps as the cluster holds them, for comparison with ``parse_caps`` output:
    white space folded, ``pool images`` written ``pool=images``. Never fails on caps
    it does not know (someone may have set them by hand).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.caps_normalize '{"osd": "profile rbd  pool images"}'
    """
    out = {}
    for cap_type, text in (caps or {}).items():
        grants = [" ".join(g.split()) for g in re.split(r"[,;]", text) if g.strip()]
        grants = [re.sub(r"\b(pool|namespace) (?!=)(\S+)", r"\1=\2", g) for g in grants]
        out[cap_type] = ", ".join(grants)
    return out


# --------------------------------------------------------------------------- cluster access


def _conn(kwargs):
    """Resolve connection settings from arguments, then pillar, then defaults."""

    def pick(name, default=None):
        value = kwargs.get(name)
        if value is None:
            value = __salt__["config.get"](f"hastack:ceph:{name}", None)
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
    }
    return conn


def _base_argv(tool, conn):
    conf = os.path.join(conn["conf_dir"], f"{conn['cluster']}.conf")
    argv = [tool, "--cluster", conn["cluster"], "-c", conf if os.path.exists(conf) else "/dev/null"]
    if conn["mon_host"]:
        argv += ["-m", conn["mon_host"]]
    argv += ["--id", "admin", "--keyring", conn["admin_keyring"]]
    if tool == "ceph":
        argv += ["--connect-timeout", str(conn["timeout"])]
    else:
        argv += ["--client-mount-timeout", str(conn["timeout"]),
                 "--rados-mon-op-timeout", str(conn["timeout"])]
    return argv


def _run(tool, args, conn, stdin=None, json_out=True, ok_codes=(0,)):
    """Run a ceph tool; return (retcode, parsed stdout, stderr). Output is never logged."""
    argv = _base_argv(tool, conn) + list(args)
    if json_out:
        argv += ["--format", "json"]
    log.debug("ceph_client: running %s", " ".join(argv))
    if not os.path.exists(conn["admin_keyring"]):
        raise CommandExecutionError(
            f"admin keyring {conn['admin_keyring']} does not exist "
            "(hastack:ceph:admin_keyring; cluster changes run on hastack:ceph:admin_minion)"
        )
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
            raise CommandExecutionError(
                f"Ceph cluster '{conn['cluster']}' at mon_host {conn['mon_host']} did not answer "
                f"within {conn['timeout']} s (check hastack:ceph:mon_host and "
                f"hastack:ceph:admin_keyring)"
            )
        raise CommandExecutionError(f"{tool} {' '.join(args)} failed (rc {rc}): {err.strip()}")
    if json_out and rc == 0 and out.strip():
        try:
            out = salt.utils.json.loads(out)
        except ValueError as err_:
            raise CommandExecutionError(f"{tool} {' '.join(args)}: unreadable JSON") from err_
    return rc, out, err


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

        salt-call ceph_client.status
    """
    conn = _conn(kwargs)
    _, out, _ = _run("ceph", ["status"], conn)
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
    Pools with the settings hastack manages: ``{name: {pg_num, applications, autoscale_mode, size}}``.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.pool_list
    """
    conn = _conn(kwargs)
    if refresh:
        _invalidate(conn, "pools")

    def read():
        _, out, _ = _run("ceph", ["osd", "pool", "ls", "detail"], conn)
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

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.pool_get images
    """
    return pool_list(refresh=refresh, **kwargs).get(name)


def pool_create(name, pg_num=32, application=None, **kwargs):
    """
    Create a pool; with ``application=rbd`` also run ``rbd pool init``.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.pool_create images pg_num=32 application=rbd
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    _run("ceph", ["osd", "pool", "create", name, str(int(pg_num))], conn, json_out=False)
    if application:
        pool_application_enable(name, application, **kwargs)
    return True


def pool_application_enable(name, application, **kwargs):
    """
    Enable an application on a pool; ``rbd`` is done by ``rbd pool init``, which also
    prepares the pool for RBD images.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.pool_application_enable images rbd
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    if application == "rbd":
        _run("rbd", ["pool", "init", name], conn, json_out=False)
    else:
        _run("ceph", ["osd", "pool", "application", "enable", name, application], conn,
             json_out=False)
    return True


def pool_set(name, var, value, **kwargs):
    """
    Set one pool variable (``ceph osd pool set``).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.pool_set images pg_num 64
    """
    conn = _conn(kwargs)
    _invalidate(conn, "pools")
    _run("ceph", ["osd", "pool", "set", name, var, str(value)], conn, json_out=False)
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
        _, out, _ = _run("ceph", ["auth", "ls"], conn)
        return {e["entity"]: {"key": e.get("key"), "caps": e.get("caps", {})}
                for e in (out or {}).get("auth_dump", [])}

    return _cached(conn, "auth", read)


def entity_list(**kwargs):
    """
    cephx entities and their caps (never their keys).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_list
    """
    conn = _conn(kwargs)
    return {name: {"caps": dict(e["caps"])} for name, e in _auth_dump(conn).items()}


def entity_get(name, refresh=False, **kwargs):
    """
    One cephx entity's caps, or ``None`` when it does not exist. The key is never returned.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_get client.glance
    """
    conn = _conn(kwargs)
    entity = _auth_dump(conn, refresh=refresh).get(_entity_name(name))
    if entity is None:
        return None
    return {"entity": _entity_name(name), "caps": dict(entity["caps"])}


def entity_key_matches(name, key=None, key_pillar=None, refresh=False, **kwargs):
    """
    Tell whether the cluster holds exactly this key for the entity (``None`` if absent).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_key_matches client.glance key_pillar=hastack:ceph:users:glance:key
    """
    conn = _conn(kwargs)
    key = _resolve_key(key, key_pillar)
    entity = _auth_dump(conn, refresh=refresh).get(_entity_name(name))
    if entity is None:
        return None
    return _decode_key(entity["key"]) == _decode_key(key)


def _keyring_text(entity, key, caps=None):
    lines = [f"[{entity}]", f"\tkey = {key}"]
    for cap_type, text in sorted((caps or {}).items()):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'\tcaps {cap_type} = "{escaped}"')
    return "\n".join(lines) + "\n"


def entity_import(name, caps=None, key=None, key_pillar=None, **kwargs):
    """
    Make the cluster hold exactly this key and these caps for the entity (create,
    rotate or re-cap in one step). The key reaches ``ceph auth import`` on stdin.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_import client.glance '{"mon": "profile rbd"}' key_pillar=hastack:ceph:users:glance:key
    """
    conn = _conn(kwargs)
    key = _resolve_key(key, key_pillar)
    caps = parse_caps(caps)
    _invalidate(conn, "auth")
    _run("ceph", ["auth", "import", "-i", "-"], conn,
         stdin=_keyring_text(_entity_name(name), key, caps), json_out=False)
    return True


def entity_caps_set(name, caps, **kwargs):
    """
    Replace an entity's caps, keeping its key (``ceph auth caps``).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_caps_set client.glance '{"mon": "profile rbd", "osd": "profile rbd pool=images"}'
    """
    conn = _conn(kwargs)
    caps = parse_caps(caps)
    args = ["auth", "caps", _entity_name(name)]
    for cap_type, text in sorted(caps.items()):
        args += [cap_type, text]
    _invalidate(conn, "auth")
    _run("ceph", args, conn, json_out=False)
    return True


def entity_delete(name, **kwargs):
    """
    Delete a cephx entity; ``False`` when it did not exist.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.entity_delete client.glance
    """
    conn = _conn(kwargs)
    _invalidate(conn, "auth")
    rc, _, _ = _run("ceph", ["auth", "del", _entity_name(name)], conn, json_out=False,
                    ok_codes=(0, 2))
    return rc == 0


# --------------------------------------------------------------------------- files


def keyring_mode(mode, where="mode"):
    """
    Normalize a file mode: ``'0640'``, ``'640'`` and YAML's unquoted ``0640`` (the
    integer 416) all give ``'0640'``; anything else is an error naming ``where``.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.keyring_mode 0640
    """
    if isinstance(mode, bool):
        raise SaltInvocationError(f"{where}: not a file mode: {mode!r}")
    if isinstance(mode, int):
        value = mode
    elif isinstance(mode, str) and re.match(r"^(0o?)?[0-7]{3,4}$", mode.strip()):
        value = int(mode.strip().replace("0o", ""), 8)
    else:
        raise SaltInvocationError(f"{where}: not an octal file mode like '0640': {mode!r}")
    if value < 0 or value > 0o777:
        raise SaltInvocationError(f"{where}: {mode!r} is outside 0000-0777")
    return f"{value:04o}"


def _owner_uid(owner, where="owner"):
    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError as err:
        raise SaltInvocationError(f"{where}: user '{owner}' does not exist on this minion") from err


def _group_gid(group, where="group"):
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError as err:
        raise SaltInvocationError(f"{where}: group '{group}' does not exist on this minion") from err


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


def _parse_keyring(text):
    """{entity: key} from keyring text."""
    keys = {}
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section and "=" in line:
            opt, value = (part.strip() for part in line.split("=", 1))
            if opt == "key":
                keys[section] = value
    return keys


def keyring_info(path, entity=None, key=None, key_pillar=None):
    """
    What a keyring file holds, without its keys: owner, group, mode, the entities in it,
    and (given ``entity`` and a key) whether it holds exactly that key for the entity.
    ``None`` when the file does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.keyring_info /etc/ceph/ceph.client.glance.keyring client.glance key_pillar=hastack:ceph:users:glance:key
    """
    meta = _file_meta(path)
    if meta is None:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            keys = _parse_keyring(fh.read())
    except (OSError, UnicodeDecodeError) as err:
        raise CommandExecutionError(f"cannot read keyring {path}: {err}") from err
    info = dict(meta, entities=sorted(keys))
    if entity is not None and (key is not None or key_pillar):
        wanted = _resolve_key(key, key_pillar)
        held = keys.get(_entity_name(entity))
        info["key_matches"] = held is not None and _decode_key(held) == _decode_key(wanted)
    return info


def keyring_write(path, entity, key=None, key_pillar=None, owner="root", group="root",
                  mode="0600"):
    """
    Write a keyring for one entity, atomically, with the given owner, group and mode.
    The file never exists with a wider mode than asked, not even for a moment.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.keyring_write /etc/ceph/ceph.client.glance.keyring client.glance key_pillar=hastack:ceph:users:glance:key owner=glance group=glance mode=0640
    """
    key = _resolve_key(key, key_pillar)
    uid, gid = _owner_uid(owner), _group_gid(group)
    mode = int(keyring_mode(mode), 8)
    try:
        _atomic_write(path, _keyring_text(_entity_name(entity), key), uid, gid, mode)
    except OSError as err:
        raise CommandExecutionError(f"cannot write keyring {path}: {err}") from err
    return True


def keyring_meta_set(path, owner, group, mode):
    """
    Set a keyring's owner, group and mode without rewriting it.

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.keyring_meta_set /etc/ceph/ceph.client.glance.keyring glance glance 0640
    """
    try:
        os.chown(path, _owner_uid(owner), _group_gid(group))
        os.chmod(path, int(keyring_mode(mode), 8))
    except OSError as err:
        raise CommandExecutionError(f"cannot set owner/mode of {path}: {err}") from err
    return True


# --------------------------------------------------------------------------- pillar


def _need(cond, key, message):
    if not cond:
        raise SaltInvocationError(f"{key}: {message}")


def validate(ceph, roles=None, known_roles=None, base="hastack:ceph"):
    """
    Validate the ``hastack:ceph`` pillar tree (merged with the formula defaults) and
    return it normalized, with each user's key replaced by ``key_pillar`` (the pillar
    path of the key), so that rendered SLS never carries a key.

    ``roles`` are the minion's roles: owners and groups of the keyrings this minion
    gets must exist here. With ``known_roles``, every user's ``roles`` must be among
    them. Every error names the pillar key, under ``base`` (``hastack:ceph`` for the
    main cluster, ``hastack:ceph_clusters:<name>`` for another one).

    CLI Example:

    .. code-block:: bash

        salt-call ceph_client.validate "$(salt-call --out=json pillar.get hastack:ceph)"
    """
    _need(isinstance(ceph, dict), base, "must be a mapping")
    unknown = set(ceph) - {"cluster", "conf_dir", "fsid", "mon_host", "admin_minion",
                           "admin_keyring", "timeout", "pools", "users"}
    _need(not unknown, base, f"unknown setting(s): {', '.join(sorted(unknown))}")
    out = dict(ceph)
    cluster = ceph.get("cluster")
    _need(isinstance(cluster, str) and NAME_RE.match(cluster or ""), f"{base}:cluster",
          f"not a cluster name: {cluster!r}")
    conf_dir = ceph.get("conf_dir")
    _need(isinstance(conf_dir, str) and os.path.isabs(conf_dir), f"{base}:conf_dir",
          f"must be an absolute path, got {conf_dir!r}")
    fsid = ceph.get("fsid")
    _need(fsid is not None, f"{base}:fsid", "required: the cluster's fsid")
    try:
        out["fsid"] = str(uuid.UUID(str(fsid)))
    except ValueError as err:
        raise SaltInvocationError(f"{base}:fsid: not a UUID: {fsid!r}") from err
    mon_host = ceph.get("mon_host")
    _need(isinstance(mon_host, str) and mon_host.strip(), f"{base}:mon_host",
          "required: the monitors' addresses")
    _need(isinstance(ceph.get("admin_minion"), str) and ceph["admin_minion"], f"{base}:admin_minion",
          "required: the minion id that holds client.admin")
    admin_keyring = ceph.get("admin_keyring") or os.path.join(conf_dir, f"{cluster}.client.admin.keyring")
    _need(os.path.isabs(admin_keyring), f"{base}:admin_keyring", "must be an absolute path")
    out["admin_keyring"] = admin_keyring
    timeout = ceph.get("timeout")
    _need(isinstance(timeout, int) and not isinstance(timeout, bool) and 1 <= timeout <= 300,
          f"{base}:timeout", f"seconds from 1 to 300, got {timeout!r}")

    pools = ceph.get("pools") or {}
    _need(isinstance(pools, dict), f"{base}:pools", "must be a mapping of pool name to settings")
    out["pools"] = {}
    for name, spec in pools.items():
        key = f"{base}:pools:{name}"
        _need(NAME_RE.match(str(name)), key, "not a pool name")
        spec = spec or {}
        _need(isinstance(spec, dict), key, "must be a mapping")
        unknown = set(spec) - {"pg_num", "application"}
        _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        pg_num = spec.get("pg_num", 32)
        _need(isinstance(pg_num, int) and not isinstance(pg_num, bool) and 1 <= pg_num <= 65536,
              f"{key}:pg_num", f"a whole number from 1 to 65536, got {pg_num!r}")
        app = spec.get("application", "rbd")
        _need(isinstance(app, str) and re.match(r"^[a-z][a-z0-9_-]*$", app), f"{key}:application",
              f"not an application name: {app!r}")
        out["pools"][str(name)] = {"pg_num": pg_num, "application": app}

    my_roles = set(roles or [])
    users = ceph.get("users") or {}
    _need(isinstance(users, dict), f"{base}:users", "must be a mapping of user name to settings")
    out["users"] = {}
    for name, spec in users.items():
        key = f"{base}:users:{name}"
        _need(NAME_RE.match(str(name)) and "." not in str(name), key,
              "not a cephx user name (give 'glance', not 'client.glance')")
        _need(str(name) != "admin", key, "client.admin is not managed by hastack")
        _need(isinstance(spec, dict), key, "must be a mapping")
        unknown = set(spec) - {"key", "caps", "keyring", "roles"}
        _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        _need(spec.get("key") is not None, f"{key}:key", "missing (the user's cephx key)")
        _need(_decode_key(spec["key"]) is not None, f"{key}:key",
              "not a cephx key (base64 of a 28-byte AES key, as 'ceph-authtool --gen-print-key' prints)")
        caps = parse_caps(spec.get("caps") or {}, pools=list(out["pools"]), where=f"{key}:caps",
                          pools_key=f"{base}:pools")
        user_roles = spec.get("roles", ["controller"])
        _need(isinstance(user_roles, list), f"{key}:roles", "must be a list of roles")
        for role in user_roles:
            _need(known_roles is None or role in known_roles, f"{key}:roles",
                  f"unknown role '{role}' (known: {', '.join(known_roles or [])})")
        keyring = dict(spec.get("keyring") or {})
        unknown = set(keyring) - {"owner", "group", "mode", "path"}
        _need(not unknown, f"{key}:keyring", f"unknown setting(s): {', '.join(sorted(unknown))}")
        keyring.setdefault("owner", "root")
        keyring.setdefault("group", "root")
        keyring["mode"] = keyring_mode(keyring.get("mode", "0600"), f"{key}:keyring:mode")
        keyring.setdefault("path", os.path.join(conf_dir, f"{cluster}.client.{name}.keyring"))
        _need(os.path.isabs(keyring["path"]), f"{key}:keyring:path", "must be an absolute path")
        if my_roles & set(user_roles):
            _owner_uid(keyring["owner"], f"{key}:keyring:owner")
            _group_gid(keyring["group"], f"{key}:keyring:group")
        out["users"][str(name)] = {
            "key_pillar": f"{base}:users:{name}:key",
            "caps": caps,
            "roles": list(user_roles),
            "keyring": keyring,
        }
    return out

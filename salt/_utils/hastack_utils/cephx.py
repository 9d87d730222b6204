"""
The cephx grammar: keys, caps and keyring files. One reader of caps for every
question hastack asks about them (valid? which pools? write access?).

Errors are ``SaltInvocationError`` naming ``where``, the pillar key or argument.
"""

import base64
import binascii
import ipaddress
import re
import shlex
import socket
import struct

from salt.exceptions import SaltInvocationError

CAP_TYPES = ("mon", "osd", "mgr", "mds")
# Profiles Ceph (Pacific) accepts per daemon type; anything else is a typo.
PROFILES = {
    "osd": {"rbd", "rbd-read-only", "read-only", "read-write"},
    "mon": {
        "rbd",
        "osd",
        "mds",
        "mgr",
        "crash",
        "simple-rados-client",
        "simple-rados-client-with-blocklist",
        "fs-client",
        "role-definer",
        "bootstrap-osd",
        "bootstrap-mds",
        "bootstrap-mgr",
        "bootstrap-rgw",
        "bootstrap-rbd",
        "bootstrap-rbd-mirror",
        "rbd-mirror",
        "rbd-mirror-peer",
    },
    "mgr": {"rbd", "rbd-read-only", "crash", "osd", "mds", "mon"},
    "mds": set(),
}
PERM_RE = re.compile(r"^(\*|all|[rwx]+)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def decode_key(key):
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
    """
    return decode_key(key) is not None


def parse_grant(cap_type, grant, where):
    """Validate one grant; return ``(normalized text, pools it names, whether it writes)``.

    A grant writes unless it is a read-only profile or an ``allow`` without ``w``,
    ``*`` or ``all``."""
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
    writes = verb == "profile" and rest[:1] not in (["rbd-read-only"], ["read-only"])
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
        elif cap_type in ("mds", "mon") and tok.startswith("fsname="):
            pass  # CephFS: the grant holds for that filesystem only
        elif cap_type == "mds" and (
            tok.startswith(("path=", "uid=", "gids=")) or tok == "root_squash"
        ):
            pass
        elif verb == "allow" and (PERM_RE.match(tok) or tok in ("class-read", "class-write")):
            perms = True
            writes = writes or tok in ("*", "all") or "w" in tok and tok != "class-write"
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
    return text, pools, writes


def parse_caps(caps, pools=None, where="caps", pools_key="hastack:ceph:pools"):
    """
    Validate and normalize cephx caps; return ``{type: "grant, grant"}``.

    ``caps`` maps a daemon type (mon, osd, mgr, mds) to a grant string such as
    ``profile rbd pool=volumes, profile rbd-read-only pool=images`` or
    ``allow rwx pool=images``. With ``pools`` (a list), every ``pool=`` must name one
    of them. Errors name ``where`` (the pillar key).
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
            norm, named, _ = parse_grant(cap_type, grant.strip(), f"{where}:{cap_type}")
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
    """
    out = {}
    for cap_type, text in (caps or {}).items():
        grants = [" ".join(g.split()) for g in re.split(r"[,;]", text) if g.strip()]
        grants = [re.sub(r"\b(pool|namespace) (?!=)(\S+)", r"\1=\2", g) for g in grants]
        out[cap_type] = ", ".join(grants)
    return out


def _grant_words(grant):
    words = {}
    for tok in shlex.split(grant):
        if "=" in tok:
            name, value = tok.split("=", 1)
            words[name] = value
        else:
            words.setdefault("", []).append(tok)
    return words


def fs_path_writable(mds_caps, fs, path):
    """Whether mds caps (as ``parse_caps`` returns them) let the user read and write
    ``path`` of filesystem ``fs``: a grant with ``rw`` (or ``*``) whose ``fsname``, if
    any, is ``fs`` and whose ``path``, if any, is ``path`` or one of its parents, and
    that does not squash root (the mount's owner is set through it)."""
    for grant in re.split(r"[,;]", mds_caps or ""):
        if not grant.strip():
            continue
        words = _grant_words(grant.strip())
        perms = [w for w in words.get("", []) if PERM_RE.match(w)]
        if not any(p in ("*", "all") or "w" in p and "r" in p for p in perms):
            continue
        if words.get("fsname", fs) != fs or "root_squash" in words.get("", []):
            continue
        allowed = words.get("path", "/").rstrip("/") + "/"
        if (path.rstrip("/") + "/").startswith(allowed):
            return True
    return False


def pool_writable(osd_caps, pool):
    """Whether osd caps (a grant string, as ``parse_caps`` returns it) let the user
    write to ``pool``: a writing grant that names the pool or names no pool."""
    for grant in re.split(r"[,;]", osd_caps or ""):
        if not grant.strip():
            continue
        _, named, writes = parse_grant("osd", grant.strip(), "caps:osd")
        if writes and (not named or pool in named):
            return True
    return False


def keyring_text(entity, key, caps=None):
    """A keyring file's text for one entity (what ``ceph auth import`` reads)."""
    lines = [f"[{entity}]", f"\tkey = {key}"]
    for cap_type, text in sorted((caps or {}).items()):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'\tcaps {cap_type} = "{escaped}"')
    return "\n".join(lines) + "\n"


def parse_keyring(text):
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


def file_mode(mode, where="mode"):
    """
    Normalize a file mode: ``'0640'``, ``'640'`` and YAML's unquoted ``0640`` (the
    integer 416) all give ``'0640'``; anything else is an error naming ``where``.
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


def keyring_file_mode(mode, where="mode"):
    """``file_mode`` for a file that holds a key: no permission for others, since a
    keyring every local user can read hands the key to each of them."""
    normalized = file_mode(mode, where)
    if int(normalized, 8) & 0o007:
        raise SaltInvocationError(
            f"{where}: {normalized} lets every local user read the key; give the service "
            f"its group instead (0640 with keyring:group) or keep 0600"
        )
    return normalized


POOL_APPLICATIONS = ("rbd", "rgw", "cephfs", "nfs", "mgr")


def _check_host_port(text, where, entry):
    """``host``, ``host:port``, ``[ipv6]:port`` or a bare IPv6 address, each with an
    optional ``/nonce`` as ``ceph mon dump`` prints them: checked."""
    text = re.sub(r"/\d+$", "", text)
    host, port = text, None
    bracketed = re.match(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$", text)
    if bracketed:
        host, port = bracketed.groups()
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise SaltInvocationError(f"{where}: bad port in '{entry}'")
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    if not re.match(
        r"^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$", host
    ):
        raise SaltInvocationError(f"{where}: '{entry}' is neither an address nor a host name")
    try:
        socket.getaddrinfo(host, None)
    except OSError as err:
        raise SaltInvocationError(
            f"{where}: host name '{host}' (in '{entry}') does not resolve here: {err}"
        ) from err


def parse_mon_host(text, where="mon_host"):
    """
    Check a ``mon_host`` value the way Ceph reads it and return its entries: addresses
    (``10.0.0.1``, ``10.0.0.1:6789``, ``v2:10.0.0.1:3300``), address vectors
    (``[v2:10.0.0.1:3300,v1:10.0.0.1:6789]``) or host names that resolve here, separated
    by commas, semicolons or spaces. Anything else would break every Ceph client on the
    node without an error, so it is refused naming ``where``.
    """
    if not isinstance(text, str) or not text.strip():
        raise SaltInvocationError(f"{where}: required: the monitors' addresses")
    entries, current, depth = [], "", 0
    for char in text + " ":
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0:
            break
        if depth == 0 and char in " \t\n,;":
            if current:
                entries.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise SaltInvocationError(f"{where}: unbalanced brackets in {text!r}")
    for entry in entries:
        inner = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else None
        if inner is not None and re.match(r"^(v1|v2|any):", inner):
            parts = re.split(r",(?![^\[]*\])", inner)
        else:
            parts = [entry]
        for part in parts:
            proto = re.match(r"^(v1|v2|any):(.*)$", part)
            if proto:
                _check_host_port(proto.group(2), where, entry)
            else:
                if inner is not None and not re.match(r"^[0-9A-Fa-f:.]+$", inner):
                    raise SaltInvocationError(f"{where}: cannot read '{entry}'")
                _check_host_port(part, where, entry)
    return entries

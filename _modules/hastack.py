"""
hastack: the ``hastack`` pillar tree as a whole, and the INI files it edits.

Validates the pillar (merged over ``salt/hastack/defaults.yaml``) before any state
acts (``map.jinja`` calls ``hastack.validate``), so that bad input stops the run at render time with an error
naming the pillar key, and nothing changes. Each concern's own module validates its
subtree (``ceph_client.validate`` for ``hastack:ceph``).
"""

import os
import re

import salt.utils.atomicfile
import salt.utils.dictupdate
import salt.utils.yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "hastack"

KNOWN_ROLES = ("controller", "compute", "network", "storage")
RELEASES = ("current", "folsom")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def __virtual__():
    return __virtualname__


def _merged_pillar():
    """
    This minion's ``hastack`` pillar merged over the formula's defaults
    (``salt://hastack/defaults.yaml``): service defaults apply only to the services the
    pillar configures. Keys stay in: private, so no job return ever carries them.
    """
    text = __salt__["cp.get_file_str"]("salt://hastack/defaults.yaml")
    if not text:
        raise CommandExecutionError("salt://hastack/defaults.yaml is not on the fileserver")
    defaults = salt.utils.yaml.safe_load(text)
    # Salt masks pillar values in pillar.get's output; this stays in-process.
    pillar = __salt__["pillar.get"]("hastack", {}, unmask=True)
    if not isinstance(pillar, dict):
        raise SaltInvocationError("hastack: the pillar tree is not a mapping")
    merged = salt.utils.dictupdate.merge(defaults["hastack"], pillar, strategy="recurse",
                                         merge_lists=False)
    for name, service_defaults in defaults["services"].items():
        if name in pillar:
            merged[name] = salt.utils.dictupdate.merge(service_defaults, pillar[name],
                                                       strategy="recurse", merge_lists=False)
    return merged


def validate(config=None, minion_id=None):
    """
    Validate the ``hastack`` pillar tree and return it normalized (keys replaced by the
    pillar paths that hold them). Raises ``SaltInvocationError`` naming the bad key.
    Run it before a rollout: it checks what a highstate would, changing nothing.

    config
        The tree to check; default: this minion's pillar merged over the defaults.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.validate
    """
    if config is None:
        config = _merged_pillar()
    if not isinstance(config, dict):
        raise SaltInvocationError("hastack: the pillar tree is missing or not a mapping")
    minion_id = minion_id or __grains__.get("id") or __opts__.get("id")
    out = dict(config)
    site = config.get("site")
    if not (isinstance(site, str) and re.match(r"^[A-Za-z0-9][A-Za-z0-9_-]*$", site)):
        raise SaltInvocationError(f"hastack:site: not a site name: {site!r}")
    roles = config.get("roles") or []
    if not isinstance(roles, list):
        raise SaltInvocationError("hastack:roles: must be a list of roles")
    for role in roles:
        if role not in KNOWN_ROLES:
            raise SaltInvocationError(
                f"hastack:roles: unknown role '{role}' (known: {', '.join(KNOWN_ROLES)})"
            )
    out["roles"] = list(roles)
    if "ceph" in config:
        out["ceph"] = __salt__["ceph_client.validate"](
            config["ceph"], roles=roles, known_roles=KNOWN_ROLES, minion_id=minion_id
        )
        out["ceph"]["is_admin_minion"] = out["ceph"]["admin_minion"] == minion_id
        # The users whose keyrings (and [client.<user>] sections) this minion gets.
        out["ceph"]["local_users"] = sorted(
            user for user, spec in out["ceph"]["users"].items() if set(spec["roles"]) & set(roles)
        )
    _validate_openstack(config, out)
    return out


def _fail(key, message):
    raise SaltInvocationError(f"{key}: {message}")


def _check_keys(tree, key, allowed):
    if not isinstance(tree, dict):
        _fail(key, "must be a mapping")
    unknown = set(tree) - set(allowed)
    if unknown:
        _fail(key, f"unknown setting(s): {', '.join(sorted(unknown))}")


def _check_ref(value, key, where, known):
    if value not in known:
        _fail(key, f"'{value}' is not defined in {where}")


def _check_uuid(value, key):
    if not (isinstance(value, str) and UUID_RE.match(value.lower())):
        _fail(key, f"not a UUID: {value!r}")
    return value.lower()


def _check_service(svc, key):
    _check_keys(svc, key, ("name", "manage"))
    if not isinstance(svc.get("name"), str) or not svc["name"]:
        _fail(f"{key}:name", "required: the service's name")
    if not isinstance(svc.get("manage"), bool):
        _fail(f"{key}:manage", "true or false")


def _validate_openstack(config, out):
    """Glance, Cinder, Nova and libvirt: each checked, then checked against each other.

    Adds ``settings`` ({section: {option: value}} in the release's option names) to each
    service, so that the SLS only writes what was computed and checked here.
    """
    release = (config.get("openstack") or {}).get("release", "current")
    if release not in RELEASES:
        _fail("hastack:openstack:release", f"unknown release '{release}' (known: {', '.join(RELEASES)})")
    ceph = out.get("ceph") or {}
    pools, users = ceph.get("pools", {}), ceph.get("users", {})
    ceph_conf = f"{ceph.get('conf_dir')}/{ceph.get('cluster')}.conf" if ceph else None
    roles = set(out["roles"])

    def service_roles(name):
        svc_roles = config[name].get("roles")
        if not isinstance(svc_roles, list) or any(r not in KNOWN_ROLES for r in svc_roles):
            _fail(f"hastack:{name}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
        return svc_roles

    for name in ("glance", "cinder", "nova", "libvirt"):
        if name in config and not ceph:
            _fail("hastack:ceph", f"required by hastack:{name}")

    secrets = {}
    if "libvirt" in config:
        lv = config["libvirt"]
        _check_keys(lv, "hastack:libvirt", ("uri", "secrets", "roles"))
        service_roles("libvirt")
        for uuid, spec in (lv.get("secrets") or {}).items():
            key = f"hastack:libvirt:secrets:{uuid}"
            uuid = _check_uuid(str(uuid), key)
            _check_keys(spec, key, ("ceph_user", "replace_usage"))
            _check_ref(spec.get("ceph_user"), f"{key}:ceph_user", "hastack:ceph:users", users)
            if not isinstance(spec.get("replace_usage", False), bool):
                _fail(f"{key}:replace_usage", "true or false")
            secrets[uuid] = {"ceph_user": spec["ceph_user"],
                             "key_pillar": users[spec["ceph_user"]]["key_pillar"],
                             "replace_usage": spec.get("replace_usage", False)}
        out["libvirt"] = {"uri": lv.get("uri"), "secrets": secrets, "roles": lv["roles"],
                          "applies": bool(roles & set(lv["roles"]))}
    # The secrets a compute needs must be defined wherever this pillar reaches a compute.
    is_compute = "compute" in roles

    def check_grant(user, pool, key):
        """The user's osd caps must let it write to the pool the service will use."""
        writable, unrestricted = set(), False
        for grant in users[user]["caps"].get("osd", "").split(", "):
            words = grant.split()
            if not words or "read-only" in grant:
                continue
            if words[0] == "allow" and not any(p in ("*", "all") or "w" in p for p in words[1:]
                                               if "=" not in p):
                continue
            named = re.findall(r"pool=(\S+)", grant)
            writable.update(named)
            unrestricted = unrestricted or not named
        if not (unrestricted or pool in writable):
            _fail(key, f"client.{user}'s osd caps do not let it write to pool '{pool}'")

    def check_local_user(user, service, key):
        """A service configured here needs its user's keyring here too."""
        if out[service]["applies"] and user not in ceph["local_users"]:
            _fail(key, f"client.{user}'s keyring does not reach this minion: add a role of "
                       f"this minion to hastack:ceph:users:{user}:roles")

    def check_secret(uuid, user, key):
        if not is_compute:
            return
        if uuid not in secrets:
            _fail(key, f"{uuid} is not defined in hastack:libvirt:secrets (computes need it)")
        if secrets[uuid]["ceph_user"] != user:
            _fail(key, f"secret {uuid} holds the key of '{secrets[uuid]['ceph_user']}', not of "
                       f"the rbd user '{user}'")

    if "glance" in config:
        gl = config["glance"]
        _check_keys(gl, "hastack:glance", ("backend", "store_name", "pool", "user", "chunk_size",
                                           "config_file", "service", "roles"))
        service_roles("glance")
        if gl.get("backend") != "rbd":
            _fail("hastack:glance:backend", f"only 'rbd' is managed, got {gl.get('backend')!r}")
        _check_ref(gl.get("pool"), "hastack:glance:pool", "hastack:ceph:pools", pools)
        _check_ref(gl.get("user"), "hastack:glance:user", "hastack:ceph:users", users)
        check_grant(gl["user"], gl["pool"], "hastack:glance:pool")
        _check_service(gl["service"], "hastack:glance:service")
        store = {"rbd_store_pool": gl["pool"], "rbd_store_user": gl["user"],
                 "rbd_store_ceph_conf": ceph_conf, "rbd_store_chunk_size": gl["chunk_size"]}
        if release == "folsom":
            settings = {"DEFAULT": {"default_store": "rbd", "show_image_direct_url": "True", **store}}
        else:
            name = gl["store_name"]
            settings = {"DEFAULT": {"enabled_backends": f"{name}:rbd", "show_image_direct_url": "True"},
                        "glance_store": {"default_backend": name}, name: store}
        out["glance"] = dict(gl, settings=settings, applies=bool(roles & set(gl["roles"])))
        check_local_user(gl["user"], "glance", "hastack:glance:user")

    if "cinder" in config:
        ci = config["cinder"]
        _check_keys(ci, "hastack:cinder", ("backends", "config_file", "service", "roles",
                                           "ceph_args_user", "systemd_dir", "upstart_dir"))
        service_roles("cinder")
        _check_service(ci["service"], "hastack:cinder:service")
        backends = ci.get("backends") or {}
        if not backends:
            _fail("hastack:cinder:backends", "at least one backend")
        if release == "folsom" and len(backends) > 1:
            _fail("hastack:cinder:backends", "folsom supports one backend only")
        settings = {"DEFAULT": {}}
        for bname, spec in sorted(backends.items()):
            key = f"hastack:cinder:backends:{bname}"
            if not re.match(r"^[A-Za-z0-9_-]+$", str(bname)):
                _fail(key, "not a backend name")
            _check_keys(spec, key, ("pool", "user", "secret_uuid", "backend_name"))
            _check_ref(spec.get("pool"), f"{key}:pool", "hastack:ceph:pools", pools)
            _check_ref(spec.get("user"), f"{key}:user", "hastack:ceph:users", users)
            check_grant(spec["user"], spec["pool"], f"{key}:pool")
            uuid = _check_uuid(spec.get("secret_uuid"), f"{key}:secret_uuid")
            check_secret(uuid, spec["user"], f"{key}:secret_uuid")
            rbd = {"rbd_pool": spec["pool"], "rbd_user": spec["user"], "rbd_secret_uuid": uuid}
            if release == "folsom":
                settings["DEFAULT"].update(volume_driver="cinder.volume.driver.RBDDriver", **rbd)
            else:
                settings[bname] = {"volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                                   "volume_backend_name": spec.get("backend_name", bname),
                                   "rbd_ceph_conf": ceph_conf, **rbd}
        if release != "folsom":
            settings["DEFAULT"]["enabled_backends"] = ",".join(sorted(backends))
        # CEPH_ARGS can name one id: the backends' common user, or ceph_args_user.
        backend_users = {spec["user"] for spec in backends.values()}
        ceph_args_user = ci.get("ceph_args_user") or (backend_users.pop() if len(backend_users) == 1 else None)
        if ceph_args_user is not None:
            _check_ref(ceph_args_user, "hastack:cinder:ceph_args_user", "hastack:ceph:users", users)
        out["cinder"] = dict(ci, settings=settings, ceph_args_user=ceph_args_user, release=release,
                             users=sorted({spec["user"] for spec in backends.values()}),
                             applies=bool(roles & set(ci["roles"])))
        for bname, spec in sorted(backends.items()):
            check_local_user(spec["user"], "cinder", f"hastack:cinder:backends:{bname}:user")

    if "nova" in config:
        nv = config["nova"]
        _check_keys(nv, "hastack:nova", ("images_type", "pool", "user", "secret_uuid",
                                         "config_file", "service", "roles"))
        service_roles("nova")
        _check_service(nv["service"], "hastack:nova:service")
        if nv.get("images_type") not in ("rbd", "default"):
            _fail("hastack:nova:images_type", f"'rbd' or 'default', got {nv.get('images_type')!r}")
        _check_ref(nv.get("user"), "hastack:nova:user", "hastack:ceph:users", users)
        uuid = _check_uuid(nv.get("secret_uuid"), "hastack:nova:secret_uuid")
        check_secret(uuid, nv["user"], "hastack:nova:secret_uuid")
        libvirt = {"rbd_user": nv["user"], "rbd_secret_uuid": uuid}
        if nv["images_type"] == "rbd":
            if release == "folsom":
                _fail("hastack:nova:images_type", "RBD-backed instance disks need a release after folsom")
            _check_ref(nv.get("pool"), "hastack:nova:pool", "hastack:ceph:pools", pools)
            check_grant(nv["user"], nv["pool"], "hastack:nova:pool")
            libvirt.update(images_type="rbd", images_rbd_pool=nv["pool"],
                           images_rbd_ceph_conf=ceph_conf)
        # Folsom's nova took the volume's rbd user and secret from cinder: nothing to set.
        settings = {} if release == "folsom" else {"libvirt": libvirt}
        out["nova"] = dict(nv, settings=settings, applies=bool(roles & set(nv["roles"])))
        check_local_user(nv["user"], "nova", "hastack:nova:user")


# Option names are equal whatever mix of ' ', '_' and '-' separates words (ceph.conf
# allows all three; oslo.config treats '-' and '_' alike).
def _opt_key(name):
    return re.sub(r"[ _-]+", "_", name.strip().lower())


def _conf_sections(lines):
    """[(section name or None, start index, end index)] of an INI file's lines."""
    bounds = []
    current, start = None, 0
    for idx, line in enumerate(lines):
        match = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
        if match:
            bounds.append((current, start, idx))
            current, start = match.group(1).strip(), idx
    bounds.append((current, start, len(lines)))
    return bounds


def _conf_value_line(line):
    stripped = line.strip()
    if not stripped or stripped[0] in "#;[" or "=" not in stripped:
        return None
    opt, value = stripped.split("=", 1)
    value = re.split(r"\s[#;]", value, maxsplit=1)[0]
    return _opt_key(opt), value.strip()


def ini_read(path):
    """
    An INI file (ceph.conf, glance-api.conf, ...) as ``{section: {option: value}}``
    (option names with underscores);
    ``None`` when the file does not exist.

    CLI Example:

    .. code-block:: bash

        salt-call hastack.ini_read /etc/ceph/ceph.conf
    """
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CommandExecutionError(f"cannot read {path}: {err}") from err
    conf = {}
    for section, start, end in _conf_sections(lines):
        if section is None:
            continue
        opts = conf.setdefault(section, {})
        for line in lines[start + 1:end]:
            parsed = _conf_value_line(line)
            if parsed:
                opts[parsed[0]] = parsed[1]
    return conf


def ini_diff(path, settings):
    """
    What ``ini_set`` would change: ``{"[section] option": {"old": .., "new": ..}}``.

    CLI Example:

    .. code-block:: bash

        salt-call hastack.ini_diff /etc/ceph/ceph.conf '{"global": {"fsid": "4b5c8c0a-..."}}'
    """
    current = ini_read(path) or {}
    changes = {}
    for section, options in settings.items():
        for option, value in options.items():
            old = current.get(section, {}).get(_opt_key(option))
            if old != str(value):
                changes[f"[{section}] {_opt_key(option)}"] = {"old": old, "new": str(value)}
    return changes


def ini_set(path, settings, mode="0644"):
    """
    Set options in an INI file (ceph.conf, glance-api.conf, cinder.conf, nova.conf),
    keeping every line it does not manage (comments, other options and sections)
    where it was. ``settings`` is ``{section: {option: value}}``. A new file gets
    ``mode``; an existing one keeps its owner and mode. Returns the changes made.

    CLI Example:

    .. code-block:: bash

        salt-call hastack.ini_set /etc/ceph/ceph.conf '{"global": {"fsid": "4b5c8c0a-...", "mon_host": "10.0.0.1"}}'
    """
    changes = ini_diff(path, settings)
    if not changes:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        existed = True
    except FileNotFoundError:
        lines, existed = [], False
    for section, options in settings.items():
        for option, value in options.items():
            okey = _opt_key(option)
            bounds = {s: (b, e) for s, b, e in _conf_sections(lines)}
            new_line = f"{okey} = {value}"
            if section not in bounds:
                if lines and lines[-1].strip():
                    lines.append("")
                lines += [f"[{section}]", new_line]
                continue
            start, end = bounds[section]
            for idx in range(start + 1, end):
                parsed = _conf_value_line(lines[idx])
                if parsed and parsed[0] == okey:
                    indent = re.match(r"^\s*", lines[idx]).group(0)
                    lines[idx] = indent + new_line
                    break
            else:
                insert = end
                while insert > start + 1 and not lines[insert - 1].strip():
                    insert -= 1
                lines.insert(insert, new_line)
    try:
        # Salt's atomic writer keeps an existing file's mode and owner.
        with salt.utils.atomicfile.atomic_open(path, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        if not existed:
            os.chmod(path, int(str(mode), 8))
    except OSError as err:
        raise CommandExecutionError(f"cannot write {path}: {err}") from err
    return changes

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
    if "ceph" not in pillar:  # a minion without Ceph (e.g. Pacemaker only)
        merged.pop("ceph", None)
    for name, cluster in (pillar.get("ceph_clusters") or {}).items():
        if isinstance(cluster, dict):
            # Another cluster's files sit beside the main one's, named by cluster.
            base = dict(defaults["hastack"]["ceph"], cluster=name,
                        conf_dir=(merged.get("ceph") or {}).get("conf_dir", "/etc/ceph"))
            merged["ceph_clusters"][name] = salt.utils.dictupdate.merge(
                base, cluster, strategy="recurse", merge_lists=False)
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
    _validate_clusters(config, out, roles, minion_id)
    _validate_openstack(config, out)
    if "pacemaker" in config:
        out["pacemaker"] = _validate_pacemaker(config["pacemaker"], roles)
    if "floating_ips" in config:
        out["floating_ips"] = _validate_floating_ips(config["floating_ips"],
                                                     config.get("openstack") or {}, roles)
    return out


IPV4_RE = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$")


def _check_ipv4(value, key):
    match = IPV4_RE.match(str(value))
    if not match or any(int(part) > 255 for part in match.groups()):
        _fail(key, f"not an IPv4 address: {value!r}")


def _validate_floating_ips(fips, openstack, roles):
    base = "hastack:floating_ips"
    _check_keys(fips, base, ("addresses", "roles"))
    if not isinstance(fips.get("roles"), list) or any(r not in KNOWN_ROLES for r in fips["roles"]):
        _fail(f"{base}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
    addresses = fips.get("addresses") or {}
    if not isinstance(addresses, dict):
        _fail(f"{base}:addresses", "must be a mapping of labels to floating IPs")
    if addresses and not openstack.get("cloud"):
        _fail("hastack:openstack:cloud", "required for floating IPs: a clouds.yaml entry name or "
              "openstacksdk connection arguments")
    for label, fip in addresses.items():
        key = f"{base}:addresses:{label}"
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(label)):
            _fail(key, "the label must be letters, digits, '.', '_' or '-'")
        _check_keys(fip, key, ("server", "port", "fixed_ip", "address", "network", "absent", "release",
                               "standby"))
        if fip.get("absent"):
            if not fip.get("address"):
                _fail(f"{key}:address", "required with absent: the floating address to detach")
            _check_ipv4(fip["address"], f"{key}:address")
            continue
        targets = [t for t in ("server", "port", "fixed_ip") if fip.get(t)]
        if len(targets) != 1:
            _fail(key, "name exactly one of server, port or fixed_ip")
        if not isinstance(fip[targets[0]], str):
            _fail(f"{key}:{targets[0]}", "must be a name (a string)")
        if fip.get("fixed_ip"):
            _check_ipv4(fip["fixed_ip"], f"{key}:fixed_ip")
        if "standby" in fip:
            standby = fip["standby"]
            _check_keys(standby, f"{key}:standby", ("server", "port", "fixed_ip"))
            if len([t for t in ("server", "port", "fixed_ip") if standby.get(t)]) != 1:
                _fail(f"{key}:standby", "name exactly one of server, port or fixed_ip")
        if fip.get("address"):
            _check_ipv4(fip["address"], f"{key}:address")
        elif not (fip.get("network") or openstack.get("external_network")):
            _fail(f"{key}:network", "required without address (or set hastack:openstack:external_network)")
    return {"addresses": addresses, "applies": bool(set(roles) & set(fips["roles"]))}


def _validate_pacemaker(pcmk, roles):
    base = "hastack:pacemaker"
    _check_keys(pcmk, base, ("nodes", "properties", "resource_defaults", "operation_defaults",
                             "primitives", "groups", "clones", "locations", "colocations",
                             "orders", "alerts", "cib_file", "remove_undeclared", "roles"))
    declared = {k: v for k, v in pcmk.items()
                if k not in ("nodes", "cib_file", "remove_undeclared", "roles")}
    config = __salt__["pacemaker.validate"](declared, pcmk.get("nodes"), base=base)
    if pcmk.get("cib_file") is not None and not os.path.isabs(str(pcmk["cib_file"])):
        _fail(f"{base}:cib_file", "must be an absolute path")
    if not isinstance(pcmk.get("remove_undeclared"), bool):
        _fail(f"{base}:remove_undeclared", "true or false")
    if not isinstance(pcmk.get("roles"), list) or any(r not in KNOWN_ROLES for r in pcmk["roles"]):
        _fail(f"{base}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
    return {"config": config, "nodes": pcmk["nodes"], "cib_file": pcmk.get("cib_file"),
            "remove_undeclared": pcmk["remove_undeclared"],
            "applies": bool(set(roles) & set(pcmk["roles"]))}


def _validate_clusters(config, out, roles, minion_id):
    """The main cluster (``hastack:ceph``) and any others (``hastack:ceph_clusters``).

    Each gets ``base`` (its pillar path), ``prefix`` (of its state ids), ``conf`` (its
    ceph.conf path), ``is_admin_minion`` and ``local_users`` (whose keyrings this
    minion gets). ``out["clusters"]`` maps every cluster name to its tree.
    """
    out["clusters"] = {}
    trees = []
    if "ceph" in config:
        trees.append(("hastack:ceph", config["ceph"], "hastack-ceph"))
    extra = config.get("ceph_clusters") or {}
    if not isinstance(extra, dict):
        _fail("hastack:ceph_clusters", "must be a mapping of cluster name to settings")
    if extra and "ceph" not in config:
        _fail("hastack:ceph", "required when hastack:ceph_clusters is set (the main cluster)")
    for name, tree in extra.items():
        base = f"hastack:ceph_clusters:{name}"
        if not isinstance(tree, dict):
            _fail(base, "must be a mapping")
        if tree.get("cluster", name) != name:
            _fail(f"{base}:cluster", f"must be '{name}' (the key) or left out")
        trees.append((base, dict(tree, cluster=name), f"hastack-ceph-{name}"))
    for base, tree, prefix in trees:
        cluster = __salt__["ceph_client.validate"](tree, roles=roles, known_roles=KNOWN_ROLES,
                                                   base=base)
        if cluster["cluster"] in out["clusters"]:
            _fail(f"{base}:cluster", f"cluster '{cluster['cluster']}' is defined twice")
        cluster.update(
            base=base, prefix=prefix,
            conf=os.path.join(cluster["conf_dir"], f"{cluster['cluster']}.conf"),
            is_admin_minion=cluster["admin_minion"] == minion_id,
            local_users=sorted(user for user, spec in cluster["users"].items()
                               if set(spec["roles"]) & set(roles)),
        )
        out["clusters"][cluster["cluster"]] = cluster
    if "ceph" in config:
        out["ceph"] = out["clusters"][trees[0][1].get("cluster")]
    out.pop("ceph_clusters", None)


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
    clusters = out["clusters"]
    roles = set(out["roles"])
    for name in ("glance", "cinder", "nova", "libvirt"):
        if name in config and "ceph" not in out:
            _fail("hastack:ceph", f"required by hastack:{name}")

    def service_roles(name):
        svc_roles = config[name].get("roles")
        if not isinstance(svc_roles, list) or any(r not in KNOWN_ROLES for r in svc_roles):
            _fail(f"hastack:{name}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
        return svc_roles

    def cluster_of(spec, key):
        """The cluster a service or backend names (``cluster:``), by default the main one."""
        name = spec.get("cluster", out["ceph"]["cluster"])
        if name not in clusters:
            _fail(f"{key}:cluster", f"'{name}' is neither hastack:ceph:cluster nor in hastack:ceph_clusters")
        return clusters[name]

    def check_pool_and_user(cluster, pool, user, key):
        _check_ref(pool, f"{key}:pool", f"{cluster['base']}:pools", cluster["pools"])
        _check_ref(user, f"{key}:user", f"{cluster['base']}:users", cluster["users"])
        # The user's osd caps must let it write to the pool the service will use.
        writable, unrestricted = set(), False
        for grant in cluster["users"][user]["caps"].get("osd", "").split(", "):
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
            _fail(f"{key}:pool", f"client.{user}'s osd caps do not let it write to pool '{pool}'")

    def check_local_user(cluster, user, applies, key):
        """A service configured here needs its user's keyring here too."""
        if applies and user not in cluster["local_users"]:
            _fail(key, f"client.{user}'s keyring does not reach this minion: add a role of "
                       f"this minion to {cluster['base']}:users:{user}:roles")

    secrets = {}
    if "libvirt" in config:
        lv = config["libvirt"]
        _check_keys(lv, "hastack:libvirt", ("uri", "secrets", "roles"))
        service_roles("libvirt")
        for uuid, spec in (lv.get("secrets") or {}).items():
            key = f"hastack:libvirt:secrets:{uuid}"
            uuid = _check_uuid(str(uuid), key)
            _check_keys(spec, key, ("ceph_user", "cluster", "replace_usage"))
            cluster = cluster_of(spec, key)
            _check_ref(spec.get("ceph_user"), f"{key}:ceph_user", f"{cluster['base']}:users",
                       cluster["users"])
            if not isinstance(spec.get("replace_usage", False), bool):
                _fail(f"{key}:replace_usage", "true or false")
            user = spec["ceph_user"]
            # libvirt allows one secret per usage name: name other clusters' secrets apart.
            usage = f"client.{user} secret"
            if cluster is not out["ceph"]:
                usage = f"{cluster['cluster']}.{usage}"
            secrets[uuid] = {"ceph_user": user, "cluster": cluster["cluster"], "usage": usage,
                             "key_pillar": cluster["users"][user]["key_pillar"],
                             "replace_usage": spec.get("replace_usage", False),
                             "user_state": (f"{cluster['prefix']}-user-{user}"
                                            if cluster["is_admin_minion"] else None)}
        out["libvirt"] = {"uri": lv.get("uri"), "secrets": secrets, "roles": lv["roles"],
                          "applies": bool(roles & set(lv["roles"]))}

    def check_secret(uuid, cluster, user, key):
        # A compute needs the secret defined in its libvirt; elsewhere it is not used.
        if "compute" not in roles:
            return
        if uuid not in secrets:
            _fail(key, f"{uuid} is not defined in hastack:libvirt:secrets (computes need it)")
        held = secrets[uuid]
        if (held["cluster"], held["ceph_user"]) != (cluster["cluster"], user):
            _fail(key, f"secret {uuid} holds the key of '{held['ceph_user']}' in cluster "
                       f"'{held['cluster']}', not of the rbd user '{user}' in '{cluster['cluster']}'")

    if "glance" in config:
        gl = config["glance"]
        _check_keys(gl, "hastack:glance", ("backend", "store_name", "pool", "user", "chunk_size",
                                           "cluster", "config_file", "service", "roles"))
        service_roles("glance")
        if gl.get("backend") != "rbd":
            _fail("hastack:glance:backend", f"only 'rbd' is managed, got {gl.get('backend')!r}")
        cluster = cluster_of(gl, "hastack:glance")
        check_pool_and_user(cluster, gl.get("pool"), gl.get("user"), "hastack:glance")
        _check_service(gl["service"], "hastack:glance:service")
        store = {"rbd_store_pool": gl["pool"], "rbd_store_user": gl["user"],
                 "rbd_store_ceph_conf": cluster["conf"], "rbd_store_chunk_size": gl["chunk_size"]}
        if release == "folsom":
            settings = {"DEFAULT": {"default_store": "rbd", "show_image_direct_url": "True", **store}}
        else:
            name = gl["store_name"]
            settings = {"DEFAULT": {"enabled_backends": f"{name}:rbd", "show_image_direct_url": "True"},
                        "glance_store": {"default_backend": name}, name: store}
        applies = bool(roles & set(gl["roles"]))
        check_local_user(cluster, gl["user"], applies, "hastack:glance:user")
        out["glance"] = dict(gl, settings=settings, applies=applies, cluster=cluster["cluster"],
                             keyring_state=f"{cluster['prefix']}-keyring-{gl['user']}")

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
        applies = bool(roles & set(ci["roles"]))
        settings, keyring_states, backend_users = {"DEFAULT": {}}, set(), set()
        for bname, spec in sorted(backends.items()):
            key = f"hastack:cinder:backends:{bname}"
            if not re.match(r"^[A-Za-z0-9_-]+$", str(bname)):
                _fail(key, "not a backend name")
            _check_keys(spec, key, ("pool", "user", "secret_uuid", "backend_name", "cluster"))
            cluster = cluster_of(spec, key)
            check_pool_and_user(cluster, spec.get("pool"), spec.get("user"), key)
            uuid = _check_uuid(spec.get("secret_uuid"), f"{key}:secret_uuid")
            check_secret(uuid, cluster, spec["user"], f"{key}:secret_uuid")
            check_local_user(cluster, spec["user"], applies, f"{key}:user")
            keyring_states.add(f"{cluster['prefix']}-keyring-{spec['user']}")
            backend_users.add(spec["user"])
            rbd = {"rbd_pool": spec["pool"], "rbd_user": spec["user"], "rbd_secret_uuid": uuid}
            if release == "folsom":
                settings["DEFAULT"].update(volume_driver="cinder.volume.driver.RBDDriver", **rbd)
            else:
                settings[bname] = {"volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                                   "volume_backend_name": spec.get("backend_name", bname),
                                   "rbd_ceph_conf": cluster["conf"], **rbd}
        if release != "folsom":
            settings["DEFAULT"]["enabled_backends"] = ",".join(sorted(backends))
        # CEPH_ARGS can name one id: the backends' common user, or ceph_args_user.
        ceph_args_user = ci.get("ceph_args_user") or (
            next(iter(backend_users)) if len(backend_users) == 1 else None)
        out["cinder"] = dict(ci, settings=settings, ceph_args_user=ceph_args_user, release=release,
                             keyring_states=sorted(keyring_states), applies=applies)

    if "nova" in config:
        nv = config["nova"]
        _check_keys(nv, "hastack:nova", ("images_type", "pool", "user", "secret_uuid", "cluster",
                                         "config_file", "service", "roles"))
        service_roles("nova")
        _check_service(nv["service"], "hastack:nova:service")
        if nv.get("images_type") not in ("rbd", "default"):
            _fail("hastack:nova:images_type", f"'rbd' or 'default', got {nv.get('images_type')!r}")
        cluster = cluster_of(nv, "hastack:nova")
        _check_ref(nv.get("user"), "hastack:nova:user", f"{cluster['base']}:users", cluster["users"])
        uuid = _check_uuid(nv.get("secret_uuid"), "hastack:nova:secret_uuid")
        check_secret(uuid, cluster, nv["user"], "hastack:nova:secret_uuid")
        libvirt = {"rbd_user": nv["user"], "rbd_secret_uuid": uuid}
        if nv["images_type"] == "rbd":
            if release == "folsom":
                _fail("hastack:nova:images_type", "RBD-backed instance disks need a release after folsom")
            check_pool_and_user(cluster, nv.get("pool"), nv["user"], "hastack:nova")
            if "glance" in out and out["glance"]["cluster"] != cluster["cluster"]:
                _fail("hastack:nova:cluster",
                      f"instance disks in cluster '{cluster['cluster']}' and Glance images in "
                      f"'{out['glance']['cluster']}': copy-on-write clones need one cluster")
            libvirt.update(images_type="rbd", images_rbd_pool=nv["pool"],
                           images_rbd_ceph_conf=cluster["conf"])
        # Folsom's nova took the volume's rbd user and secret from cinder: nothing to set.
        settings = {} if release == "folsom" else {"libvirt": libvirt}
        applies = bool(roles & set(nv["roles"]))
        check_local_user(cluster, nv["user"], applies, "hastack:nova:user")
        out["nova"] = dict(nv, settings=settings, applies=applies, cluster=cluster["cluster"],
                           keyring_state=f"{cluster['prefix']}-keyring-{nv['user']}")


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

"""
The ``hastack`` pillar schema: every check a highstate depends on, each error naming
the pillar key (``SaltInvocationError``), run once per render before any state acts.
``validate`` returns the tree normalized, with keys replaced by the pillar paths that
hold them (``key_pillar``), so that rendered SLS never carries a secret.
"""

import grp
import os
import pwd
import re
import uuid

from salt.exceptions import SaltInvocationError

from hastack_utils import cephx, cib, failover, options, sites

KNOWN_ROLES = ("controller", "compute", "network", "storage")
RELEASES = options.RELEASES
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def validate(config, minion_id, origins=None):
    """
    Validate the ``hastack`` pillar tree (merged over the formula's defaults) of the
    minion ``minion_id`` and return it normalized. Raises ``SaltInvocationError``
    naming the bad key. ``origins`` (``sites.layered``) says where each setting of a
    layered tree really is: errors and ``key_pillar`` name that place.
    """
    try:
        return _validate(config, minion_id, origins or {})
    except SaltInvocationError as err:
        raise sites.renamed(err, origins or {}) from None


def _validate(config, minion_id, origins):
    if not isinstance(config, dict):
        raise SaltInvocationError("hastack: the pillar tree is missing or not a mapping")
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
    _validate_clusters(config, out, roles, minion_id, origins)
    _validate_openstack(config, out)
    if "cephfs" in config:
        out["cephfs"] = _validate_cephfs(config, out, roles)
        for mountpoint, mount in out["cephfs"]["mounts"].items():
            mount["pillar_key"] = sites.where(f"hastack:cephfs:mounts:{mountpoint}", origins)
    identities = {}
    if "computes" in config:
        out["computes"], identities = _validate_computes(config, out, roles, minion_id)
    if "pacemaker" in config:
        out["pacemaker"] = _validate_pacemaker(config["pacemaker"], roles, identities)
    if "floating_ips" in config:
        out["floating_ips"] = _validate_floating_ips(
            config["floating_ips"], config.get("openstack") or {}, roles
        )
        # Each address's errors name where it is in the pillar (a site's, the minion's).
        out["floating_ips"]["addresses"] = {
            label: dict(
                fip, pillar_key=sites.where(f"hastack:floating_ips:addresses:{label}", origins)
            )
            for label, fip in out["floating_ips"]["addresses"].items()
        }
    if "failover" in config:
        if "pacemaker" not in config:
            _fail("hastack:failover", "needs hastack:pacemaker (the cluster it heals)")
        addresses = (config.get("floating_ips") or {}).get("addresses") or {}
        out["failover"] = dict(
            failover.policy(config["failover"], config["pacemaker"].get("nodes"), addresses),
            applies=out["pacemaker"]["applies"],
        )
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
        _fail(
            "hastack:openstack:cloud",
            "required for floating IPs: a clouds.yaml entry name or "
            "openstacksdk connection arguments",
        )
    for label, fip in addresses.items():
        key = f"{base}:addresses:{label}"
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", str(label)):
            _fail(key, "the label must be letters, digits, '.', '_' or '-'")
        _check_keys(
            fip,
            key,
            ("server", "port", "fixed_ip", "address", "network", "absent", "release", "standby"),
        )
        if fip.get("absent"):
            given = [t for t in ("address", "server", "port", "fixed_ip") if fip.get(t)]
            if len(given) != 1:
                _fail(key, "with absent, name exactly one of address, server, port or fixed_ip")
            if fip.get("release") and not fip.get("address"):
                _fail(f"{key}:release", "releases an address: give address")
            if fip.get("address"):
                _check_ipv4(fip["address"], f"{key}:address")
            if fip.get("fixed_ip"):
                _check_ipv4(fip["fixed_ip"], f"{key}:fixed_ip")
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
            _fail(
                f"{key}:network",
                "required without address (or set hastack:openstack:external_network)",
            )
    return {"addresses": addresses, "applies": bool(set(roles) & set(fips["roles"]))}


def _validate_pacemaker(pcmk, roles, generated=None):
    """``generated``: ``{section: {id: (spec, the pillar key that made it)}}``, items
    other pillar keys declare (the compute identities' primitives and locations)."""
    base = "hastack:pacemaker"
    settings = ("nodes", "cib_file", "remove_undeclared", "roles")
    _check_keys(pcmk, base, settings + cib.SECTIONS)
    declared = {k: v for k, v in pcmk.items() if k not in settings}
    for section, items in (generated or {}).items():
        declared[section] = dict(declared.get(section) or {})
        for item_id, (spec, origin) in items.items():
            for other_section in cib.SECTIONS:
                if item_id in (pcmk.get(other_section) or {}):
                    _fail(
                        f"{base}:{other_section}:{item_id}",
                        f"{origin} declares '{item_id}' too: remove one of them",
                    )
            declared[section][item_id] = spec
    config = cib.validate(declared, pcmk.get("nodes"), base=base)
    if pcmk.get("cib_file") is not None and not os.path.isabs(str(pcmk["cib_file"])):
        _fail(f"{base}:cib_file", "must be an absolute path")
    if not isinstance(pcmk.get("remove_undeclared"), bool):
        _fail(f"{base}:remove_undeclared", "true or false")
    if not isinstance(pcmk.get("roles"), list) or any(r not in KNOWN_ROLES for r in pcmk["roles"]):
        _fail(f"{base}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
    return {
        "config": config,
        "nodes": pcmk["nodes"],
        "cib_file": pcmk.get("cib_file"),
        "remove_undeclared": pcmk["remove_undeclared"],
        "applies": bool(set(roles) & set(pcmk["roles"])),
    }


def _validate_clusters(config, out, roles, minion_id, origins):
    """The main cluster (``hastack:ceph``) and any others (``hastack:ceph_clusters``).

    Each gets ``base`` (its pillar path), ``main`` (whether it is ``hastack:ceph``), ``conf`` (its
    ceph.conf path), ``is_admin_minion`` and ``local_users`` (whose keyrings this
    minion gets). ``out["clusters"]`` maps every cluster name to its tree.
    """
    out["clusters"] = {}
    trees = []
    if "ceph" in config:
        trees.append(("hastack:ceph", config["ceph"], True))
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
        trees.append((base, dict(tree, cluster=name), False))
    for base, tree, main in trees:
        cluster = validate_ceph(tree, roles=roles, known_roles=KNOWN_ROLES, base=base)
        for user in cluster["users"].values():
            # A key a site or the minion layer supplies is read from there.
            user["key_pillar"] = sites.where(user["key_pillar"], origins)
        if cluster["cluster"] in out["clusters"]:
            _fail(f"{base}:cluster", f"cluster '{cluster['cluster']}' is defined twice")
        cluster.update(
            base=base,
            main=main,
            conf=os.path.join(cluster["conf_dir"], f"{cluster['cluster']}.conf"),
            is_admin_minion=cluster["admin_minion"] == minion_id,
            # CephFS paths the admin minion creates (filled in by hastack:cephfs).
            fs_dirs={},
            local_users=sorted(
                user for user, spec in cluster["users"].items() if set(spec["roles"]) & set(roles)
            ),
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
        _fail(
            "hastack:openstack:release",
            f"unknown release '{release}' (known: {', '.join(RELEASES)})",
        )
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
            _fail(
                f"{key}:cluster",
                f"'{name}' is neither hastack:ceph:cluster nor in hastack:ceph_clusters",
            )
        return clusters[name]

    def check_pool_and_user(cluster, pool, user, key):
        _check_ref(pool, f"{key}:pool", f"{cluster['base']}:pools", cluster["pools"])
        _check_ref(user, f"{key}:user", f"{cluster['base']}:users", cluster["users"])
        # The user's osd caps must let it write to the pool the service will use.
        if not cephx.pool_writable(cluster["users"][user]["caps"].get("osd"), pool):
            _fail(f"{key}:pool", f"client.{user}'s osd caps do not let it write to pool '{pool}'")

    def check_local_user(cluster, user, applies, key):
        """A service configured here needs its user's keyring here too."""
        if applies and user not in cluster["local_users"]:
            _fail(
                key,
                f"client.{user}'s keyring does not reach this minion: add a role of "
                f"this minion to {cluster['base']}:users:{user}:roles",
            )

    secrets = {}
    if "libvirt" in config:
        lv = config["libvirt"]
        _check_keys(lv, "hastack:libvirt", ("uri", "secrets", "roles"))
        service_roles("libvirt")
        for secret_uuid, spec in (lv.get("secrets") or {}).items():
            key = f"hastack:libvirt:secrets:{secret_uuid}"
            secret_uuid = _check_uuid(str(secret_uuid), key)
            _check_keys(spec, key, ("ceph_user", "cluster", "replace_usage"))
            cluster = cluster_of(spec, key)
            _check_ref(
                spec.get("ceph_user"),
                f"{key}:ceph_user",
                f"{cluster['base']}:users",
                cluster["users"],
            )
            if not isinstance(spec.get("replace_usage", False), bool):
                _fail(f"{key}:replace_usage", "true or false")
            user = spec["ceph_user"]
            # libvirt allows one secret per usage name: name other clusters' secrets apart.
            usage = f"client.{user} secret"
            if cluster is not out["ceph"]:
                usage = f"{cluster['cluster']}.{usage}"
            secrets[secret_uuid] = {
                "ceph_user": user,
                "cluster": cluster["cluster"],
                "usage": usage,
                "key_pillar": cluster["users"][user]["key_pillar"],
                "replace_usage": spec.get("replace_usage", False),
                "admin_here": cluster["is_admin_minion"],
            }
        out["libvirt"] = {
            "uri": lv.get("uri"),
            "secrets": secrets,
            "roles": lv["roles"],
            "applies": bool(roles & set(lv["roles"])),
        }

    def check_secret(secret_id, cluster, user, key):
        # A compute needs the secret defined in its libvirt; elsewhere it is not used.
        if "compute" not in roles:
            return
        if secret_id not in secrets:
            _fail(key, f"{secret_id} is not defined in hastack:libvirt:secrets (computes need it)")
        held = secrets[secret_id]
        if (held["cluster"], held["ceph_user"]) != (cluster["cluster"], user):
            _fail(
                key,
                f"secret {secret_id} holds the key of '{held['ceph_user']}' in cluster "
                f"'{held['cluster']}', not of the rbd user '{user}' in '{cluster['cluster']}'",
            )

    if "glance" in config:
        gl = config["glance"]
        _check_keys(
            gl,
            "hastack:glance",
            (
                "backend",
                "store_name",
                "pool",
                "user",
                "chunk_size",
                "cluster",
                "config_file",
                "service",
                "roles",
            ),
        )
        service_roles("glance")
        if gl.get("backend") != "rbd":
            _fail("hastack:glance:backend", f"only 'rbd' is managed, got {gl.get('backend')!r}")
        cluster = cluster_of(gl, "hastack:glance")
        check_pool_and_user(cluster, gl.get("pool"), gl.get("user"), "hastack:glance")
        _check_service(gl["service"], "hastack:glance:service")
        settings = options.glance(
            release, gl["store_name"], gl["pool"], gl["user"], cluster["conf"], gl["chunk_size"]
        )
        applies = bool(roles & set(gl["roles"]))
        check_local_user(cluster, gl["user"], applies, "hastack:glance:user")
        out["glance"] = dict(
            gl,
            settings=settings,
            applies=applies,
            cluster=cluster["cluster"],
        )

    if "cinder" in config:
        ci = config["cinder"]
        _check_keys(
            ci,
            "hastack:cinder",
            (
                "backends",
                "config_file",
                "service",
                "roles",
                "ceph_args_user",
                "systemd_dir",
                "upstart_dir",
            ),
        )
        service_roles("cinder")
        _check_service(ci["service"], "hastack:cinder:service")
        backends = ci.get("backends") or {}
        if not backends:
            _fail("hastack:cinder:backends", "at least one backend")
        if release == "folsom" and len(backends) > 1:
            _fail("hastack:cinder:backends", "folsom supports one backend only")
        applies = bool(roles & set(ci["roles"]))
        rbd_backends, keyrings, backend_users = {}, set(), set()
        for bname, spec in sorted(backends.items()):
            key = f"hastack:cinder:backends:{bname}"
            if not re.match(r"^[A-Za-z0-9_-]+$", str(bname)):
                _fail(key, "not a backend name")
            _check_keys(spec, key, ("pool", "user", "secret_uuid", "backend_name", "cluster"))
            cluster = cluster_of(spec, key)
            check_pool_and_user(cluster, spec.get("pool"), spec.get("user"), key)
            secret_id = _check_uuid(spec.get("secret_uuid"), f"{key}:secret_uuid")
            check_secret(secret_id, cluster, spec["user"], f"{key}:secret_uuid")
            check_local_user(cluster, spec["user"], applies, f"{key}:user")
            keyrings.add((cluster["cluster"], spec["user"]))
            backend_users.add(spec["user"])
            rbd_backends[bname] = {
                "pool": spec["pool"],
                "user": spec["user"],
                "secret_uuid": secret_id,
                "backend_name": spec.get("backend_name", bname),
                "ceph_conf": cluster["conf"],
            }
        settings = options.cinder(release, rbd_backends)
        # CEPH_ARGS can name one id: the backends' common user, or ceph_args_user.
        ceph_args_user = ci.get("ceph_args_user") or (
            next(iter(backend_users)) if len(backend_users) == 1 else None
        )
        out["cinder"] = dict(
            ci,
            settings=settings,
            ceph_args_user=ceph_args_user,
            release=release,
            keyrings=[list(pair) for pair in sorted(keyrings)],
            applies=applies,
        )

    if "nova" in config:
        nv = config["nova"]
        _check_keys(
            nv,
            "hastack:nova",
            (
                "images_type",
                "pool",
                "user",
                "secret_uuid",
                "cluster",
                "config_file",
                "service",
                "roles",
            ),
        )
        service_roles("nova")
        _check_service(nv["service"], "hastack:nova:service")
        if nv.get("images_type") not in ("rbd", "default"):
            _fail("hastack:nova:images_type", f"'rbd' or 'default', got {nv.get('images_type')!r}")
        cluster = cluster_of(nv, "hastack:nova")
        _check_ref(
            nv.get("user"), "hastack:nova:user", f"{cluster['base']}:users", cluster["users"]
        )
        secret_id = _check_uuid(nv.get("secret_uuid"), "hastack:nova:secret_uuid")
        check_secret(secret_id, cluster, nv["user"], "hastack:nova:secret_uuid")
        if nv["images_type"] == "rbd":
            if release == "folsom":
                _fail(
                    "hastack:nova:images_type",
                    "RBD-backed instance disks need a release after folsom",
                )
            check_pool_and_user(cluster, nv.get("pool"), nv["user"], "hastack:nova")
            if "glance" in out and out["glance"]["cluster"] != cluster["cluster"]:
                _fail(
                    "hastack:nova:cluster",
                    f"instance disks in cluster '{cluster['cluster']}' and Glance images in "
                    f"'{out['glance']['cluster']}': copy-on-write clones need one cluster",
                )
        rbd_disks = nv["images_type"] == "rbd"
        settings = options.nova(
            release,
            nv["user"],
            secret_id,
            images_pool=nv["pool"] if rbd_disks else None,
            ceph_conf=cluster["conf"],
        )
        applies = bool(roles & set(nv["roles"]))
        check_local_user(cluster, nv["user"], applies, "hastack:nova:user")
        out["nova"] = dict(
            nv,
            settings=settings,
            applies=applies,
            cluster=cluster["cluster"],
        )


def _need(cond, key, message):
    if not cond:
        raise SaltInvocationError(f"{key}: {message}")


def validate_ceph(ceph, roles=None, known_roles=None, base="hastack:ceph"):
    """
    Validate one cluster's tree (``hastack:ceph`` or ``hastack:ceph_clusters:<name>``,
    merged with the formula defaults) and return it normalized, with each user's key
    replaced by ``key_pillar`` (the pillar path of the key).

    ``roles`` are the minion's roles: owners and groups of the keyrings this minion
    gets must exist here. With ``known_roles``, every user's ``roles`` must be among
    them. Every error names the pillar key, under ``base``.
    """
    _need(isinstance(ceph, dict), base, "must be a mapping")
    unknown = set(ceph) - {
        "cluster",
        "conf_dir",
        "fsid",
        "mon_host",
        "admin_minion",
        "admin_keyring",
        "timeout",
        "backend",
        "pools",
        "users",
        "filesystems",
    }
    _need(not unknown, base, f"unknown setting(s): {', '.join(sorted(unknown))}")
    out = dict(ceph)
    cluster = ceph.get("cluster")
    _need(
        isinstance(cluster, str) and NAME_RE.match(cluster or ""),
        f"{base}:cluster",
        f"not a cluster name: {cluster!r}",
    )
    conf_dir = ceph.get("conf_dir")
    _need(
        isinstance(conf_dir, str) and os.path.isabs(conf_dir),
        f"{base}:conf_dir",
        f"must be an absolute path, got {conf_dir!r}",
    )
    fsid = ceph.get("fsid")
    _need(fsid is not None, f"{base}:fsid", "required: the cluster's fsid")
    try:
        out["fsid"] = str(uuid.UUID(str(fsid)))
    except ValueError as err:
        raise SaltInvocationError(f"{base}:fsid: not a UUID: {fsid!r}") from err
    cephx.parse_mon_host(ceph.get("mon_host"), f"{base}:mon_host")
    _need(
        isinstance(ceph.get("admin_minion"), str) and ceph["admin_minion"],
        f"{base}:admin_minion",
        "required: the minion id that holds client.admin",
    )
    admin_keyring = ceph.get("admin_keyring") or os.path.join(
        conf_dir, f"{cluster}.client.admin.keyring"
    )
    _need(os.path.isabs(admin_keyring), f"{base}:admin_keyring", "must be an absolute path")
    out["admin_keyring"] = admin_keyring
    timeout = ceph.get("timeout")
    _need(
        isinstance(timeout, int) and not isinstance(timeout, bool) and 1 <= timeout <= 300,
        f"{base}:timeout",
        f"seconds from 1 to 300, got {timeout!r}",
    )

    _need(
        ceph.get("backend", "auto") in ("auto", "librados", "cli"),
        f"{base}:backend",
        f"auto, librados or cli, got {ceph.get('backend')!r}",
    )
    out.setdefault("backend", "auto")
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
        _need(
            isinstance(pg_num, int) and not isinstance(pg_num, bool) and 1 <= pg_num <= 65536,
            f"{key}:pg_num",
            f"a whole number from 1 to 65536, got {pg_num!r}",
        )
        app = spec.get("application", "rbd")
        _need(
            app in cephx.POOL_APPLICATIONS,
            f"{key}:application",
            f"unknown pool application {app!r} (known: {', '.join(cephx.POOL_APPLICATIONS)})",
        )
        out["pools"][str(name)] = {"pg_num": pg_num, "application": app}

    out["filesystems"] = _validate_filesystems(ceph.get("filesystems"), out["pools"], base)

    my_roles = set(roles or [])
    users = ceph.get("users") or {}
    _need(isinstance(users, dict), f"{base}:users", "must be a mapping of user name to settings")
    out["users"] = {}
    for name, spec in users.items():
        key = f"{base}:users:{name}"
        _need(
            NAME_RE.match(str(name)) and "." not in str(name),
            key,
            "not a cephx user name (give 'glance', not 'client.glance')",
        )
        _need(str(name) != "admin", key, "client.admin is not managed by hastack")
        _need(isinstance(spec, dict), key, "must be a mapping")
        unknown = set(spec) - {"key", "caps", "keyring", "roles"}
        _need(not unknown, key, f"unknown setting(s): {', '.join(sorted(unknown))}")
        _need(spec.get("key") is not None, f"{key}:key", "missing (the user's cephx key)")
        _need(
            cephx.decode_key(spec["key"]) is not None,
            f"{key}:key",
            "not a cephx key (base64 of a 28-byte AES key, as 'ceph-authtool --gen-print-key' prints)",
        )
        # Ceph refuses a user without caps ("auth import: no caps supplied").
        _need(
            isinstance(spec.get("caps"), dict) and spec["caps"],
            f"{key}:caps",
            "required: at least one daemon type's grants, e.g. {mon: profile rbd}",
        )
        caps = cephx.parse_caps(
            spec.get("caps") or {},
            pools=list(out["pools"]),
            where=f"{key}:caps",
            pools_key=f"{base}:pools",
        )
        user_roles = spec.get("roles", ["controller"])
        _need(isinstance(user_roles, list), f"{key}:roles", "must be a list of roles")
        for role in user_roles:
            _need(
                known_roles is None or role in known_roles,
                f"{key}:roles",
                f"unknown role '{role}' (known: {', '.join(known_roles or [])})",
            )
        keyring = dict(spec.get("keyring") or {})
        unknown = set(keyring) - {"owner", "group", "mode", "path"}
        _need(not unknown, f"{key}:keyring", f"unknown setting(s): {', '.join(sorted(unknown))}")
        keyring.setdefault("owner", "root")
        keyring.setdefault("group", "root")
        keyring["mode"] = cephx.keyring_file_mode(
            keyring.get("mode", "0600"), f"{key}:keyring:mode"
        )
        keyring.setdefault("path", os.path.join(conf_dir, f"{cluster}.client.{name}.keyring"))
        _need(os.path.isabs(keyring["path"]), f"{key}:keyring:path", "must be an absolute path")
        if my_roles & set(user_roles):
            user_id(keyring["owner"], f"{key}:keyring:owner")
            group_id(keyring["group"], f"{key}:keyring:group")
        out["users"][str(name)] = {
            "key_pillar": f"{base}:users:{name}:key",
            "caps": caps,
            "roles": list(user_roles),
            "keyring": keyring,
        }
    return out


def _validate_filesystems(filesystems, pools, base):
    """CephFS filesystems of one cluster: ``{name: {metadata_pool, data_pool}}``, both
    pools declared in the cluster's pools with application ``cephfs``."""
    filesystems = filesystems or {}
    _need(
        isinstance(filesystems, dict),
        f"{base}:filesystems",
        "must be a mapping of filesystem name to {metadata_pool, data_pool}",
    )
    out = {}
    for name, spec in filesystems.items():
        key = f"{base}:filesystems:{name}"
        _need(NAME_RE.match(str(name)), key, "not a filesystem name")
        _check_keys(spec, key, ("metadata_pool", "data_pool"))
        for role in ("metadata_pool", "data_pool"):
            pool = spec.get(role)
            _need(pool is not None, f"{key}:{role}", "required: a pool of this cluster")
            _check_ref(pool, f"{key}:{role}", f"{base}:pools", pools)
            _need(
                pools[pool]["application"] == "cephfs",
                f"{key}:{role}",
                f"pool '{pool}' must have application: cephfs in {base}:pools:{pool}",
            )
        _need(
            spec["metadata_pool"] != spec["data_pool"],
            key,
            "metadata_pool and data_pool must be two pools",
        )
        out[str(name)] = {"metadata_pool": spec["metadata_pool"], "data_pool": spec["data_pool"]}
    return out


def _validate_cephfs(config, out, roles):
    """``hastack:cephfs``: CephFS directories mounted on the minions of its roles.

    Each mount (keyed by its mount point) names a filesystem of a cluster, a path in
    it and the cephx user that mounts it, whose mds caps must reach the path; it is
    mounted on the minions of its ``roles`` (default ``hastack:cephfs:roles``). The
    cluster's admin minion creates every mounted path (``fs_dirs`` of the cluster).
    """
    base = "hastack:cephfs"
    cfs = config["cephfs"]
    _check_keys(cfs, base, ("mounts", "client", "roles"))
    if not isinstance(cfs.get("roles"), list) or any(r not in KNOWN_ROLES for r in cfs["roles"]):
        _fail(f"{base}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
    if "ceph" not in out:
        _fail("hastack:ceph", f"required by {base}")
    mounts = cfs.get("mounts") or {}
    if not isinstance(mounts, dict):
        _fail(f"{base}:mounts", "must be a mapping of mount point to settings")
    normalized = {}
    for mountpoint, spec in mounts.items():
        key = f"{base}:mounts:{mountpoint}"
        mountpoint = str(mountpoint)
        if (
            not os.path.isabs(mountpoint)
            or os.path.normpath(mountpoint) != mountpoint.rstrip("/")
            or mountpoint == "/"
        ):
            _fail(key, "the mount point must be an absolute, normalized path other than /")
        _check_keys(
            spec,
            key,
            ("fs", "path", "user", "cluster", "owner", "group", "mode", "client", "roles"),
        )
        mount_roles = spec.get("roles", cfs["roles"])
        if not isinstance(mount_roles, list) or any(r not in KNOWN_ROLES for r in mount_roles):
            _fail(f"{key}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
        applies = bool(set(roles) & set(mount_roles))
        cluster_name = spec.get("cluster", out["ceph"]["cluster"])
        if cluster_name not in out["clusters"]:
            _fail(
                f"{key}:cluster",
                f"'{cluster_name}' is neither hastack:ceph:cluster nor in hastack:ceph_clusters",
            )
        cluster = out["clusters"][cluster_name]
        fs = spec.get("fs")
        if fs is None:
            _fail(f"{key}:fs", "required: the CephFS filesystem's name")
        _check_ref(fs, f"{key}:fs", f"{cluster['base']}:filesystems", cluster["filesystems"])
        path = spec.get("path", "/")
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or ".." in path.split("/")
            or os.path.normpath(path) != (path.rstrip("/") or "/")
        ):
            _fail(
                f"{key}:path",
                f"{path!r} is outside filesystem {fs}: give an absolute, normalized path in "
                "it, such as /nova",
            )
        user = spec.get("user")
        _check_ref(user, f"{key}:user", f"{cluster['base']}:users", cluster["users"])
        if not cephx.fs_path_writable(cluster["users"][user]["caps"].get("mds"), fs, path):
            _fail(
                f"{key}:user",
                f"client.{user}'s mds caps do not let it read and write {path} of {fs} "
                f"(as 'ceph fs authorize {fs} client.{user} {path} rw' grants)",
            )
        client = spec.get("client", cfs.get("client"))
        if client not in ("fuse", "kernel"):
            _fail(f"{key}:client", f"fuse or kernel, got {client!r}")
        owner, group = spec.get("owner", "root"), spec.get("group", "root")
        if applies:
            if user not in cluster["local_users"]:
                _fail(
                    f"{key}:user",
                    f"client.{user}'s keyring does not reach this minion: add a role of this "
                    f"minion to {cluster['base']}:users:{user}:roles",
                )
            user_id(owner, f"{key}:owner")
            group_id(group, f"{key}:group")
        normalized[mountpoint] = {
            "cluster": cluster_name,
            "conf": cluster["conf"],
            "fs": fs,
            "path": path.rstrip("/") or "/",
            "user": user,
            "keyring": cluster["users"][user]["keyring"]["path"],
            "client": client,
            "owner": owner,
            "group": group,
            "mode": cephx.file_mode(spec.get("mode", "0755"), f"{key}:mode"),
            "applies": applies,
        }
        dirs = cluster["fs_dirs"].setdefault(fs, [])
        if normalized[mountpoint]["path"] not in dirs:
            dirs.append(normalized[mountpoint]["path"])
    for cluster in out["clusters"].values():
        cluster["fs_dirs"] = {fs: sorted(paths) for fs, paths in cluster["fs_dirs"].items()}
    return {
        "mounts": normalized,
        "roles": cfs["roles"],
        "applies": any(mount["applies"] for mount in normalized.values()),
    }


def _validate_computes(config, out, roles, minion_id):
    """``hastack:computes``: the compute identities (the workshop's ``host1..3``).

    Each identity is a nova-compute with ``host=<identity>``, run by Pacemaker, at home
    on its ``node``. Mode ``identity`` lets Pacemaker start it on a survivor (its VMs
    come back there from the shared instances directory); mode ``evacuate`` keeps it on
    its node, and a failure evacuates its VMs one by one. Returns the normalized tree
    and the Pacemaker items the identities declare (for ``_validate_pacemaker``).
    """
    base = "hastack:computes"
    cpt = config["computes"]
    _check_keys(
        cpt,
        base,
        (
            "identities",
            "evacuation",
            "instances_path",
            "config_file",
            "conf_dir",
            "resource",
            "roles",
        ),
    )
    if not isinstance(cpt.get("roles"), list) or any(r not in KNOWN_ROLES for r in cpt["roles"]):
        _fail(f"{base}:roles", f"a list of roles among {', '.join(KNOWN_ROLES)}")
    if "pacemaker" not in config:
        _fail("hastack:pacemaker", f"required by {base} (Pacemaker runs the identities)")
    nodes = config["pacemaker"].get("nodes")
    if not isinstance(nodes, list) or not nodes:
        _fail("hastack:pacemaker:nodes", f"required by {base}: the cluster's node names")
    for key in ("instances_path", "config_file", "conf_dir"):
        if not (isinstance(cpt.get(key), str) and os.path.isabs(cpt[key])):
            _fail(f"{base}:{key}", f"must be an absolute path, got {cpt.get(key)!r}")
    resource = cpt.get("resource") or {}
    _check_keys(resource, f"{base}:resource", ("agent", "command", "user", "score", "ops"))
    command = resource.get("command")
    if not (isinstance(command, str) and command.split() and command.startswith("/")):
        _fail(f"{base}:resource:command", "nova-compute's command line, from an absolute path")
    score = resource.get("score")
    if isinstance(score, bool) or not isinstance(score, int) or score <= 0:
        _fail(f"{base}:resource:score", f"a positive whole number, got {score!r}")
    identities = cpt.get("identities")
    normalized = {}
    generated = {"primitives": {}, "locations": {}}
    checked = failover.identities(identities, nodes, f"{base}:identities")
    failover.evacuation(cpt.get("evacuation"), f"{base}:evacuation")
    for name, ident in checked.items():
        key = f"{base}:identities:{name}"
        node, mode = ident["node"], ident["mode"]
        # Where it may run: anywhere (identity) or only at home (evacuate).
        may_run = list(nodes) if mode == "identity" else [node]
        conf = os.path.join(cpt["conf_dir"], f"nova-compute-{name}.conf")
        rid = f"p_nova-compute-{name}"
        words = command.split()
        generated["primitives"][rid] = (
            {
                "agent": resource["agent"],
                "params": {
                    "binfile": words[0],
                    "cmdline_options": " ".join(
                        words[1:] + ["--config-file", cpt["config_file"], "--config-file", conf]
                    ),
                    "user": resource["user"],
                },
                "ops": resource.get("ops") or {},
                # A moved identity stays where its VMs now run: moving it home again
                # would leave them behind (a fail-back is a person's decision).
                "meta": {"resource-stickiness": "INFINITY"},
            },
            key,
        )
        generated["locations"][f"lo_{name}_prefer_{node}"] = (
            {"rsc": rid, "node": node, "score": score},
            key,
        )
        if mode == "evacuate":
            for other in nodes:
                if other != node:
                    generated["locations"][f"lo_{name}_avoid_{other}"] = (
                        {"rsc": rid, "node": other, "score": "-INFINITY"},
                        key,
                    )
        normalized[name] = {
            "node": node,
            "mode": mode,
            "nodes": may_run,
            "conf": conf,
            "resource": rid,
        }
    here = sorted(n for n, ident in normalized.items() if minion_id in ident["nodes"])
    applies = bool(set(roles) & set(cpt["roles"])) and bool(here)
    resume = any(normalized[n]["mode"] == "identity" for n in here)
    if applies and resume:
        mounts = (out.get("cephfs") or {}).get("mounts") or {}
        if not (mounts.get(cpt["instances_path"]) or {}).get("applies"):
            _fail(
                f"{base}:instances_path",
                f"{cpt['instances_path']} must be shared for mode identity (every node runs "
                "the same guests' disks): declare it in hastack:cephfs:mounts for this "
                "minion's roles",
            )
    settings = {"DEFAULT": {"instances_path": cpt["instances_path"]}}
    if resume:
        settings["DEFAULT"]["resume_guests_state_on_host_boot"] = "True"
    out_tree = {
        "identities": normalized,
        "here": here,
        "settings": settings,
        "config_file": cpt["config_file"],
        "conf_dir": cpt["conf_dir"],
        # Created if missing, as ceph.conf's directory is.
        "dirs": sorted({os.path.dirname(cpt["config_file"]), cpt["conf_dir"]}),
        "instances_path": cpt["instances_path"],
        "roles": cpt["roles"],
        "applies": applies,
    }
    return out_tree, generated


def user_id(owner, where="owner"):
    try:
        return pwd.getpwnam(str(owner)).pw_uid
    except KeyError as err:
        raise SaltInvocationError(f"{where}: user '{owner}' does not exist on this minion") from err


def group_id(group, where="group"):
    try:
        return grp.getgrnam(str(group)).gr_gid
    except KeyError as err:
        raise SaltInvocationError(
            f"{where}: group '{group}' does not exist on this minion"
        ) from err

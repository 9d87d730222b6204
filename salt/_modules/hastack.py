"""
hastack: the ``hastack`` pillar tree as a whole, and the INI files it edits.

``hastack.validate`` checks this minion's pillar (merged over
``defaults.yaml`` and its OS family's ``osfamilymap.yaml``) before any state acts: ``map.jinja`` calls it, so
bad input stops the run at render time with an error naming the pillar key, and
nothing changes. The checks themselves live in ``hastack_utils.schema``; this module
loads on every minion, whatever tools it has, so that every minion can render.
"""

import fcntl
import hashlib
import json
import logging
import os

import salt.utils.atomicfile
import salt.utils.dictupdate
import salt.utils.yaml
from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import ini, registry, schema, sites

__virtualname__ = "hastack"
log = logging.getLogger(__name__)


def __virtual__():
    return __virtualname__


def _formula_yaml(formula, name):
    """``salt://<formula>/<name>`` parsed, fetched once per run (``__context__`` is per
    state run: every SLS of a highstate shares it)."""
    url = f"salt://{formula}/{name}"
    ckey = f"hastack.formula.{url}"
    if ckey not in __context__:
        text = __salt__["cp.get_file_str"](url)
        if not text:
            raise CommandExecutionError(f"{url} is not on the fileserver")
        __context__[ckey] = salt.utils.yaml.safe_load(text) or {}
    return __context__[ckey]


def _merged(defaults, os_family, pillar):
    """This minion's ``hastack`` pillar merged over the formula's defaults and its OS
    family's parameters: service defaults apply only to the services the pillar
    configures."""

    def merge(base, over):
        return salt.utils.dictupdate.merge(base, over, strategy="recurse", merge_lists=False)

    merged = merge(defaults["hastack"], pillar)
    if "ceph" not in pillar:  # a minion without Ceph (e.g. Pacemaker only)
        merged.pop("ceph", None)
    for name, cluster in (pillar.get("ceph_clusters") or {}).items():
        if isinstance(cluster, dict):
            # Another cluster's files sit beside the main one's, named by cluster.
            base = dict(
                defaults["hastack"]["ceph"],
                cluster=name,
                conf_dir=(merged.get("ceph") or {}).get("conf_dir", "/etc/ceph"),
            )
            merged["ceph_clusters"][name] = merge(base, cluster)
    for name, service_defaults in defaults["services"].items():
        if name in pillar:
            merged[name] = merge(merge(service_defaults, os_family.get(name) or {}), pillar[name])
    return merged


def validate(config=None, minion_id=None, formula="hastack", fresh=False):
    """
    Validate the ``hastack`` pillar tree and return it normalized, with every cephx key
    replaced by the pillar path that holds it (``key_pillar``). Raises an error naming
    the bad pillar key. A pillar with sites (``hastack:sites``) is layered first: the
    global pillar, then this minion's site (``hastack:site``), then ``hastack:minion``. Run it before a rollout: it checks what a highstate would and
    changes nothing. Within one state run the result is computed once and shared by
    every SLS file that imports ``map.jinja``.

    config
        The tree to check, as a mapping; default: this minion's ``hastack`` pillar
        merged over the formula's ``defaults.yaml`` and ``osfamilymap.yaml``.

    minion_id
        The minion whose roles and admin duties apply; default: this minion.

    formula
        Where the formula is on the fileserver (its ``tplroot``, default ``hastack``):
        ``defaults.yaml`` and ``osfamilymap.yaml`` are read from there.

    fresh
        Have the master compile this minion's pillar afresh (``pillar.items``), as a
        state run would, instead of checking the pillar the minion holds in memory
        (which is as old as its last refresh). A rollout's gate asks for this.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.validate
    """
    minion_id = minion_id or __grains__.get("id") or __opts__.get("id")
    if config is None:
        if fresh:
            pillar = (__salt__["pillar.items"](unmask=True) or {}).get("hastack", {})
        else:
            # Salt masks pillar values in pillar.get's output; this stays in-process.
            pillar = __salt__["pillar.get"]("hastack", {}, unmask=True)
        if not isinstance(pillar, dict):
            raise SaltInvocationError("hastack: the pillar tree is not a mapping")
        config = pillar
        merge = True
    else:
        merge = False
    # The digest keys the cache, so a changed pillar is validated again.
    digest = hashlib.sha256(
        json.dumps([minion_id, merge, formula, config], sort_keys=True, default=str).encode()
    ).hexdigest()
    cache = __context__.setdefault("hastack.validated", {})
    if digest not in cache:
        log.debug("hastack: validating the hastack pillar of %s", minion_id)
        origins = None
        if merge:
            # Global pillar, then the minion's site, then its own overrides; then the
            # formula's defaults under all of them.
            config, origins = sites.layered(config, minion_id)
            os_family = _formula_yaml(formula, "osfamilymap.yaml").get(__grains__.get("os_family"))
            tree = _merged(_formula_yaml(formula, "defaults.yaml"), os_family or {}, config)
        else:
            tree = config
        cache[digest] = schema.validate(tree, minion_id, origins)
    return cache[digest]


HEALTH_RANK = {"HEALTH_OK": 0, "HEALTH_WARN": 1, "HEALTH_ERR": 2}


def health(checks):
    """
    The health checks a rollout gate asks of this minion, in one job:
    ``{check: problem or None}``.

    checks
        Minion ids mapped to the checks each runs (so one job to several minions gives
        each its own); this minion runs its own:

        - ``ceph: {worst}``: the Ceph cluster's health (``ceph_client.status``) no
          worse than ``worst`` (``HEALTH_OK`` or ``HEALTH_WARN``);
        - ``pacemaker: {cib_file}``: ``pacemaker.health``: quorum, no failed action,
          every resource that should run started;
        - ``validate: {}``: ``hastack.validate`` on this minion's pillar, compiled
          afresh on the master.

    A check that cannot run is a problem too (its error is the message).

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.health '{osl-1: {ceph: {worst: HEALTH_WARN}}, osl-2: {validate: {}}}'
    """
    if not isinstance(checks, dict):
        raise SaltInvocationError("checks: a mapping of minion ids to their checks")
    mine = checks.get(__grains__.get("id") or __opts__.get("id")) or {}
    unknown = sorted(set(mine) - {"ceph", "pacemaker", "validate"})
    if unknown:
        raise SaltInvocationError(f"checks: unknown check(s): {', '.join(unknown)}")
    out = {}
    for name, spec in mine.items():
        spec = spec or {}
        try:
            if name == "ceph":
                got = __salt__["ceph_client.status"]().get("health")
                worst = spec.get("worst", "HEALTH_WARN")
                out[name] = (
                    f"Ceph is {got} (this site lets {worst} through)"
                    if HEALTH_RANK.get(got, 3) > HEALTH_RANK.get(worst, 1)
                    else None
                )
            elif name == "pacemaker":
                got = __salt__["pacemaker.health"](cib_file=spec.get("cib_file"))
                out[name] = "; ".join(got["problems"]) or None
            else:
                # The pillar as the coming state run will see it, not the minion's copy.
                validate(fresh=True)
                out[name] = None
        except (CommandExecutionError, SaltInvocationError) as err:
            out[name] = str(err)
        except Exception as err:  # pylint: disable=broad-except
            # One check that cannot run fails that check, not the others.
            log.exception("hastack.health: the %s check failed to run", name)
            out[name] = f"{type(err).__name__}: {err}"
    return out


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise CommandExecutionError(f"cannot read {path}: {err}") from err


def ini_read(path):
    """
    An INI file (ceph.conf, glance-api.conf, ...) as ``{section: {option: value}}``,
    option names spelled with underscores; ``None`` when the file does not exist.

    path
        The file's path.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.ini_read /etc/ceph/ceph.conf
    """
    text = _read_text(path)
    return None if text is None else ini.parse(text)


def ini_diff(path, settings):
    """
    What ``ini_set`` would change: ``{"[section] option": {"old": .., "new": ..}}``.

    path
        The file's path.

    settings
        ``{section: {option: value}}``.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.ini_diff /etc/ceph/ceph.conf '{"global": {"fsid": "4b5c8c0a-..."}}'
    """
    return ini.diff(ini_read(path), settings)


def ini_set(path, settings, mode="0644"):
    """
    Set options in an INI file (ceph.conf, glance-api.conf, cinder.conf, nova.conf),
    keeping every line it does not manage (comments, other options and sections)
    where it was. Returns the changes made.

    path
        The file's path.

    settings
        ``{section: {option: value}}``.

    mode
        The mode of a file created here; an existing file keeps its owner and mode.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.ini_set /etc/ceph/ceph.conf '{"global": {"fsid": "4b5c8c0a-...", "mon_host": "10.0.0.1"}}'
    """
    text = _read_text(path)
    changes = ini.diff(None if text is None else ini.parse(text), settings)
    if not changes:
        return {}
    try:
        # Salt's atomic writer keeps an existing file's mode and owner.
        with salt.utils.atomicfile.atomic_open(path, "w") as fh:
            fh.write(ini.edit(text or "", settings))
        if text is None:
            os.chmod(path, int(str(mode), 8))
    except OSError as err:
        raise CommandExecutionError(f"cannot write {path}: {err}") from err
    return changes


def _registry_path():
    return os.path.join(__opts__["cachedir"], "hastack", "managed.json")


def managed():
    """
    What hastack created on this minion and still holds there: cephx users per cluster
    (on the admin minion), keyring files, ``[client.<user>]`` sections per ceph.conf and
    libvirt secrets per URI. ``hastack.clean`` removes from these only what the pillar no
    longer names; anything an operator made by hand is not listed and never removed.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.managed
    """
    try:
        with open(_registry_path(), encoding="utf-8") as fh:
            record = json.load(fh)
    except FileNotFoundError:
        return registry.empty()
    except (OSError, ValueError) as err:
        raise CommandExecutionError(f"cannot read {_registry_path()}: {err}") from err
    return dict(registry.empty(), **record)


def managed_note(kind, item, scope=None, present=True):
    """
    Note that hastack created (``present=True``) or removed ``item`` on this minion.
    The execution modules call it; an operator rarely needs to.

    kind
        ``users``, ``keyrings``, ``conf_sections`` or ``libvirt_secrets``.

    item
        The cephx entity, keyring path, section name or secret UUID.

    scope
        The cluster (users), ceph.conf path (sections) or libvirt URI (secrets).

    present
        ``True`` when created, ``False`` when removed.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.managed_note keyrings /etc/ceph/ceph.client.glance.keyring
    """
    path = _registry_path()
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(f"{path}.lock", "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            record = managed()
            change = registry.add if present else registry.forget
            record = change(record, kind, item, scope)
            with salt.utils.atomicfile.atomic_open(path, "w") as fh:
                json.dump(record, fh, indent=1, sort_keys=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return True


def stale(formula="hastack"):
    """
    What ``hastack.clean`` would remove: what hastack created here (``hastack.managed``)
    that this minion's pillar no longer names.

    formula
        Where the formula is on the fileserver (its ``tplroot``), as for ``validate``.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.stale
    """
    return registry.stale(managed(), validate(formula=formula))


def ini_remove_sections(path, sections):
    """
    Remove whole sections from an INI file (header, options and comments inside them),
    keeping every other line where it was. Returns the sections removed.

    path
        The file's path.

    sections
        Section names, e.g. ``[client.glance]`` is ``client.glance``.

    CLI Example:

    .. code-block:: bash

        salt '*' hastack.ini_remove_sections /etc/ceph/ceph.conf '[client.glance]'
    """
    text = _read_text(path)
    present = sorted(set(sections) & set(ini.parse(text or "")))
    if not present:
        return []
    try:
        with salt.utils.atomicfile.atomic_open(path, "w") as fh:
            fh.write(ini.remove_sections(text, present))
    except OSError as err:
        raise CommandExecutionError(f"cannot write {path}: {err}") from err
    return present

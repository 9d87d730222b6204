"""
hastack: the ``hastack`` pillar tree as a whole, and the INI files it edits.

Validates the pillar (merged with ``salt/hastack/defaults.yaml`` by ``map.jinja``)
before any state acts, so that bad input stops the run at render time with an error
naming the pillar key, and nothing changes. Each concern's own module validates its
subtree (``ceph_client.validate`` for ``hastack:ceph``).
"""

import os
import re

import salt.utils.atomicfile
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "hastack"

KNOWN_ROLES = ("controller", "compute", "network", "storage")


def __virtual__():
    return __virtualname__


def validate(config=None, minion_id=None):
    """
    Validate the ``hastack`` pillar tree and return it normalized (keys replaced by the
    pillar paths that hold them). Raises ``SaltInvocationError`` naming the bad key.

    config
        The tree to check; defaults to this minion's ``hastack`` pillar.

    CLI Example:

    .. code-block:: bash

        salt-call hastack.validate
    """
    if config is None:
        config = __salt__["pillar.get"]("hastack", None)
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
    return out


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

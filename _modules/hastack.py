"""
hastack: the ``hastack`` pillar tree as a whole.

Validates the pillar (merged with ``salt/hastack/defaults.yaml`` by ``map.jinja``)
before any state acts, so that bad input stops the run at render time with an error
naming the pillar key, and nothing changes. Each concern's own module validates its
subtree (``ceph_client.validate`` for ``hastack:ceph``).
"""

import re

from salt.exceptions import SaltInvocationError

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

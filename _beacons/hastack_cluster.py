"""
Watch the Pacemaker membership from a cluster node and tell the master when a node goes
down or comes back: ``hastack/node/down`` / ``hastack/node/up`` with ``{node, view}``.

Pacemaker on the survivors knows first (corosync membership, within seconds). The
beacon reads ``crm_mon`` every ``interval`` seconds inside the minion (no process start
per event, no new authentication) and sends each change as one event of its own
through the minion's own master connection (``event.fire_master``). That path keeps
the master-set ``id`` of the sender in the event envelope, which is what the
``failover`` runner trusts; an event returned the usual beacon way travels in a batch
whose envelope the master drops, so this beacon returns none.

.. code-block:: yaml

    beacons:
      hastack_cluster:
        - interval: 1

``hastack.failover`` (the formula) installs it on the cluster nodes.

:depends: pacemaker-cli-utils (crm_mon)
"""

import logging
import subprocess
import time
import xml.etree.ElementTree as ET

import salt.utils.path

try:
    # The failover's Neutron jobs run on these nodes, each in a process the minion
    # forks from this one: importing openstacksdk here once (about 0.3 s of every such
    # job otherwise) lets every job inherit it.
    import openstack  # noqa: F401  pylint: disable=unused-import
except ImportError:
    pass

log = logging.getLogger(__name__)

__virtualname__ = "hastack_cluster"
DOWN, UP = "hastack/node/down", "hastack/node/up"


def __virtual__():
    if not salt.utils.path.which("crm_mon"):
        return (False, "hastack_cluster: 'crm_mon' is missing (install pacemaker-cli-utils)")
    return __virtualname__


def validate(config):
    """The configuration is a list of mappings; only ``interval`` is known."""
    if not isinstance(config, list):
        return False, "hastack_cluster: the configuration must be a list"
    for item in config:
        if not isinstance(item, dict) or set(item) - {"interval", "disable_during_state_run"}:
            return False, "hastack_cluster: known settings: interval"
    return True, "valid"


def _view():
    """``{quorum, nodes: {name: online}}`` from crm_mon, or None if it does not answer."""
    try:
        out = subprocess.run(
            ["crm_mon", "--one-shot", "--output-as=xml"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        root = ET.fromstring(out.stdout)
    except ET.ParseError:
        return None
    dc = root.find("summary/current_dc")
    return {
        "quorum": dc is not None and dc.get("with_quorum") == "true",
        "nodes": {
            n.get("name"): n.get("online") == "true" and n.get("unclean") != "true"
            for n in root.findall("nodes/node")
        },
    }


def beacon(config):
    """
    Compare the membership with the last reading and send ``hastack/node/down`` or
    ``hastack/node/up`` for each node that changed (the first reading only sets the
    baseline). Returns no beacon events (see the module docs).

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.add hastack_cluster "[{interval: 1}]"
    """
    view = _view()
    if view is None:
        return []
    before = __context__.get("hastack_cluster.view")
    __context__["hastack_cluster.view"] = view
    if before is None:
        return []
    me = __grains__.get("id") or __opts__.get("id")
    for node, online in sorted(view["nodes"].items()):
        was = before["nodes"].get(node)
        if was is None or was == online or node == me:
            continue
        tag = UP if online else DOWN
        data = {"node": node, "quorum": view["quorum"], "seen": time.time()}
        log.info("hastack_cluster: %s is %s", node, "back" if online else "down")
        __salt__["event.fire_master"](data, tag)
    return []

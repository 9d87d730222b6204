"""
Watch the Pacemaker membership from a cluster node and tell the master when a node goes
down or comes back: ``hastack/node/down`` / ``hastack/node/up`` with ``{node, view}``.

Pacemaker on the survivors knows first (corosync membership, within seconds). The
beacon reads ``pacemaker.status`` (crm_mon) every ``interval`` seconds inside the
minion (no process start per event, no new authentication) and sends each change as one event of its own
through the minion's own master connection (``event.fire_master``). That path keeps
the master-set ``id`` of the sender in the event envelope, which is what the
``failover`` runner trusts; an event returned the usual beacon way travels in a batch
whose envelope the master drops, so this beacon returns none.

While a node stays down, its ``hastack/node/down`` is sent again every ``resend``
seconds (default 30) for ``resend_for`` seconds (default 600): an event the master
missed (it was down or restarting when the node died) still starts the incident, and
an incident a master restart interrupted is resumed by the next one. The failover
runner answers a repeat for a handled node with ``skipped``.

.. code-block:: yaml

    beacons:
      hastack_cluster:
        - interval: 1
        - resend: 30
        - resend_for: 600

``hastack.failover`` (the formula) installs it on the cluster nodes.

:depends: pacemaker-cli-utils (crm_mon)
"""

import logging
import time

import salt.utils.path
from salt.exceptions import CommandExecutionError

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
        if not isinstance(item, dict) or set(item) - {
            "interval",
            "disable_during_state_run",
            "resend",
            "resend_for",
        }:
            return False, "hastack_cluster: known settings: interval, resend, resend_for"
    return True, "valid"


def _view():
    """``{quorum, nodes: {name: online}}`` as ``pacemaker.status`` reads it (an unclean
    node counts as down), or None if Pacemaker does not answer."""
    try:
        status = __salt__["pacemaker.status"]()
    except (KeyError, CommandExecutionError):
        return None
    return {
        "quorum": status["quorum"],
        "nodes": {
            name: state["online"] and not state.get("unclean")
            for name, state in status["nodes"].items()
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
    settings = {}
    for item in config if isinstance(config, list) else []:
        settings.update(item)
    resend = float(settings.get("resend", 30))
    resend_for = float(settings.get("resend_for", 600))
    view = _view()
    if view is None:
        return []
    before = __context__.get("hastack_cluster.view")
    __context__["hastack_cluster.view"] = view
    if before is None:
        return []
    # node: (when it went down, when its down event was last sent)
    down = __context__.setdefault("hastack_cluster.down", {})
    me = __grains__.get("id") or __opts__.get("id")
    now = time.time()
    for node, online in sorted(view["nodes"].items()):
        if node == me:
            continue
        was = before["nodes"].get(node)
        data = {"node": node, "quorum": view["quorum"], "seen": now}
        if was is not None and was != online:
            log.info("hastack_cluster: %s is %s", node, "back" if online else "down")
            __salt__["event.fire_master"](data, UP if online else DOWN)
            if online:
                down.pop(node, None)
            else:
                down[node] = (now, now)
        elif not online and node in down:
            since, sent = down[node]
            if now - since > resend_for:
                down.pop(node)
            elif now - sent >= resend:
                down[node] = (since, now)
                __salt__["event.fire_master"](dict(data, resent=True), DOWN)
    return []

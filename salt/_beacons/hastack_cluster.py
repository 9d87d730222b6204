"""
Watch the Pacemaker membership from a cluster node and tell the master, in signals it
can verify, when a node goes down or comes back: ``hastack/node/down`` /
``hastack/node/up`` with ``{node, seen, nonce, sig, quorum}``.

Pacemaker on the survivors knows first (corosync membership, within seconds). The
beacon reads ``crm_mon`` (``pacemaker.status``, nothing else) every ``interval`` seconds
inside the minion (no process start per event, no new authentication) and sends each
change as one event of its own through the minion's own master connection
(``event.fire_master``).

Any minion can send any tag, and in a batch any envelope, so each signal is signed with
this minion's private key (``<pki_dir>/minion.pem``) over its tag, this minion's id,
the node, the time it was seen and a nonce; the master checks that signature with the
key it accepted for this minion before anything else (``hastack_utils.signals``).

Signals are repeated until they have done their work:

- while a node stays down, its ``hastack/node/down`` goes out again every ``resend``
  seconds (default 30) for ``resend_for`` seconds (default 600): an event the master
  missed (it was down or restarting) still starts the incident, and an incident a
  master restart interrupted is resumed by the next one;
- after a node is back, its ``hastack/node/up`` goes out again every ``resend`` seconds
  while the cluster still holds that node's incident lock (``pacemaker.lock_read``,
  read only then): the master releases the lock when it has re-armed the node, so a
  return is never lost, even one refused while the incident still ran.

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
import os
import time

import salt.crypt
import salt.utils.path
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "hastack_cluster"
SETTINGS = {
    "interval": (float, 1.0),
    "resend": (float, 30.0),
    "resend_for": (float, 600.0),
    "disable_during_state_run": (bool, False),
}


def __virtual__():
    if not salt.utils.path.which("crm_mon"):
        return (False, "hastack_cluster: 'crm_mon' is missing (install pacemaker-cli-utils)")
    # Loading hastack's pacemaker module also imports hastack_utils, which the signals
    # need: Salt puts synced utils on sys.path only while a loader that has them loads
    # (the beacons' loader has not).
    if "pacemaker.status" not in __salt__:
        return (False, "hastack_cluster: hastack's pacemaker execution module is not loaded")
    return __virtualname__


def _logic():
    """hastack_utils' failover policy and signal modules (imported once loaded)."""
    from hastack_utils import failover, signals  # pylint: disable=import-outside-toplevel

    return failover, signals


def _settings(config):
    """The configuration (a list of one-key mappings) as a checked dict; raises
    ValueError naming the bad setting."""
    if not isinstance(config, list):
        raise ValueError("the configuration must be a list of mappings")
    out = {name: default for name, (_, default) in SETTINGS.items()}
    for item in config:
        if not isinstance(item, dict):
            raise ValueError(f"{item!r} is not a mapping")
        for name, value in item.items():
            if name.startswith("_"):
                continue  # Salt's own (_beacon_name)
            if name not in SETTINGS:
                raise ValueError(f"unknown setting '{name}' (known: {', '.join(SETTINGS)})")
            kind = SETTINGS[name][0]
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError(f"{name}: true or false (got {value!r})")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: seconds, more than 0 (got {value!r})")
            out[name] = kind(value)
    return out


def validate(config):
    """The settings are a list of mappings: ``interval``, ``resend``, ``resend_for``
    (seconds, more than 0) and ``disable_during_state_run`` (true or false)."""
    try:
        _settings(config)
    except ValueError as err:
        return False, f"hastack_cluster: {err}"
    return True, "valid"


def _view():
    """``{quorum, nodes: {name: online}}`` from ``crm_mon`` alone (an unclean node counts
    as down), or None if Pacemaker does not answer."""
    try:
        status = __salt__["pacemaker.status"](offline_standby=False)
    except (KeyError, CommandExecutionError):
        return None
    return {
        "quorum": status["quorum"],
        "nodes": {
            name: state["online"] and not state.get("unclean")
            for name, state in status["nodes"].items()
        },
    }


def _send(tag, node, now, **extra):
    """Sign and send one signal through the minion's own master connection."""
    key = __context__.get("hastack_cluster.key")
    if key is None:
        key = salt.crypt.PrivateKey.from_file(os.path.join(__opts__["pki_dir"], "minion.pem"))
        __context__["hastack_cluster.key"] = key
    data = _logic()[1].signed_data(key, tag, __opts__["id"], node, now, **extra)
    __salt__["event.fire_master"](data, tag)


def _lock_held(node):
    """Whether the cluster still holds ``node``'s incident lock (the master has not
    re-armed it yet); True when the CIB cannot be read (keep trying)."""
    try:
        return __salt__["pacemaker.lock_read"](_logic()[0].lock_name(node)) is not None
    except (KeyError, CommandExecutionError):
        return True


def beacon(config):
    """
    Compare the membership with the last reading and send a signed ``hastack/node/down``
    or ``hastack/node/up`` for each node that changed (the first reading only sets the
    baseline); repeat them as the module docs say. Returns no beacon events: each
    signal travels on its own.

    CLI Example:

    .. code-block:: bash

        salt '*' beacons.add hastack_cluster "[{interval: 1}]"
    """
    settings = _settings(config)
    _, signals = _logic()
    view = _view()
    if view is None:
        return []
    before = __context__.get("hastack_cluster.view")
    __context__["hastack_cluster.view"] = view
    if before is None:
        return []
    # node: [when it changed, when its signal was last sent]
    down = __context__.setdefault("hastack_cluster.down", {})
    up = __context__.setdefault("hastack_cluster.up", {})
    me = __opts__["id"]
    now = time.time()
    for node, online in sorted(view["nodes"].items()):
        if node == me:
            continue
        was = before["nodes"].get(node)
        if was is not None and was != online:
            log.info("hastack_cluster: %s is %s", node, "back" if online else "down")
            _send(signals.UP if online else signals.DOWN, node, now, quorum=view["quorum"])
            (up if online else down)[node] = [now, now]
            (down if online else up).pop(node, None)
            continue
        pending = (up if online else down).get(node)
        if pending is None or now - pending[1] < settings["resend"]:
            continue
        if now - pending[0] > settings["resend_for"] or (online and not _lock_held(node)):
            (up if online else down).pop(node)
            continue
        pending[1] = now
        tag = signals.UP if online else signals.DOWN
        _send(tag, node, now, quorum=view["quorum"], resent=True)
    return []

"""
The self-healing's priority path on the master: an engine that reads the event bus
beside the reactor, checks every node signal with hastack's gate (``failover.admit``:
shape, sender, signature, age, nonce, rate; or a presence event's hint) and hands each
one that passes straight to the ``failover.signal`` runner in a small pool of threads
of its own.

Why an engine and not only the reactor rule (``salt://hastack/reactor/signal.sls``,
which runs the same gate): the reactor takes events one after another, and for a
``salt://`` reaction Salt builds a file client for every event before anything of
hastack's runs (about 15 ms here). Any minion can send any tag, so a minion that sends
junk signals faster than that keeps the reactor's queue growing, and a real signal
waits behind all of it. The engine has its own process and queue, and a junk event
costs it a fraction of a millisecond: a flood never delays a trusted reporter's signal.

.. code-block:: yaml

    engines:
      - hastack_signals:
          workers: 4

``salt/hastack/files/hastack-failover.conf`` switches it on.
"""

import concurrent.futures
import contextvars
import logging

import salt.runner
import salt.utils.event

log = logging.getLogger(__name__)

__virtualname__ = "hastack_signals"
SIGNAL_TAGS = ("hastack/node/down", "hastack/node/up", "salt/presence/change")


def __virtual__():
    return __virtualname__


def _hand_over(runner, tag, data):
    try:
        runner.low(
            "failover.signal",
            {"arg": [], "kwarg": {"tag": tag, "envelope": data}, "__user__": __virtualname__},
        )
    except Exception:  # pylint: disable=broad-except
        log.exception("hastack_signals: failover.signal failed for %s", tag)


def start(workers=4):
    """
    Read the master's event bus and hand every node signal that passes hastack's gate
    to the ``failover.signal`` runner, at most ``workers`` at once (the gate's checks run
    in this engine's own loop, well under a millisecond each).

    workers
        How many signals may be answered at once (default 4): a few per incident, and
        the runner lets one incident per node through.

    Example (the master's configuration):

    .. code-block:: yaml

        engines:
          - hastack_signals:
              workers: 4
    """
    if "failover.admit" not in __salt__:
        log.critical(
            "hastack_signals: hastack's failover execution module is not loaded on this master "
            "(salt-run saltutil.sync_all, or pip install saltext.hastack): no signal is answered"
        )
        return
    admit = __salt__["failover.admit"]
    runner = salt.runner.RunnerClient(__opts__)
    # Loaded now, not on the first signal: a runner client builds its MasterMinion and
    # loads the runners on first use (about half a second here).
    runner.mminion  # pylint: disable=pointless-statement
    runner.functions["failover.signal"]  # pylint: disable=pointless-statement
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, int(workers)), thread_name_prefix="hastack-signal"
    )
    log.info("hastack_signals: answering node signals with %s workers", workers)
    with salt.utils.event.get_master_event(__opts__, __opts__["sock_dir"], listen=True) as bus:
        for event in bus.iter_events(full=True, auto_reconnect=True):
            tag = event.get("tag")
            if tag not in SIGNAL_TAGS:
                continue
            if admit(tag, event.get("data")):
                pool.submit(contextvars.copy_context().run, _hand_over, runner, tag, event["data"])

"""neutron-server for the lab, with the L3 agents' RPC endpoint played by the lab.

Run with Debian's python3: ``python3 lab/neutron_server.py --config-file neutron.conf``
(environment ``HASTACK_LAB_L3_HOSTS=alice,bob,charlie``). It is Debian's neutron-server
(``neutron.cmd.eventlet.server.main``), API in this process (``api_workers = 0``), plus,
for each listed host, an RPC server on topic ``l3_agent`` that acknowledges what
neutron-server tells an L3 agent. No L3 agent or dataplane can run here, and Neutron
waits for an agent's reply when a router is added to it (``router_added_to_agent`` is
an RPC call): without this stand-in that API call blocks for minutes and fails.
Everything Neutron does on its side (scheduling, bindings, database) is its own code.
"""

import os
import sys

import eventlet

eventlet.monkey_patch()

import oslo_messaging  # noqa: E402 pylint: disable=wrong-import-position
from neutron.cmd.eventlet import server  # noqa: E402 pylint: disable=wrong-import-position
from neutron_lib import rpc as n_rpc  # noqa: E402 pylint: disable=wrong-import-position


class L3AgentStandIn:
    """Acknowledges the notifications an L3 agent receives (and does nothing: no dataplane)."""

    target = oslo_messaging.Target(version="1.5")

    def router_added_to_agent(self, context, **kwargs):  # pylint: disable=unused-argument
        return None

    def router_removed_from_agent(self, context, **kwargs):  # pylint: disable=unused-argument
        return None

    def routers_updated(self, context, **kwargs):  # pylint: disable=unused-argument
        return None

    def router_deleted(self, context, **kwargs):  # pylint: disable=unused-argument
        return None

    def update_floatingip_statuses(self, context, **kwargs):  # pylint: disable=unused-argument
        return None


def _serve_l3_agents(hosts):
    while n_rpc.TRANSPORT is None:  # set once neutron-server has read its configuration
        eventlet.sleep(0.2)
    for host in hosts:
        target = oslo_messaging.Target(topic="l3_agent", server=host)
        n_rpc.get_server(target, [L3AgentStandIn()]).start()


if __name__ == "__main__":
    eventlet.spawn(
        _serve_l3_agents, [h for h in os.environ.get("HASTACK_LAB_L3_HOSTS", "").split(",") if h]
    )
    sys.exit(server.main())

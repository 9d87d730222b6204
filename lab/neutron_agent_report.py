"""An L3 agent's state report, handled by Neutron's own server-side code.

Run with Debian's python3 (where neutron lives), not the venv:
``python3 lab/neutron_agent_report.py [--heartbeat] NEUTRON_CONF HOST [HOST ...]``. No L3 agent or
dataplane runs in the lab, so this calls what neutron-server runs when an agent's
``report_state`` RPC arrives (``AgentExtRpcCallback.report_state``): the agent row,
its heartbeat and its configuration are written exactly as for a real agent.
"""

import sys

from neutron import manager
from neutron.common import config as common_config
from neutron.db import agents_db
from neutron_lib import context
from oslo_utils import timeutils


def main(conf, hosts, start=True):
    common_config.register_common_config_options()
    common_config.init(["--config-file", conf])
    manager.init()
    callback = agents_db.AgentExtRpcCallback()
    ctx = context.get_admin_context()
    for host in hosts:
        # What neutron-l3-agent (legacy mode) reports about itself.
        state = {
            "binary": "neutron-l3-agent",
            "host": host,
            "availability_zone": "nova",
            "topic": "l3_agent",
            "agent_type": "L3 agent",
            # A real agent says so in its first report only (then Neutron may
            # reschedule routers onto it); later reports are heartbeats.
            "start_flag": start,
            "configurations": {
                "agent_mode": "legacy",
                "routers": 0,
                "gateway_external_network_id": "",
                "handle_internal_only_routers": True,
                "interface_driver": "openvswitch",
                "log_agent_heartbeats": False,
            },
        }
        now = timeutils.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
        callback.report_state(ctx, agent_state={"agent_state": state}, time=now)


if __name__ == "__main__":
    args = sys.argv[1:]
    beat = "--heartbeat" in args
    args = [a for a in args if a != "--heartbeat"]
    main(args[0], args[1:], start=not beat)

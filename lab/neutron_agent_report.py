"""An agent's state report, handled by Neutron's own server-side code.

Run with Debian's python3 (where neutron lives), not the venv:
``python3 lab/neutron_agent_report.py [--heartbeat] [--ovs] [--every SECONDS] NEUTRON_CONF
HOST [HOST ...]``. No agent or dataplane runs in the lab, so this calls what
neutron-server runs when an agent's ``report_state`` RPC arrives
(``AgentExtRpcCallback.report_state``): the agent row, its heartbeat and its
configuration are written exactly as for a real agent.

Default: an L3 agent's report. ``--ovs``: an Open vSwitch agent's (vxlan tunnels and
the flat networks' bridges), which is what lets ML2's openvswitch driver bind the ports
Nova creates on that host. ``--every``: report again every SECONDS until killed, as
the running agent does (its first report has the start flag, later ones do not).
"""

import sys
import time

from neutron import manager
from neutron.common import config as common_config
from neutron.db import agents_db
from neutron_lib import context
from oslo_utils import timeutils


def l3_state(host, start):
    """What neutron-l3-agent (legacy mode) reports about itself."""
    return {
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


def ovs_state(host, start):
    """What neutron-openvswitch-agent reports: the tunnel types and bridge mappings are
    what ML2's openvswitch driver checks before it binds a port on the host."""
    return {
        "binary": "neutron-openvswitch-agent",
        "host": host,
        "topic": "N/A",
        "agent_type": "Open vSwitch agent",
        "start_flag": start,
        "configurations": {
            "bridge_mappings": {"public": "br-ex", "spare": "br-spare"},
            "tunnel_types": ["vxlan"],
            "tunneling_ip": "127.0.0.1",
            "integration_bridge": "br-int",
            "datapath_type": "system",
            "ovs_hybrid_plug": False,
            "l2_population": False,
            "arp_responder_enabled": False,
            "enable_distributed_routing": False,
            "devices": 0,
            "extensions": [],
            "log_agent_heartbeats": False,
        },
    }


def main(conf, hosts, state_of=l3_state, start=True, every=None):
    common_config.register_common_config_options()
    common_config.init(["--config-file", conf])
    manager.init()
    callback = agents_db.AgentExtRpcCallback()
    ctx = context.get_admin_context()
    while True:
        for host in hosts:
            now = timeutils.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")
            callback.report_state(ctx, agent_state={"agent_state": state_of(host, start)}, time=now)
        if every is None:
            return
        start = False
        time.sleep(every)


if __name__ == "__main__":
    args = sys.argv[1:]
    beat = "--heartbeat" in args
    ovs = "--ovs" in args
    every = float(args[args.index("--every") + 1]) if "--every" in args else None
    if every is not None:
        del args[args.index("--every") : args.index("--every") + 2]
    args = [a for a in args if a not in ("--heartbeat", "--ovs")]
    main(args[0], args[1:], ovs_state if ovs else l3_state, start=not beat, every=every)

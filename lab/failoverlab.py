"""The self-healing lab: a real salt-master and three real minions, each minion running
inside its node of the live 3-node Pacemaker lab (lab/pcmklab.py: killing a node kills
its minion too), Listing 2 applied, and the lab Neutron (lab/neutronlab.py) with the
workshop topology, L3 agents on alice, bob and charlie and routers with floating IPs
on alice's agent.

The master runs this checkout's failover runner, gate and engine with the shipped
wiring, as README tells an operator to install it: ``salt/hastack/files/
hastack-failover.conf`` (the hastack_signals engine, presence), or with ``wiring=
"reactor"`` ``hastack-failover-reactor.conf`` (the reactor rule). The minions load the
modules and the ``hastack_cluster`` beacon from this checkout; ``hastack.failover`` (the
formula) switches the beacon on.

Stand-ins, because nothing real can run here: the L3 agents are rows that Neutron's own
state-report handler writes (lab/neutron_agent_report.py); ``heartbeat`` refreshes the
agents of the live nodes, as their agents would, and stops for a killed node.

``start(d)`` returns a ``Lab``; ``Lab.stop()`` ends only what it started.
"""

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import yaml

from lab import cephlab, neutronlab, novalab, pcmklab, procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NODES = ("alice", "bob", "charlie")
# Each minion its own loopback source address: the master's presence detection and
# ``connected_ids`` tell minions apart by address (127.0.0.1-3 are corosync's).
# The second master of start(masters=2).
MASTER2_ADDR = "127.0.0.5"
MINION_ADDR = {
    "alice": "127.0.0.11",
    "bob": "127.0.0.12",
    "charlie": "127.0.0.13",
    # A minion of the same Salt setup that is no cluster node (not an allowed reporter).
    "eve": "127.0.0.14",
}
# The shipped master settings, as README tells an operator to install them: the engine
# (the default) or the reactor rule (a master that runs no engines).
SHIPPED_MASTER_CONF = {
    "engine": os.path.join(REPO, "salt", "hastack", "files", "hastack-failover.conf"),
    "reactor": os.path.join(REPO, "salt", "hastack", "files", "hastack-failover-reactor.conf"),
}


# The compute identities of the VM lab (vms=True): nova's host= and its home node.
IDENTITIES = {"host1": "alice", "host2": "bob", "host3": "charlie"}
NOVA_CAPS = {
    "mds": "allow rw fsname=cephfs path=/nova",
    "mon": "allow r fsname=cephfs",
    "osd": "allow rw tag cephfs data=cephfs",
}


class LabError(RuntimeError):
    pass


def vm_pillar(pillar, vm, modes=None):
    """``pillar`` with the VMs' part: the lab's fence device (stonith on), CephFS for the
    instances directory (bob holds client.admin), the compute identities host1..3 at
    home on alice, bob and charlie (``modes``: ``{identity: mode}``) run by Pacemaker
    with lab/nova_compute.py, and one cloud for the lab Neutron and the lab Nova."""
    hastack = pillar["hastack"]
    hastack["roles"] = ["controller", "compute"]
    pcmk = hastack["pacemaker"]
    # Listing 2's Dummy identities make way for the real ones hastack declares.
    for rid in [r for r in pcmk["primitives"] if r.startswith("p_nova-compute-")]:
        del pcmk["primitives"][rid]
    for lid in [c for c in pcmk["locations"] if c.startswith("lo_host")]:
        del pcmk["locations"][lid]
    pcmk["primitives"].update(pcmklab.fence_device_config(vm["pcmk"]))
    pcmk["properties"]["stonith-enabled"] = "true"
    ceph = vm["ceph"]
    hastack["ceph"] = {
        "fsid": ceph["fsid"],
        "mon_host": ceph["mon_host"],
        "admin_minion": "bob",
        "admin_keyring": ceph["admin_keyring"],
        "conf_dir": vm["conf_dir"],
        "pools": {
            "cephfs_metadata": {"pg_num": 8, "application": "cephfs"},
            "cephfs_data": {"pg_num": 8, "application": "cephfs"},
        },
        "filesystems": {"cephfs": {"metadata_pool": "cephfs_metadata", "data_pool": "cephfs_data"}},
        "users": {"nova": {"key": vm["nova_key"], "caps": NOVA_CAPS, "roles": ["compute"]}},
    }
    hastack["cephfs"] = {
        "mounts": {vm["instances"]: {"fs": "cephfs", "path": "/nova", "user": "nova"}}
    }
    modes = modes or {}
    hastack["computes"] = {
        "identities": {
            name: {"node": node, "mode": modes.get(name, "identity")}
            for name, node in IDENTITIES.items()
        },
        "instances_path": vm["instances"],
        "config_file": vm["nova"]["nova_conf"],
        "conf_dir": vm["identities"],
        "resource": {
            "command": f"{novalab.PY} {os.path.join(REPO, 'lab', 'nova_compute.py')}",
            "user": "root",
        },
        "evacuation": {"metadata_key": "HA_Enabled", "timeout": 120, "takeover_timeout": 90},
    }
    hastack["openstack"]["cloud"] = vm["cloud"]
    # The tests make a fence fail on purpose: 20 s is enough for the lab's to succeed.
    hastack["failover"].setdefault("fence_timeout", 20)
    return pillar


def reapply_vms(lab, node):
    """A revived node's boot-time highstate part: the instances directory mounted again
    in its (new) mount namespace, its identity files checked."""
    _check_states(lab.client().cmd(node, "state.apply", ["hastack.computes"], timeout=300), node)


def failover_pillar(cloud, policy=None):
    """Listing 2 (Dummy agents, no fencing device) + the lab Neutron + a failover
    policy: the pillar every node of the lab gets. The floating IP of ``web`` (the
    first VM behind edge-router) moves to its standby port when alice dies."""
    pillar = pcmklab.listing2()
    hastack = pillar["hastack"]
    hastack["openstack"] = {"cloud": cloud, "external_network": "ext_net"}
    hastack["floating_ips"] = {
        "roles": ["controller"],
        "addresses": {"web": {"port": "edge-router-vm0", "standby": {"port": "web-standby"}}},
    }
    # A return is repeated every 10 s while its incident's lock is held (30 s by default).
    hastack["failover"] = dict(
        {"placement_timeout": 90, "move": {"alice": ["web"]}, "beacon_resend": 10},
        **(policy or {}),
    )
    return pillar


class Lab:
    def __init__(self, d):
        self.dir = d
        self.pcmk = None
        self.neutron = None
        self.master_pid = None
        self.minion_pids = {}
        self.alive = set(NODES)
        self._beat = threading.Event()
        self._beater = None
        self.ports = {"publish": procs.free_port(), "ret": procs.free_port()}
        self.master_conf = os.path.join(d, "master", "conf")
        # Salt multi-master (start(masters=2)): a second master on its own address with
        # the same ports and the first one's key pair; every minion talks to both.
        self.masters = 1
        self.master2_pid = None
        self.master2_conf = os.path.join(d, "master2", "conf")
        self._keys = {}  # minion id: its private key (signed)
        self.vm = None  # the VM lab's facts (start(vms=True))
        self.modes = None

    # ----------------------------------------------------------------- Neutron

    def _start_neutron(self):
        import openstack  # pylint: disable=import-outside-toplevel

        self.neutron = neutronlab.start(os.path.join(self.dir, "neutron"))
        self.conn = openstack.connect(**self.neutron["cloud"])
        made = neutronlab.workshop_topology(self.conn)
        neutronlab.report_l3_agents(self.neutron, *NODES)
        ext = made["ext_net"]
        # Two routers on alice's agent, each with a network and two VMs with floating IPs.
        self.routers = {"admin-router": made["admin-router"]}
        nets = {"admin-router": made["admin-net"]}
        second = self.conn.network.create_router(
            name="edge-router", external_gateway_info={"network_id": ext.id}
        )
        net = self.conn.network.create_network(name="edge-net")
        subnet = self.conn.network.create_subnet(
            network_id=net.id, name="edge-subnet", cidr="10.6.6.0/24", ip_version=4
        )
        self.conn.network.add_interface_to_router(second, subnet=subnet.id)
        self.routers["edge-router"], nets["edge-router"] = second, net
        self.floating_ips = {}
        for router, rnet in nets.items():
            for i, host in enumerate(("bob", "charlie")):
                port = neutronlab.vm_port(self.conn, rnet, f"{router}-vm{i}", host)
                fip = self.conn.network.create_ip(floating_network_id=ext.id, port_id=port.id)
                self.floating_ips[fip.floating_ip_address] = port.id
        # web's standby: a VM port without a floating IP, where web's address moves.
        self.standby_port = neutronlab.vm_port(self.conn, nets["edge-router"], "web-standby", "bob")
        # Neutron may have scheduled a router itself on the way (an interface or a
        # floating IP on an unhosted router).
        self.routers_on("alice")
        self._beater = threading.Thread(target=self._heartbeat, daemon=True)
        self._beater.start()

    def routers_on(self, host):
        """Put every lab router on ``host``'s L3 agent (openstacksdk's agent calls drop
        Neutron's answer: each request is checked here)."""
        import openstack.exceptions  # pylint: disable=import-outside-toplevel

        net = self.conn.network
        agents = {a.host: a for a in net.agents(agent_type="L3 agent")}
        for router in self.routers.values():
            for agent in agents.values():
                if agent.host != host and router.id in {
                    r.id for r in net.agent_hosted_routers(agent)
                }:
                    resp = net.delete(f"/agents/{agent.id}/l3-routers/{router.id}")
                    openstack.exceptions.raise_from_response(resp)
            if router.id not in {r.id for r in net.agent_hosted_routers(agents[host])}:
                resp = net.post(
                    f"/agents/{agents[host].id}/l3-routers", json={"router_id": router.id}
                )
                openstack.exceptions.raise_from_response(resp)
        on_host = {r.name for r in net.agent_hosted_routers(agents[host])}
        if on_host != set(self.routers):
            raise LabError(f"routers on {host}'s L3 agent: {sorted(on_host)}")

    def _heartbeat(self):
        # The L3 agents' state reports (every 20 s; Neutron's agent_down_time is 75 s).
        while not self._beat.wait(20):
            alive = sorted(self.alive)
            if alive:
                try:
                    neutronlab.report_l3_agents(self.neutron, *alive, heartbeat=True)
                except subprocess.CalledProcessError:
                    pass

    # ----------------------------------------------------------------- Salt

    def _write_master(self, policy=None, extra=None, wiring="engine"):
        root = os.path.join(self.dir, "master")
        pillar_dir = os.path.join(self.dir, "pillar")
        os.makedirs(self.master_conf, exist_ok=True)
        os.makedirs(pillar_dir, exist_ok=True)
        # The shipped wiring goes in as README says: the file copied to master.d/.
        included = os.path.join(self.master_conf, "master.d")
        os.makedirs(included, exist_ok=True)
        shipped = shutil.copy(SHIPPED_MASTER_CONF[wiring], included)
        with open(shipped, encoding="utf-8") as fh:
            overlap = set(yaml.safe_load(fh)) & set(extra or {})
        if overlap:
            # Salt lets master.d/ replace the main file's keys, not add to them.
            raise LabError(f"extra_master sets what the shipped wiring sets: {sorted(overlap)}")
        config = dict(
            id="lab-master",
            interface="127.0.0.1",
            publish_port=self.ports["publish"],
            ret_port=self.ports["ret"],
            root_dir=root,
            pki_dir=os.path.join(root, "pki"),
            cachedir=os.path.join(root, "cache"),
            sock_dir=os.path.join(root, "sock"),
            pidfile=os.path.join(root, "master.pid"),
            log_file=os.path.join(root, "master.log"),
            log_level_logfile="info",
            user="root",
            auto_accept=True,
            file_roots={"base": [os.path.join(REPO, "salt")]},
            pillar_roots={"base": [pillar_dir]},
            runner_dirs=[os.path.join(REPO, "_runners")],
            engines_dirs=[os.path.join(REPO, "_engines")],
            # The gate (failover.admit) is an execution module of the master's.
            module_dirs=[os.path.join(REPO, "_modules")],
            utils_dirs=[os.path.join(REPO, "_utils")],
            extension_modules=os.path.join(root, "extmods"),
            minion_data_cache=True,
            # Rejections reported at most every 2 s per sender (10 by default): the
            # tests send several from one sender in a row.
            hastack_failover_report_interval=2,
        )
        for key, value in (extra or {}).items():
            # Lists (reactor, file_roots) are extended, not replaced.
            if isinstance(value, list) and isinstance(config.get(key), list):
                config[key] = config[key] + value
            elif isinstance(value, dict) and isinstance(config.get(key), dict):
                merged = dict(config[key])
                for k, v in value.items():
                    merged[k] = merged.get(k, []) + v if isinstance(v, list) else v
                config[key] = merged
            else:
                config[key] = value
        with open(os.path.join(self.master_conf, "master"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        if self.masters == 2:
            root2 = os.path.join(self.dir, "master2")
            os.makedirs(os.path.join(self.master2_conf, "master.d"), exist_ok=True)
            shutil.copy(shipped, os.path.join(self.master2_conf, "master.d"))
            second = dict(
                config,
                id="lab-master-2",
                interface=MASTER2_ADDR,
                root_dir=root2,
                pki_dir=os.path.join(root2, "pki"),
                cachedir=os.path.join(root2, "cache"),
                sock_dir=os.path.join(root2, "sock"),
                pidfile=os.path.join(root2, "master.pid"),
                log_file=os.path.join(root2, "master.log"),
                extension_modules=os.path.join(root2, "extmods"),
            )
            with open(os.path.join(self.master2_conf, "master"), "w", encoding="utf-8") as fh:
                yaml.safe_dump(second, fh)
        self.set_policy(policy)

    def set_policy(self, policy=None):
        """Write the lab pillar with this failover policy (read fresh at every signal)."""
        pillar_dir = os.path.join(self.dir, "pillar")
        with open(os.path.join(pillar_dir, "top.sls"), "w", encoding="utf-8") as fh:
            yaml.safe_dump({"base": {"*": ["lab"]}}, fh)
        pillar = failover_pillar(self.neutron["cloud"], policy)
        if self.vm:
            pillar = vm_pillar(pillar, self.vm, self.modes)
        with open(os.path.join(pillar_dir, "lab.sls"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(pillar, fh)

    # ----------------------------------------------------------------- VMs

    def _start_vm_services(self):
        """The lab Ceph with an MDS (CephFS for the instances directory) and the lab
        Nova without computes (the identities' computes are Pacemaker's to run), asking
        the lab Neutron about its servers' ports."""
        d = self.dir
        ceph = cephlab.start(os.path.join(d, "ceph"), mds=True)
        self.vm = {"ceph": ceph}  # and "pcmk", once the nodes are up
        nova = novalab.start(os.path.join(d, "nova"), computes=(), neutron_url=self.neutron["url"])
        key = subprocess.run(
            ["ceph-authtool", "--gen-print-key"], capture_output=True, text=True, check=True
        ).stdout.strip()
        identities = os.path.join(d, "identities")
        os.makedirs(identities, exist_ok=True)
        for name in IDENTITIES:
            # An operator's own line in a file hastack manages: it stays.
            with open(os.path.join(identities, f"nova-compute-{name}.conf"), "w") as fh:
                fh.write(f"[DEFAULT]\nlog_file = {nova['dir']}/log/nova-compute-{name}.log\n")
        self.vm.update(
            nova=nova,
            nova_key=key,
            conf_dir=os.path.join(d, "etc-ceph"),
            instances=os.path.join(d, "instances"),
            identities=identities,
            cloud=dict(nova["cloud"], network_endpoint_override=self.neutron["url"]),
        )

    def _apply_vms(self, client):
        """bob (client.admin) makes the pools, the filesystem, its directory and the
        user; every node mounts the instances directory and gets the identities'
        files; the identities start once hastack.pacemaker declares them."""
        _check_states(client.cmd("bob", "state.apply", ["hastack.ceph"], timeout=300), "bob")
        mounted = client.cmd(
            list(NODES), "state.apply", ["hastack.computes"], tgt_type="list", timeout=300
        )
        for node in NODES:
            _check_states(mounted, node)

    def nova_conn(self):
        return novalab.connection(self.vm["nova"])

    def start_master(self):
        log = open(os.path.join(self.dir, "master.out"), "a")  # noqa: SIM115
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [os.path.join(BIN, "salt-master"), "-c", self.master_conf, "-l", "quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.master_pid = proc.pid
        sock = os.path.join(self.dir, "master", "sock", "master_event_pub.ipc")
        if not procs.until(lambda: os.path.exists(sock), 60, 0.2):
            raise LabError("the salt-master did not start (master.out)")
        return proc.pid

    def stop_master(self, sig=None):
        import signal as signals  # pylint: disable=import-outside-toplevel

        if self.master_pid:
            if sig == "kill":
                # A master crash: every process of its session at once.
                try:
                    os.killpg(self.master_pid, signals.SIGKILL)
                except ProcessLookupError:
                    pass
                procs.until(lambda: not procs.alive(self.master_pid), 10, 0.05)
            else:
                procs.stop([self.master_pid], timeout=20)
            sock = os.path.join(self.dir, "master", "sock", "master_event_pub.ipc")
            if os.path.exists(sock):
                os.remove(sock)
            self.master_pid = None

    def _minion_config(self, node):
        root = os.path.join(self.dir, f"salt-minion-{node}")
        conf = os.path.join(root, "conf")
        os.makedirs(conf, exist_ok=True)
        config = {
            "id": node,
            "master": "127.0.0.1" if self.masters == 1 else ["127.0.0.1", MASTER2_ADDR],
            "master_port": self.ports["ret"],
            "publish_port": self.ports["publish"],
            "source_address": MINION_ADDR[node],
            "grains": {"ipv4": [MINION_ADDR[node]]},
            "root_dir": root,
            "pki_dir": os.path.join(root, "pki"),
            "cachedir": os.path.join(root, "cache"),
            "sock_dir": os.path.join(root, "sock"),
            "pidfile": os.path.join(root, "minion.pid"),
            "log_file": os.path.join(root, "minion.log"),
            "log_level_logfile": "info",
            "user": "root",
            "file_client": "remote",
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "beacons_dirs": [os.path.join(REPO, "_beacons")],
            "extension_modules": os.path.join(root, "extmods"),
            # Reconnect at once after a master restart.
            "acceptance_wait_time": 1,
            "random_reauth_delay": 0,
            "recon_default": 200,
            "recon_max": 1000,
            "recon_randomize": False,
            "auth_tries": 30,
        }
        with open(os.path.join(conf, "minion"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        return conf

    def start_minion(self, node):
        """The minion of ``node``: inside the node when it is a cluster node (so it dies
        with it), else on the host."""
        conf = self._minion_config(node)
        argv = [os.path.join(BIN, "salt-minion"), "-c", conf, "-l", "quiet"]
        if node in NODES:
            argv = pcmklab.node_argv(self.pcmk, node, argv)
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.minion_pids[node] = proc.pid

    def opts(self, master=1):
        import salt.config  # pylint: disable=import-outside-toplevel

        conf = self.master_conf if master == 1 else self.master2_conf
        return salt.config.master_config(os.path.join(conf, "master"))

    def start_master2(self):
        """The second master, with the first one's key pair (the minions trust one
        master key)."""
        pki = os.path.join(self.dir, "master", "pki")
        if not procs.until(lambda: os.path.exists(os.path.join(pki, "master.pub")), 30, 0.1):
            raise LabError("the first master made no key pair")
        pki2 = os.path.join(self.dir, "master2", "pki")
        os.makedirs(pki2, exist_ok=True)
        for name in ("master.pem", "master.pub"):
            shutil.copy2(os.path.join(pki, name), os.path.join(pki2, name))
        log = open(os.path.join(self.dir, "master2.out"), "a")  # noqa: SIM115
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [os.path.join(BIN, "salt-master"), "-c", self.master2_conf, "-l", "quiet"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.master2_pid = proc.pid
        sock = os.path.join(self.dir, "master2", "sock", "master_event_pub.ipc")
        if not procs.until(lambda: os.path.exists(sock), 60, 0.2):
            raise LabError("the second salt-master did not start (master2.out)")

    def kill_master(self, master):
        """A master crash: every process of its session SIGKILLed at once."""
        import signal as signals  # pylint: disable=import-outside-toplevel

        pid = self.master_pid if master == 1 else self.master2_pid
        if pid:
            try:
                os.killpg(pid, signals.SIGKILL)
            except ProcessLookupError:
                pass
            procs.until(lambda: not procs.alive(pid), 10, 0.05)
        if master == 1:
            self.master_pid = None
        else:
            self.master2_pid = None

    def client(self, master=1):
        import salt.client  # pylint: disable=import-outside-toplevel

        return salt.client.LocalClient(mopts=self.opts(master))

    def runner(self, fun, *args, _master=1, **kwargs):
        """``salt-run fun args`` through the master's own runner client, in this process
        (``_master=2``: the second master's)."""
        import salt.runner  # pylint: disable=import-outside-toplevel

        opts = self.opts(_master)
        opts["quiet"] = True
        return salt.runner.RunnerClient(opts).cmd(fun, list(args), kwarg=kwargs, print_event=False)

    def wait_minions(self, nodes, timeout=90, master=1):
        from salt.exceptions import SaltClientError  # pylint: disable=import-outside-toplevel

        def answered():
            try:
                got = self.client(master).cmd(list(nodes), "test.ping", tgt_type="list", timeout=5)
            except SaltClientError:  # the master is still starting
                return False
            return sorted(got) == sorted(nodes)

        if not procs.until(answered, timeout, 1):
            raise LabError(f"minions {nodes} did not answer the master within {timeout} s")

    def events(self, master=1):
        """A listener on the master's event bus (use ``get_event``)."""
        import salt.utils.event  # pylint: disable=import-outside-toplevel

        opts = self.opts(master)
        return salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=True)

    # ----------------------------------------------------------------- nodes

    def kill(self, node):
        """A node failure: every process of the node (corosync, Pacemaker, its minion)
        SIGKILLed at once; its L3 agent stops reporting."""
        self.alive.discard(node)
        pcmklab.kill(self.pcmk, node)
        self.minion_pids.pop(node, None)

    def revive(self, node, timeout=90, wait=True):
        """The node boots again: corosync + Pacemaker, its L3 agent, then its minion
        (``wait``: until it answers the master)."""
        pcmklab.restart(self.pcmk, node, timeout)
        self.alive.add(node)
        neutronlab.report_l3_agents(self.neutron, node)
        self.start_minion(node)
        if wait:
            self.wait_minions([node])

    def signed(self, signer, tag, node, seen=None, **extra):
        """A node signal's data as ``signer``'s hastack_cluster beacon signs it (with that
        minion's own key, from its pki directory here)."""
        import salt.crypt  # pylint: disable=import-outside-toplevel

        if os.path.join(REPO, "salt", "_utils") not in sys.path:
            sys.path.append(os.path.join(REPO, "salt", "_utils"))
        from hastack_utils import signals  # pylint: disable=import-outside-toplevel

        key = self._keys.get(signer)
        if key is None:
            key = self._keys[signer] = salt.crypt.PrivateKey.from_file(
                os.path.join(self.dir, f"salt-minion-{signer}", "pki", "minion.pem")
            )
        return signals.signed_data(key, tag, signer, node, seen or time.time(), **extra)

    def batch(self, sender, events):
        """``sender``'s own minion sends ``events`` (``[{tag, data}]``) as one batch, the
        way beacon returns travel: the master forwards each event's data as it is, so
        the sender can write any envelope (any ``id``) into it."""
        out = self.client().cmd(
            sender,
            "event.fire_master",
            [{}, "hastack/lab/batch"],
            kwarg={"preload": {"events": events}},
            timeout=60,
        )
        if out.get(sender) is not True:
            raise LabError(f"{sender} did not send its batch: {out}")

    def kill_minion(self, node):
        """The node stays up, its salt-minion dies: the minion and every job it runs."""
        import signal as signals  # pylint: disable=import-outside-toplevel

        pid = self.minion_pids.pop(node)
        try:
            os.killpg(pid, signals.SIGKILL)
        except ProcessLookupError:
            pass

    def placement(self, node="bob"):
        out = self.client().cmd(node, "pacemaker.status", timeout=30)
        return out[node]["resources"]

    # ----------------------------------------------------------------- whole lab

    def stop(self):
        self._beat.set()
        if self._beater is not None:
            # A report already under way ends before Neutron's database does.
            self._beater.join(timeout=60)
        outsiders = [pid for node, pid in self.minion_pids.items() if node not in NODES]

        def nodes_then_ceph():
            try:
                if self.pcmk:
                    # The minions are processes of their nodes: they end with them (and
                    # so do the identities' computes and the nodes' ceph-fuse mounts,
                    # which need the Ceph cluster until then).
                    pcmklab.stop(self.pcmk["dir"])
            finally:
                if self.vm:
                    cephlab.stop(self.vm["ceph"]["dir"])

        # Side by side: each waits for its own daemons' shutdown (one after another
        # they took 38 s), and none needs another to end.
        parts = [self.stop_master, lambda: procs.stop(outsiders), nodes_then_ceph]
        if self.master2_pid:
            parts.append(lambda: procs.stop([self.master2_pid], timeout=20))
        if self.neutron:
            parts.append(lambda: neutronlab.stop(self.neutron["dir"]))
        if self.vm and "nova" in self.vm:
            parts.append(lambda: novalab.stop(self.vm["nova"]["dir"]))
        errors = []

        def run(part):
            try:
                part()
            except Exception as err:  # pylint: disable=broad-except
                errors.append(err)

        threads = [threading.Thread(target=run, args=(part,)) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for error in errors[1:]:
            print(f"failoverlab: stopping also failed: {error!r}", file=sys.stderr)
        if errors:
            raise errors[0]


def start(
    d=None, policy=None, extra_master=None, wiring="engine", vms=False, modes=None, masters=1
):
    """Start everything; the lab is ready when the three minions answer the master, the
    beacon runs on each and Listing 2 is applied and settled. ``extra_master`` adds
    master settings (lists such as ``reactor`` are extended); ``wiring`` is the shipped
    master settings to use: ``engine`` (hastack-failover.conf) or ``reactor``
    (hastack-failover-reactor.conf).

    With ``vms``, the VMs' part too (``vm_pillar``): a real fence device, the lab Ceph
    with CephFS mounted in every node, the lab Nova, and the compute identities host1..3
    (``modes``: ``{identity: identity|evacuate}``) as Pacemaker resources running real
    nova-compute processes inside the nodes; ready once every identity serves.

    With ``masters=2``, Salt multi-master: a second master (``MASTER2_ADDR``, the same
    wiring, the same key pair), and every minion connected to both."""
    d = os.path.abspath(d or os.path.join("/var/tmp", f"hastack-failover-{os.getpid()}"))
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)  # the lab PostgreSQL (user postgres) works in here
    lab = Lab(d)
    lab.modes = modes
    lab.masters = masters
    try:
        # The Pacemaker nodes mostly wait on corosync's membership while Neutron, Ceph
        # and Nova work: side by side, not one after the other (-20 s).
        nodes = _in_background(pcmklab.start, os.path.join(d, "pcmk"), fencing=vms)
        try:
            lab._start_neutron()
            if vms:
                lab._start_vm_services()
        finally:
            lab.pcmk = nodes.result()
        if vms:
            lab.vm["pcmk"] = lab.pcmk
        lab._write_master(policy, extra_master, wiring)
        lab.start_master()
        if masters == 2:
            lab.start_master2()
        for node in (*NODES, "eve"):
            lab.start_minion(node)
        lab.wait_minions((*NODES, "eve"))
        if masters == 2:
            lab.wait_minions((*NODES, "eve"), master=2)
        client = lab.client()
        if vms:
            lab._apply_vms(client)
        applied = client.cmd("alice", "state.apply", ["hastack.pacemaker"], timeout=300)
        _check_states(applied, "alice")
        if vms:
            novalab.wait_hosts(lab.vm["nova"], list(IDENTITIES), timeout=120)
        beacons = client.cmd(
            list(NODES), "state.apply", ["hastack.failover"], tgt_type="list", timeout=120
        )
        for node in NODES:
            _check_states(beacons, node)
    except Exception:
        lab.stop()
        raise
    return lab


def _in_background(fun, *args, **kwargs):
    """``fun(*args, **kwargs)`` in a thread; its future."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fun, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)


def _check_states(ret, minion):
    got = ret.get(minion)
    if not isinstance(got, dict) or not all(v.get("result") for v in got.values()):
        raise LabError(f"state.apply on {minion} failed: {json.dumps(got, default=str)[:2000]}")


def remove(lab):
    """Stop the lab and remove its directory (``KEEP_LAB_LOGS=1`` keeps the directory,
    with every daemon's log, for a look after a failure)."""
    lab.stop()
    if os.environ.get("KEEP_LAB_LOGS") != "1":
        shutil.rmtree(lab.dir, ignore_errors=True)


def heal_demo(out=print):
    """``make demo``'s self-healing part: start the lab, kill alice and call nothing,
    print each event of the incident as it arrives, show Pacemaker and Neutron after,
    bring alice back and show the restore. Returns True when it all held."""
    started = time.monotonic()
    lab = start()
    ok = True
    try:
        out(
            f"  master + 3 minions inside the Pacemaker nodes + Neutron up in "
            f"{time.monotonic() - started:.0f} s"
        )
        out("  salt-run failover.drill alice:\n")
        out("    " + lab.runner("failover.drill", "alice").replace("\n", "\n    "))
        listener = lab.events()
        killed = time.time()
        lab.kill("alice")
        out("\n  alice killed (SIGKILL of corosync, Pacemaker and its minion); the bus says:")
        done = None
        deadline = time.monotonic() + 120
        while done is None and time.monotonic() < deadline:
            event = listener.get_event(wait=0.5, full=True)
            if not event:
                continue
            tag, data = event["tag"], event["data"]
            if tag == "hastack/node/down":
                out(f"    +{time.time() - killed:5.1f} s  {tag} from {data.get('id')}")
            elif tag.startswith("hastack/failover/") and data.get("node") == "alice":
                what = data.get("reason") or data.get("error") or ""
                out(f"    +{time.time() - killed:5.1f} s  {tag}  {what}".rstrip())
                if tag.endswith(("/done", "/failed")):
                    done = data
        ok &= bool(done) and done["step"] == "done"
        placement = lab.placement()
        out(
            f"  crm_mon: p_nova-compute-host1 on {placement.get('p_nova-compute-host1')}, "
            f"nothing on alice: {'alice' not in str(placement)}"
        )
        routers = {
            r.name: a.host
            for a in lab.conn.network.agents(agent_type="L3 agent")
            for r in lab.conn.network.agent_hosted_routers(a)
        }
        out(f"  Neutron: routers {routers}")
        ok &= "alice" not in routers.values()
        lab.revive("alice")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            event = listener.get_event(wait=0.5, full=True)
            if event and event["tag"].endswith("/restored"):
                out(f"  alice back: {event['tag']}, removed {event['data']['removed']}")
                break
        out(
            f"  salt-run failover.incidents alice: "
            f"{[(r['state'], r['timings']) for r in lab.runner('failover.incidents', 'alice')]}"
        )
    finally:
        remove(lab)
    return ok


def drill(node):
    """``make drill NODE=...``: start the lab, print ``salt-run failover.drill NODE``,
    show that nothing changed, stop."""
    started = time.monotonic()
    lab = start()
    try:
        print(f"self-healing lab up in {time.monotonic() - started:.0f} s: {lab.dir}")
        before = lab.client().cmd("bob", "pacemaker.configuration", timeout=60)["bob"]
        print(f"\n$ salt-run failover.drill {node}\n")
        print(lab.runner("failover.drill", node))
        after = lab.client().cmd("bob", "pacemaker.configuration", timeout=60)["bob"]
        print(f"\nCIB configuration unchanged: {before == after}")
    finally:
        remove(lab)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "drill":
        drill(sys.argv[2])
    else:
        began = time.monotonic()
        the_lab = start()
        print(f"failover lab up in {time.monotonic() - began:.0f} s at {the_lab.dir}")

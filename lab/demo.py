"""``make demo``: a lab cloud's Ceph side configured by hastack from the example pillar.

Starts a throwaway Ceph cluster on 127.0.0.1 and an isolated libvirtd, applies the
example pillar to minion ``alice`` (admin minion, controller and compute) with
masterless salt-call, shows what changed, re-applies to show that nothing changes,
then proves the result with real clients: the rbd CLI as client.glance and
client.cinder with only the files hastack wrote, the libvirt secret's value
(read through the libvirt API) authenticating as client.cinder, the real glance_store
driver storing an image with the rendered glance-api.conf, and the rendered Cinder
and Nova values. Then a failover drill on a live 3-node corosync + Pacemaker cluster:
Listing 2 applied from alice, alice killed, ``pacemaker.shift_away`` run on bob, and
crm_mon's placement compared with the simulated plan. Last, the example's floating IPs
by server and port name on a real neutron-server, and a dead L3 agent's router moved.
Then self-healing (lab/failoverlab.py): a real master with hastack's reactor wiring and
minions inside the live Pacemaker nodes; alice is killed and nobody calls anything: the
incident's events as they arrive, Pacemaker and Neutron after, alice's return.
Stops every service at the end
(``KEEP=1`` keeps Ceph and libvirtd running).
"""

import base64
import configparser
import json
import os
import shutil
import subprocess
import sys
import time

import openstack

from lab import cephlab, failoverlab, libvirtlab, neutronlab, novalab, pcmklab, saltlocal

REPO = saltlocal.REPO
DEMO_DIR = os.path.join(REPO, ".lab", "demo")
# Pacemaker nodes have their own /tmp, PostgreSQL runs as postgres: those labs live here.
VAR_DEMO_DIR = "/var/tmp/hastack-demo"


def rbd(conf, user, *args, keyring=None):
    extra = ["--keyring", keyring] if keyring else []
    proc = subprocess.run(
        ["rbd", "-c", conf, "--id", user, *extra, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode == 0, (proc.stderr.strip().splitlines() or [""])[-1]


def check(label, ok, detail="", want_ok=True):
    good = ok == want_ok
    mark = "ok  " if good else "FAIL"
    expect = "allowed" if want_ok else "refused"
    print(
        f"  [{mark}] {label}: {'allowed' if ok else 'refused'} (expected {expect})"
        + (f": {detail}" if detail and not ok else "")
    )
    return good


def openstack_checks(alice, virt, conf_dir, etc_dir):
    import libvirt  # pylint: disable=import-outside-toplevel

    print("\n== 6. Glance, Cinder, Nova and the libvirt secret, checked with real clients")
    ok = True
    conn = libvirt.open(virt["uri"])
    try:
        secret = conn.listAllSecrets()[0]
        value = base64.b64encode(secret.value()).decode()
        print(f"  libvirt secret {secret.UUIDString()} usage '{secret.usageID()}'")
    finally:
        conn.close()
    keyring = os.path.join(DEMO_DIR, "from-libvirt.keyring")
    with open(
        os.open(keyring, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8"
    ) as fh:
        fh.write(f"[client.cinder]\n\tkey = {value}\n")
    conf = os.path.join(conf_dir, "ceph.conf")
    ok &= check(
        "client.cinder with the key read back from libvirt: create volumes/libvirt",
        *rbd(conf, "cinder", "create", "volumes/libvirt", "--size", "1M", keyring=keyring),
    )
    glance_conf = os.path.join(etc_dir, "glance", "glance-api.conf")
    proc = subprocess.run(
        [sys.executable, "-m", "lab.glance_check", glance_conf],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    stored = proc.returncode == 0 and json.loads(proc.stdout.splitlines()[-1])["read_back_equal"]
    ok &= check(
        "glance_store with the rendered glance-api.conf: store + read back 1 MiB",
        stored,
        (proc.stderr.strip().splitlines() or [""])[-1],
    )
    for service, section, user_key, pool_key, conf_key in (
        ("cinder", "ceph", "rbd_user", "rbd_pool", "rbd_ceph_conf"),
        ("nova", "libvirt", "rbd_user", "images_rbd_pool", "images_rbd_ceph_conf"),
    ):
        ini = configparser.ConfigParser(interpolation=None)
        ini.read(os.path.join(etc_dir, service, f"{service}.conf"))
        opts = {k: v for k, v in ini.items(section, raw=True) if k not in ini.defaults()}
        print(f"  {service}.conf [{section}]: " + ", ".join(f"{k} = {v}" for k, v in opts.items()))
        ok &= check(
            f"rbd as {service}'s rbd_user in its pool",
            *rbd(opts[conf_key], opts[user_key], "ls", opts[pool_key]),
        )
    return ok


def fresh_lab_dir(lab, name):
    """An empty ``VAR_DEMO_DIR/name`` for ``lab`` (a run left over from an earlier demo
    is stopped first)."""
    d = os.path.join(VAR_DEMO_DIR, name)
    lab.stop(d)
    shutil.rmtree(d, ignore_errors=True)
    return d


def pacemaker_drill():
    """Listing 2 on a live 3-node cluster, alice killed, shift_away on bob."""
    print("\n== 7. Failover drill: a live 3-node corosync + Pacemaker cluster on 127.0.0.1-3")
    pcmk_dir = fresh_lab_dir(pcmklab, "pacemaker")
    started = time.monotonic()
    facts = pcmklab.start(pcmk_dir)
    try:
        print(f"  quorate, all three online in {time.monotonic() - started:.1f} s")
        pillar = pcmklab.listing2()
        alice, bob = (pcmklab.node_minion(facts, n, pillar) for n in ("alice", "bob"))
        rc, _ = alice.call("state.sls", "hastack.pacemaker")
        print(f"  alice: state.sls hastack.pacemaker (Listing 2, Dummy agents): rc {rc}")
        if rc != 0:
            print(alice.last_output)
            return False
        rc, planned = alice.call("pacemaker.simulate", "online=[alice, bob, charlie]")
        live = pcmklab.wait_for_placement(alice, planned)
        hosts = ", ".join(f"host{i} on {live.get(f'p_nova-compute-host{i}')}" for i in (1, 2, 3))
        print(
            f"  placement as simulated: {live == planned}; control plane with p_IP on "
            f"{live.get('p_IP')}; {hosts}"
        )
        started = time.monotonic()
        pcmklab.kill(facts, "alice")
        pcmklab.wait_until_offline(facts, "alice", seen_from="bob")
        print(
            f"  alice killed (SIGKILL, all its processes); bob saw it go in "
            f"{time.monotonic() - started:.1f} s"
        )
        rc, shifted = bob.call(
            "pacemaker.shift_away", "alice", "nodes=[alice, bob, charlie]", "fallback=[bob]"
        )
        if rc != 0:
            print(bob.last_output)
            return False
        for rsc, step in shifted["plan"].items():
            print(
                f"  bob: shift_away alice: {rsc} {step['from']} -> {step['to']} ({step['constraint']})"
            )
        live = pcmklab.wait_for_placement(bob, shifted["placement"])
        print(
            f"  crm_mon placement equals the simulated plan: {live == shifted['placement']} "
            f"({time.monotonic() - started:.1f} s after the kill); p_IP now on {live.get('p_IP')}"
        )
        return live == shifted["placement"] and live.get("p_nova-compute-host1") == "bob"
    finally:
        pcmklab.stop(pcmk_dir)
        shutil.rmtree(pcmk_dir, ignore_errors=True)


def floating_ip_drill(alice, overlay_for):
    """The example's floating IPs by name on a real neutron-server, then a network node's
    L3 agent dies and its router moves."""
    print(
        "\n== 8. Floating IPs by name on a real neutron-server and Nova (fake-driver computes "
        "alice and bob) on 127.0.0.1"
    )
    neutron_dir = fresh_lab_dir(neutronlab, "neutron")
    nova_dir = fresh_lab_dir(novalab, "nova")
    started = time.monotonic()
    facts = neutronlab.start(neutron_dir)
    try:
        neutronlab.start_ovs_agents(facts, "alice", "bob")
        nova = novalab.start(nova_dir, computes=("alice", "bob"), neutron_url=facts["url"])
        cloud = dict(nova["cloud"], network_endpoint_override=facts["url"])
        conn = openstack.connect(**cloud)
        made = neutronlab.workshop_topology(conn)
        net = made["admin-net"].id
        (web1,) = novalab.boot_with_ports(nova, conn, "alice", ["web1"], net)
        web1_standby, db1 = novalab.boot_with_ports(nova, conn, "bob", ["web1-standby", "db1"], net)
        # Network nodes alice and bob; alice's L3 agent serves the router (placed before
        # any other write lets Neutron's scheduler place it).
        neutronlab.report_l3_agents(facts, "alice", "bob")
        agent = {a.host: a for a in conn.network.agents(agent_type="L3 agent")}["alice"]
        conn.network.add_router_to_agent(agent, made["admin-router"])
        print(
            f"  neutron-server and Nova up with ext_net, admin-net, admin-router; servers web1 "
            f"on alice, web1-standby and db1 on bob, booted through Nova with their ports "
            f"({time.monotonic() - started:.1f} s)"
        )
        alice.set_overlay(overlay_for(cloud))
        rc, applied = alice.call("state.sls", "hastack.floating_ips")
        print(f"  alice: state.sls hastack.floating_ips (pillar/hastack/openstack.sls): rc {rc}")
        if rc != 0:
            print(alice.last_output)
            return False
        for sid, changes in sorted(saltlocal.changes_by_id(applied).items()):
            print(
                f"    {sid}: address {changes['address']['new']} -> port {changes['port']['new']}"
            )
        for name, port in (("web1", web1), ("db1", db1)):
            held = [f.floating_ip_address for f in conn.network.ips(port_id=port.id)]
            print(f"  Neutron says {name}'s port has {held}")
        rc2, again = alice.call("state.sls", "hastack.floating_ips")
        print(f"  second apply: rc {rc2}, {len(saltlocal.changes_by_id(again))} changes")
        rc4, moved_ip = alice.call("floating_ip.move", "web1")
        if rc4 != 0:
            print(alice.last_output)
            return False
        print(
            f"  floating_ip.move web1 (to the standby in pillar): {moved_ip['address']} now on "
            f"web1-standby; Neutron says {[f.floating_ip_address for f in conn.network.ips(port_id=web1_standby.id)]}"
        )

        neutronlab.age_agent(facts, "alice")
        print("  alice's L3 agent stops reporting (its heartbeat an hour old)")
        rc3, moved = alice.call("neutron_l3.move_routers")
        if rc3 != 0:
            print(alice.last_output)
            return False
        for router, step in moved["moved"].items():
            print(
                f"  neutron_l3.move_routers: {router} {step['from']} -> {step['to']}, "
                f"re-serving {', '.join(moved['floating_ips'])}"
            )
        return (
            rc == 0
            and rc2 == 0
            and not saltlocal.changes_by_id(again)
            and moved["moved"] == {"admin-router": {"from": "alice", "to": "bob"}}
        )
    finally:
        novalab.stop(nova_dir)
        neutronlab.stop(neutron_dir)
        shutil.rmtree(nova_dir, ignore_errors=True)
        shutil.rmtree(neutron_dir, ignore_errors=True)


def summarize(ret):
    for sid, changes in saltlocal.changes_by_id(ret).items():
        print(f"  {sid}: {', '.join(changes)}")


def main():
    ceph_dir = os.path.join(DEMO_DIR, "ceph")
    if os.path.exists(os.path.join(ceph_dir, cephlab.FACTS)):
        cephlab.stop(ceph_dir)
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    os.makedirs(DEMO_DIR)

    print("== 1. Lab Ceph cluster (1 mon, 1 memstore OSD, cephx) on 127.0.0.1")
    started = time.monotonic()
    facts = cephlab.start(ceph_dir)
    print(
        f"  fsid {facts['fsid']}, mon_host {facts['mon_host']} ({time.monotonic() - started:.1f} s)"
    )
    libvirt_dir = os.path.join(DEMO_DIR, "libvirt")
    ok = True
    try:
        virt = libvirtlab.start(libvirt_dir)
        print(f"  libvirtd (secret driver, own mount namespace): {virt['uri']}")
        conf_dir = os.path.join(DEMO_DIR, "alice", "etc-ceph")
        etc_dir = os.path.join(DEMO_DIR, "alice", "etc")
        alice = saltlocal.Minion(
            os.path.join(DEMO_DIR, "alice"),
            "alice",
            saltlocal.lab_overlay(facts, conf_dir, etc_dir, virt["uri"]),
        )
        print("\n== 2. Example pillar (pillar/hastack/common.sls) on minion alice, test=True first")
        rc, predicted = alice.call("state.apply", "hastack", test=True)
        if not isinstance(predicted, dict):
            print(predicted)
            return 1
        print(f"  test=True predicts {len(saltlocal.changes_by_id(predicted))} states with changes")

        print("\n== 3. salt-call --local state.apply hastack")
        started = time.monotonic()
        rc, applied = alice.call("state.apply", "hastack")
        print(f"  rc {rc}, {time.monotonic() - started:.1f} s; changed:")
        summarize(applied)
        rc2, again = alice.call("state.apply", "hastack")
        print(f"  second apply: rc {rc2}, {len(saltlocal.changes_by_id(again))} changes")
        ok = rc == 0 and rc2 == 0 and not saltlocal.changes_by_id(again)

        print(f"\n== 4. What hastack wrote in {conf_dir}")
        for name in sorted(os.listdir(conf_dir)):
            st = os.stat(os.path.join(conf_dir, name))
            print(f"  {oct(st.st_mode & 0o777)[2:]:>4} {st.st_uid:>5}:{st.st_gid:<5} {name}")

        conf = os.path.join(conf_dir, "ceph.conf")
        print("\n== 5. Client check with the real rbd CLI and only those files")
        for user, pool in (("glance", "images"), ("cinder", "volumes"), ("cinder", "vms")):
            made = rbd(conf, user, "create", f"{pool}/demo", "--size", "1M")
            ok &= check(f"client.{user} create {pool}/demo", *made)
            ok &= check(f"client.{user} ls {pool}", *rbd(conf, user, "ls", pool))
            ok &= check(
                f"client.{user} rm {pool}/demo",
                *rbd(conf, user, "rm", f"{pool}/demo", "--no-progress"),
            )
        ok &= check("client.glance ls volumes", *rbd(conf, "glance", "ls", "volumes"), False)
        ok &= check("client.cinder ls images (read-only)", *rbd(conf, "cinder", "ls", "images"))
        ok &= check(
            "client.cinder create images/demo",
            *rbd(conf, "cinder", "create", "images/demo", "--size", "1M"),
            False,
        )

        ok &= openstack_checks(alice, virt, conf_dir, etc_dir)

        ok &= pacemaker_drill()

        ok &= floating_ip_drill(
            alice,
            lambda cloud: saltlocal.lab_overlay(facts, conf_dir, etc_dir, virt["uri"], cloud=cloud),
        )

        print(
            "\n== 9. Self-healing: a real master, minions inside the live Pacemaker nodes, Neutron"
        )
        healed = failoverlab.heal_demo()
        ok &= check("alice killed, nobody called, the cloud healed and went home", healed)
    finally:
        if os.environ.get("KEEP") == "1":
            print(
                f"\nLab kept running: python -m lab.cephlab stop {ceph_dir}; "
                f"python -m lab.libvirtlab stop {libvirt_dir}"
            )
        else:
            libvirtlab.stop(libvirt_dir)
            cephlab.stop(ceph_dir)
            print("\nLab cluster and libvirtd stopped.")
    print("DEMO OK" if ok else "DEMO FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

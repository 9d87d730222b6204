"""A throwaway Ceph cluster on loopback, for tests, the demo and the benchmarks.

One monitor and one or more memstore OSDs, cephx on, everything (data, keyrings,
logs, sockets, pid files) under one directory; nothing is written under /etc/ceph or
/var/lib/ceph. Ports are chosen free on 127.0.0.1 so several labs can run side by side.
``stop`` ends only the PIDs this lab recorded.

Usage::

    python -m lab.cephlab start DIR [--osds N]   # prints the lab's facts as JSON
    python -m lab.cephlab stop DIR
    python -m lab.cephlab status DIR
"""

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import time
import uuid

from lab import procs

FACTS = "lab.json"
MON_ID = "a"
MDS_ID = "a"


class LabError(RuntimeError):
    pass


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port_block(size):
    """A run of ``size`` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - size)
        if all(_port_free(p) for p in range(base, base + size)):
            return base
    raise LabError(f"no block of {size} free ports on 127.0.0.1")


def _run(argv, **kwargs):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed (rc {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _conf_text(d, fsid, mon_host, port_min, port_max):
    return f"""[global]
fsid = {fsid}
mon_host = {mon_host}
mon_initial_members = {MON_ID}
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_port_min = {port_min}
ms_bind_port_max = {port_max}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
keyring = {d}/$cluster.$name.keyring
log_file = {d}/log/$cluster-$name.log
mon_cluster_log_file = {d}/log/$cluster.log
admin_socket = {d}/run/$cluster-$name.asok
pid_file = {d}/run/$cluster-$name.pid
run_dir = {d}/run
crash_dir = {d}/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_crush_chooseleaf_type = 0
mon_warn_on_pool_no_redundancy = false
mon_allow_pool_delete = true
mon_allow_pool_size_one = true
paxos_propose_interval = 0.05
mon_mgr_mkfs_grace = 31536000
mon_data_avail_warn = 2
osd_objectstore = memstore
memstore_device_bytes = 536870912
rados_mon_op_timeout = 15
client_mount_timeout = 15

[mon]
mon_data = {d}/mon/$cluster-$id

[mds]
mds_data = {d}/mds/$cluster-$id

[osd]
osd_data = {d}/osd/$cluster-$id
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
"""


def _spawn(argv, d, name):
    log = open(os.path.join(d, "log", f"{name}.stdout"), "ab")  # pylint: disable=consider-using-with
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
    )
    with open(os.path.join(d, "pids"), "a", encoding="utf-8") as pids:
        pids.write(f"{proc.pid} {name}\n")
    return proc


def _ceph(d, *args, timeout=15):
    return _run(
        ["ceph", "-c", f"{d}/ceph.conf", "--connect-timeout", str(timeout), *args],
    )


def _wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (LabError, subprocess.TimeoutExpired):
            pass
        if time.monotonic() > deadline:
            raise LabError(f"lab: {what} not ready after {timeout} s")
        time.sleep(0.2)


def start(d, osds=1, mds=False):
    """Create and start a cluster in directory ``d``; return its facts.

    With ``mds``, one metadata server (``mds.a``) runs too, for CephFS: the lab creates
    no filesystem (that is hastack's job), the MDS stays standby until one exists.
    """
    d = os.path.abspath(d)
    if os.path.exists(os.path.join(d, FACTS)):
        raise LabError(f"a lab already lives in {d}: stop it first")
    for sub in ("log", "run", "crash", "mon", "osd", "mds"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    fsid = str(uuid.uuid4())
    mon_port = _free_port_block(2)
    ms_min = _free_port_block(8 * osds + 8)
    mon_host = f"[v2:127.0.0.1:{mon_port}/0,v1:127.0.0.1:{mon_port + 1}/0]"
    conf = os.path.join(d, "ceph.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(_conf_text(d, fsid, mon_host, ms_min, ms_min + 8 * osds + 7))

    admin_keyring = os.path.join(d, "ceph.client.admin.keyring")
    mkfs_keyring = os.path.join(d, "mkfs.keyring")
    _run(
        [
            "ceph-authtool",
            "--create-keyring",
            mkfs_keyring,
            "--gen-key",
            "-n",
            "mon.",
            "--cap",
            "mon",
            "allow *",
        ]
    )
    _run(
        [
            "ceph-authtool",
            "--create-keyring",
            admin_keyring,
            "--gen-key",
            "-n",
            "client.admin",
            "--cap",
            "mon",
            "allow *",
            "--cap",
            "osd",
            "allow *",
            "--cap",
            "mds",
            "allow *",
            "--cap",
            "mgr",
            "allow *",
        ]
    )
    _run(["ceph-authtool", mkfs_keyring, "--import-keyring", admin_keyring])
    monmap = os.path.join(d, "monmap")
    _run(
        [
            "monmaptool",
            "--create",
            "--fsid",
            fsid,
            "--addv",
            MON_ID,
            f"[v2:127.0.0.1:{mon_port},v1:127.0.0.1:{mon_port + 1}]",
            monmap,
        ]
    )
    _run(
        [
            "ceph-mon",
            "-c",
            conf,
            "--mkfs",
            "-i",
            MON_ID,
            "--monmap",
            monmap,
            "--keyring",
            mkfs_keyring,
        ]
    )
    # The mon ports were free a moment ago; refuse to go on if something took them, or
    # clients would silently talk to another cluster.
    if not (_port_free(mon_port) and _port_free(mon_port + 1)):
        raise LabError(f"mon ports {mon_port}/{mon_port + 1} were taken meanwhile")
    _spawn(["ceph-mon", "-c", conf, "-i", MON_ID, "-f"], d, f"mon.{MON_ID}")
    _wait("monitor", lambda: bool(_ceph(d, "mon", "stat")), 30)

    for osd_id in range(osds):
        osd_uuid = str(uuid.uuid4())
        osd_dir = os.path.join(d, "osd", f"ceph-{osd_id}")
        os.makedirs(osd_dir, exist_ok=True)
        _run(
            [
                "ceph-osd",
                "-c",
                conf,
                "-i",
                str(osd_id),
                "--mkfs",
                "--mkkey",
                "--no-mon-config",
                "--osd-uuid",
                osd_uuid,
                "--keyring",
                os.path.join(osd_dir, "keyring"),
            ]
        )
        _ceph(
            d,
            "auth",
            "add",
            f"osd.{osd_id}",
            "osd",
            "allow *",
            "mon",
            "allow profile osd",
            "mgr",
            "allow profile osd",
            "-i",
            os.path.join(osd_dir, "keyring"),
        )
        _ceph(d, "osd", "new", osd_uuid, str(osd_id))
        _spawn(
            [
                "ceph-osd",
                "-c",
                conf,
                "-i",
                str(osd_id),
                "-f",
                "--keyring",
                os.path.join(osd_dir, "keyring"),
            ],
            d,
            f"osd.{osd_id}",
        )

    def _osds_up():
        stat = json.loads(_ceph(d, "osd", "stat", "-f", "json"))
        return stat.get("num_up_osds", stat.get("osdmap", {}).get("num_up_osds")) == osds

    _wait("OSDs", _osds_up, 60)
    if mds:
        _start_mds(d, conf)
    facts = {
        "dir": d,
        "fsid": fsid,
        "mon_host": mon_host,
        "conf": conf,
        "admin_keyring": admin_keyring,
        "osds": osds,
        "mds": MDS_ID if mds else None,
    }
    with open(os.path.join(d, FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh, indent=2)
    return facts


def _start_mds(d, conf):
    mds_dir = os.path.join(d, "mds", f"ceph-{MDS_ID}")
    os.makedirs(mds_dir, exist_ok=True)
    keyring = os.path.join(mds_dir, "keyring")
    _run(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", f"mds.{MDS_ID}"])
    _ceph(
        d,
        "auth",
        "add",
        f"mds.{MDS_ID}",
        "mon",
        "allow profile mds",
        "osd",
        "allow rwx",
        "mds",
        "allow *",
        "-i",
        keyring,
    )
    _spawn(
        ["ceph-mds", "-c", conf, "-i", MDS_ID, "-f", "--keyring", keyring],
        d,
        f"mds.{MDS_ID}",
    )

    def _registered():
        dump = json.loads(_ceph(d, "fs", "dump", "-f", "json"))
        return any(s.get("name") == MDS_ID for s in dump.get("standbys", []))

    _wait("MDS", _registered, 30)


def facts(d):
    with open(os.path.join(os.path.abspath(d), FACTS), encoding="utf-8") as fh:
        return json.load(fh)


def _pids(d):
    path = os.path.join(d, "pids")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [(int(line.split()[0]), line.split()[1]) for line in fh if line.strip()]


def stop(d):
    """Stop the daemons this lab started (OSDs first, mon last) and forget the lab."""
    d = os.path.abspath(d)
    pids = _pids(d)
    # The MDS first (it needs mon and OSDs to shut down), then OSDs: a mon stopped
    # before its OSDs makes them wait 5 s.
    mdss = [pid for pid, name in pids if name.startswith("mds")]
    osds = [pid for pid, name in pids if name.startswith("osd")]
    mons = [pid for pid, name in pids if name.startswith("mon")]
    procs.stop(mdss, timeout=12)
    procs.stop(osds)
    procs.stop(mons)
    for name in ("pids", FACTS):
        try:
            os.remove(os.path.join(d, name))
        except FileNotFoundError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lab.cephlab", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("dir")
    parser.add_argument("--osds", type=int, default=1)
    parser.add_argument("--mds", action="store_true", help="also run a metadata server")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(json.dumps(start(args.dir, args.osds, mds=args.mds), indent=2))
        elif args.action == "stop":
            stop(args.dir)
        else:
            print(_ceph(os.path.abspath(args.dir), "status"))
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

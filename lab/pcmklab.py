"""A real 3-node corosync + Pacemaker cluster on one machine, on loopback.

Each node (alice 127.0.0.1, bob 127.0.0.2, charlie 127.0.0.3) runs corosync and
pacemakerd in its own mount and UTS namespace: its hostname is its node name (corosync
and Pacemaker find the local node by hostname), with private /etc/corosync, /etc/libqb
(``force-filesystem-sockets``), /var/lib/pacemaker, /var/lib/corosync, /var/log, /run
and /tmp (libqb's sockets live there: a shared /tmp let one node's pacemakerd find
another's and give up). Quorate with a DC in about 20-25 s.

``node_argv(facts, node, argv)`` runs a command inside a node (nsenter into its mount
namespace). A node's processes are those in its mount namespace (Pacemaker's daemons
each start their own session, so no process group holds them all): ``kill`` SIGKILLs
them at once (a node failure), ``restart`` boots the node again, ``stop`` ends every
node. Only processes in the lab's own namespaces are signalled.

The lab directory must not be under /tmp (the nodes would not see it): it defaults
under /var/tmp.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import yaml

from lab import procs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NODES = {"alice": "127.0.0.1", "bob": "127.0.0.2", "charlie": "127.0.0.3"}
FACTS = procs.FACTS
KNET_PORT = 5495
# libqb's filesystem sockets (cmap, cpg, cib_rw, crmd, ...) live in /tmp here: a private
# /tmp per node keeps one node's daemons from connecting to another's.
SHADOWED = (
    "/etc/corosync",
    "/etc/libqb",
    "/var/lib/pacemaker",
    "/var/lib/corosync",
    "/var/log",
    "/run",
    "/tmp",
)


class LabError(RuntimeError):
    pass


def _corosync_conf(cluster, me):
    # All loopback addresses are local to every node here, and corosync takes the first
    # nodelist entry whose address is local as itself: each node lists itself first.
    ids = {name: i for i, name in enumerate(NODES, start=1)}
    order = [me] + [n for n in NODES if n != me]
    nodes = "\n".join(
        f"  node {{\n    ring0_addr: {NODES[name]}\n    name: {name}\n    nodeid: {ids[name]}\n  }}"
        for name in order
    )
    return f"""totem {{
  version: 2
  cluster_name: {cluster}
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  token: 2000
  interface {{
    linknumber: 0
    # Not corosync's default 5405: a host's own corosync would take that.
    mcastport: {KNET_PORT}
  }}
}}
nodelist {{
{nodes}
}}
quorum {{
  provider: corosync_votequorum
}}
logging {{
  to_logfile: yes
  logfile: /var/log/corosync.log
  to_syslog: no
  to_stderr: no
}}
"""


def listing2(params=True):
    """The example pillar's Listing 2 with ``ocf:pacemaker:Dummy`` for every agent (the
    OpenStack agents are not installed here) and no fencing device; without ``params``
    the primitives carry no instance parameters (Dummy's metadata has none of them, and
    pcs refuses unknown ones)."""
    with open(os.path.join(REPO, "pillar", "hastack", "pacemaker.sls"), encoding="utf-8") as fh:
        pillar = yaml.safe_load(fh)
    # The cluster nodes are controllers: hastack.pacemaker applies to that role.
    pillar["hastack"].setdefault("roles", ["controller"])
    pcmk = pillar["hastack"]["pacemaker"]
    pcmk["properties"]["stonith-enabled"] = "false"
    for spec in pcmk["primitives"].values():
        spec["agent"] = "ocf:pacemaker:Dummy"
        if not params:
            spec.pop("params", None)
    return pillar


def node_argv(facts, node, argv):
    """``argv`` run inside ``node``'s mount namespace."""
    return ["nsenter", "-t", str(facts["nodes"][node]["pid"]), "-m", "--", *argv]


def _start_node(d, name, cluster):
    root = os.path.join(d, name)
    for volatile in ("run", "tmp"):  # emptied at every boot, as on a real machine
        shutil.rmtree(os.path.join(root, volatile), ignore_errors=True)
    for path in SHADOWED:
        os.makedirs(os.path.join(root, path.strip("/").replace("/", "-")), exist_ok=True)
        os.makedirs(path, exist_ok=True)
    with open(os.path.join(root, "etc-corosync", "corosync.conf"), "w", encoding="utf-8") as fh:
        fh.write(_corosync_conf(cluster, name))
    open(os.path.join(root, "etc-libqb", "force-filesystem-sockets"), "w").close()  # noqa: SIM115
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    for sub in ("pengine", "cib", "blackbox", "cores"):
        os.makedirs(os.path.join(root, "var-lib-pacemaker", sub), exist_ok=True)
    # Pacemaker's daemons run as hacluster and need their state directories.
    subprocess.run(
        ["chown", "-R", "hacluster:haclient", os.path.join(root, "var-lib-pacemaker")], check=False
    )
    q = shlex.quote
    # The repository and the venv stay visible inside the node even when they live under
    # /tmp (a checkout in a temporary directory): bound back in from a view of the host's /tmp.
    host_tmp = os.path.join(root, "host-tmp")
    os.makedirs(host_tmp, exist_ok=True)
    mounts = [f"mount --bind /tmp {q(host_tmp)}"]
    mounts += [
        f"mount --bind {q(os.path.join(root, p.strip('/').replace('/', '-')))} {q(p)}"
        for p in SHADOWED
    ]
    for keep in sorted({os.path.realpath(REPO), os.path.realpath(sys.prefix)}):
        if keep.startswith("/tmp/"):
            inside = os.path.join(host_tmp, os.path.relpath(keep, "/tmp"))
            mounts.append(f"mkdir -p {q(keep)} && mount --bind {q(inside)} {q(keep)}")
    mounts = " && ".join(mounts)
    # corosync and pacemaker know the local node by its hostname: a UTS namespace each.
    script = (
        f"hostname {q(name)} && {mounts} && mkdir -p /run/pacemaker /var/log/pacemaker && "
        "chown hacluster:haclient /var/log/pacemaker && "
        "(corosync -f >/var/log/corosync.stdout 2>&1 &) && sleep 1 && "
        "exec pacemakerd -f >/var/log/pacemakerd.stdout 2>&1"
    )
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        ["unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # The node's mount namespace names its processes (see node_pids).
    ours = _mount_ns(os.getpid())
    procs.until(lambda: _mount_ns(proc.pid) != ours, 5, 0.01)
    if _mount_ns(proc.pid) in (ours, None):
        raise LabError(f"node {name} did not start (unshare failed?)")
    return {"pid": proc.pid, "mnt_ns": _mount_ns(proc.pid), "addr": NODES[name]}


def start(d=None, timeout=90):
    """Start the three nodes and wait for a quorate cluster with all of them online."""
    d = os.path.abspath(d or os.path.join("/var/tmp", f"hastack-pcmk-{os.getpid()}"))
    if os.path.realpath(d).startswith("/tmp/"):
        raise LabError("the Pacemaker lab directory must not be under /tmp")
    os.makedirs(d, exist_ok=True)
    facts = {"dir": d, "nodes": {}}
    for name in NODES:
        facts["nodes"][name] = _start_node(d, name, "hastack-lab")
    _save(facts)
    if procs.until(lambda: online_nodes(facts, "alice") == sorted(NODES), timeout, 1):
        return facts
    stop(d)
    raise LabError(f"the Pacemaker lab did not come up within {timeout} s")


def _save(facts):
    with open(os.path.join(facts["dir"], FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh)


def restart(facts, node, timeout=90):
    """Start ``node`` again after ``kill`` (a rebooted node keeps its disks: the lab
    directory) and wait until the others see it online. Updates ``facts``."""
    facts["nodes"][node] = _start_node(facts["dir"], node, "hastack-lab")
    _save(facts)
    other = next(n for n in NODES if n != node)
    if not procs.until(lambda: node in online_nodes(facts, other), timeout, 1):
        raise LabError(f"{node} did not rejoin within {timeout} s")
    return facts


def wait_for_placement(minion, wanted, timeout=60):
    """Poll ``pacemaker.status`` on ``minion`` (a lab node's minion) until the live
    placement is ``wanted``; return the last placement seen."""
    deadline = time.monotonic() + timeout
    while True:
        rc, out = minion.call("pacemaker.status")
        if rc != 0:
            raise LabError(f"pacemaker.status failed: {minion.last_output}")
        if out["resources"] == wanted or time.monotonic() > deadline:
            return out["resources"]
        time.sleep(1)


def wait_until_offline(facts, node, seen_from, timeout=60):
    """Wait until ``seen_from`` no longer sees ``node`` online (after ``kill``)."""
    if not procs.until(lambda: node not in online_nodes(facts, seen_from), timeout, 0.5):
        raise LabError(f"{seen_from} still sees {node} online after {timeout} s")


def node_minion(facts, node, pillar):
    """A masterless minion that runs inside ``node`` (root under the lab directory)."""
    from lab import saltlocal  # pylint: disable=import-outside-toplevel

    return saltlocal.Minion(
        os.path.join(facts["dir"], f"minion-{node}"),
        node,
        pillar,
        example=False,
        wrap=node_argv(facts, node, []),
    )


def crm_mon(facts, node):
    """``crm_mon --output-as=xml`` as seen from ``node`` (None if it does not answer)."""
    res = subprocess.run(
        node_argv(facts, node, ["crm_mon", "-1", "--output-as=xml"]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return res.stdout if res.returncode == 0 else None


def online_nodes(facts, node):
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    out = crm_mon(facts, node)
    if not out:
        return []
    root = ET.fromstring(out)
    summary = root.find("summary/current_dc")
    if summary is None or summary.get("with_quorum") != "true":
        return []
    return sorted(
        n.get("name")
        for n in root.iter("node")
        if n.get("online") == "true" and n.get("name") in NODES
    )


def _mount_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def node_pids(facts, node):
    """Every process of ``node``: those in its mount namespace. Pacemaker's daemons each
    start their own session, so a process group does not hold them all."""
    ns = facts["nodes"][node].get("mnt_ns")
    if not ns:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mount_ns(entry) == ns:
            pids.append(int(entry))
    return pids


def _signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _reap(pid):
    """Collect a node's exit status when this process started it (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def kill(facts, node):
    """A node failure: SIGKILL every process of ``node`` at once."""
    _signal_all(node_pids(facts, node), signal.SIGKILL)
    procs.until(lambda: not node_pids(facts, node), 5, 0.05)
    _reap(facts["nodes"][node]["pid"])


def stop(d):
    """Stop every node: SIGTERM (pacemakerd shuts its daemons down), SIGKILL what is left
    after 20 s. Only processes in the lab's own namespaces are signalled."""
    d = os.path.abspath(d)
    facts = procs.read_facts(d)
    if facts is None:
        return
    for node in facts["nodes"]:
        _signal_all(node_pids(facts, node) or [facts["nodes"][node]["pid"]], signal.SIGTERM)
    procs.until(lambda: not any(node_pids(facts, n) for n in facts["nodes"]), 20, 0.2)
    for node in facts["nodes"]:
        _signal_all(node_pids(facts, node), signal.SIGKILL)
        _reap(facts["nodes"][node]["pid"])
    os.remove(os.path.join(d, FACTS))


if __name__ == "__main__":
    if sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2] if len(sys.argv) > 2 else None), indent=2))
    else:
        stop(sys.argv[2])

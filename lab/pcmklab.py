"""A real 3-node corosync + Pacemaker cluster on one machine, on loopback.

Each node (alice 127.0.0.1, bob 127.0.0.2, charlie 127.0.0.3) runs corosync and
pacemakerd in its own mount and UTS namespace: its hostname is its node name (corosync
and Pacemaker find the local node by hostname), with private /etc/corosync, /etc/libqb
(``force-filesystem-sockets``), /var/lib/pacemaker, /var/lib/corosync, /var/log, /run
and /tmp (libqb's sockets live there: a shared /tmp let one node's pacemakerd find
another's and give up). Quorate with a DC in about 20-25 s.

``node_argv(facts, node, argv)`` runs a command inside a node (nsenter into its mount
and UTS namespaces). A node's processes are those in its mount namespace (Pacemaker's daemons
each start their own session, so no process group holds them all): ``kill`` SIGKILLs
them at once (a node failure), ``restart`` boots the node again, ``stop`` ends every
node. Only processes in the lab's own namespaces are signalled.

The lab directory must not be under /tmp (the nodes would not see it): it defaults
under /var/tmp.

Fencing: ``lab/fence_lab`` is a fence agent for these nodes (``off``/``reboot`` SIGKILL
every process of the node, as ``kill`` does, and succeed once none is left).
Pacemaker's fencer runs agents from /usr/sbin only (it lists ``/usr/sbin/fence_*``), and
the nodes share the host's /usr: ``start(d, fencing=True)`` (or
``install_fence_agent()``) puts a symlink /usr/sbin/fence_lab -> this checkout's
lab/fence_lab on the host, and ``stop`` removes it only if this lab created it (a
symlink left by a lab that was never stopped stays, pointing here). With
``fencing=True`` the cluster also gets the fence device (``fence_device_xml``, the
same as the pillar snippet ``fence_device_config``) and ``stonith-enabled=true``,
written with plain ``cibadmin``/``crm_attribute`` inside alice. Without it (the
default) nothing about fencing changes: ``listing2()`` still turns stonith off.
``fail_fencing`` makes fencing a node fail on demand; ``fence_history`` reads the
fencer's history as a survivor sees it.
"""

import json
import os
import re
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
FENCE_AGENT = os.path.join(REPO, "lab", "fence_lab")
# Where Pacemaker's fencer looks for RHCS-style agents (its PCMK__FENCE_BINDIR).
FENCE_LINK = "/usr/sbin/fence_lab"
FENCE_DEVICE = "p_fence_lab"
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


def listing2(params=True, fencing=None):
    """The example pillar's Listing 2 with ``ocf:pacemaker:Dummy`` for every agent (the
    OpenStack agents are not installed here) and no fencing device; without ``params``
    the primitives carry no instance parameters (Dummy's metadata has none of them, and
    pcs refuses unknown ones). With ``fencing`` (a running lab's facts, started with
    ``fencing=True`` so that the agent is installed) the lab's fence device is declared
    too and ``stonith-enabled`` is true."""
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
    if fencing:
        pcmk["properties"]["stonith-enabled"] = "true"
        pcmk["primitives"].update(fence_device_config(fencing))
    return pillar


def fence_device_config(facts, rid=FENCE_DEVICE):
    """The lab's fence device as hastack pillar (``hastack:pacemaker:primitives``): one
    ``stonith:fence_lab`` device for the three nodes, pointed at the lab directory."""
    return {
        rid: {
            "agent": "stonith:fence_lab",
            "params": {
                "pcmk_host_list": " ".join(NODES),
                "pcmk_host_check": "static-list",
                "lab_dir": facts["dir"],
            },
            "ops": {"monitor": {"interval": "60s", "timeout": "20s"}},
        }
    }


def fence_device_xml(facts, rid=FENCE_DEVICE):
    """``fence_device_config`` as the CIB ``<primitive>`` (for ``cibadmin --create -o
    resources``)."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    spec = fence_device_config(facts, rid)[rid]
    prim = ET.Element("primitive", id=rid, type="fence_lab")
    prim.set("class", "stonith")
    attrs = ET.SubElement(prim, "instance_attributes", id=f"{rid}-instance_attributes")
    for name, value in spec["params"].items():
        ET.SubElement(
            attrs, "nvpair", id=f"{rid}-instance_attributes-{name}", name=name, value=value
        )
    ops = ET.SubElement(prim, "operations")
    for name, op in spec["ops"].items():
        ET.SubElement(ops, "op", id=f"{rid}-{name}-interval-{op['interval']}", name=name, **op)
    return ET.tostring(prim, encoding="unicode")


def install_fence_agent():
    """Make /usr/sbin/fence_lab this checkout's lab/fence_lab (the nodes share /usr).
    Returns True when this call created the link (then ``remove_fence_agent`` may go),
    False when it already pointed here. A dangling link (a removed checkout's) is
    replaced; anything else there is left alone and is an error."""
    want = os.path.realpath(FENCE_AGENT)
    if os.path.islink(FENCE_LINK) or os.path.exists(FENCE_LINK):
        if os.path.realpath(FENCE_LINK) == want:
            return False
        if not (os.path.islink(FENCE_LINK) and not os.path.exists(FENCE_LINK)):
            raise LabError(f"{FENCE_LINK} exists and is not this checkout's {FENCE_AGENT}")
        os.remove(FENCE_LINK)
    os.symlink(want, FENCE_LINK)
    return True


def remove_fence_agent():
    """Remove /usr/sbin/fence_lab if it is this checkout's link."""
    if os.path.islink(FENCE_LINK) and os.path.realpath(FENCE_LINK) == os.path.realpath(FENCE_AGENT):
        os.remove(FENCE_LINK)


def _node_run(facts, node, argv, timeout=30):
    return subprocess.run(
        node_argv(facts, node, argv), capture_output=True, text=True, timeout=timeout, check=False
    )


def configure_fencing(facts, node="alice", timeout=30):
    """Declare the lab's fence device and ``stonith-enabled=true`` with plain cibadmin
    and crm_attribute inside ``node`` (no Salt); wait until the device is started."""
    for argv in (
        # --modify --allow-create: the same again (a restarted lab directory) is no error.
        [
            "cibadmin",
            "--modify",
            "--allow-create",
            "-o",
            "resources",
            "--xml-text",
            fence_device_xml(facts),
        ],
        ["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled", "--update", "true"],
    ):
        res = _node_run(facts, node, argv)
        if res.returncode != 0:
            raise LabError(f"{' '.join(argv[:2])} failed on {node}: {res.stderr.strip()}")
    if not procs.until(lambda: _device_started(facts, node), timeout, 0.5):
        raise LabError(f"the fence device {FENCE_DEVICE} did not start within {timeout} s")


def _device_started(facts, node):
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    out = crm_mon(facts, node)
    if not out:
        return False
    device = ET.fromstring(out).find(f"resources/resource[@id='{FENCE_DEVICE}']")
    return device is not None and device.get("role") == "Started"


def fail_fencing(facts, node, fail=True, delay=1):
    """Make fencing ``node`` fail (``fail``) or work again: fence_lab's off/reboot of
    ``node`` exit 1 after ``delay`` s while ``<lab dir>/fence-fail-<node>`` exists.
    Pacemaker retries a failed fencing (here a new attempt about every 6 s, each tried
    on both survivors) but only ``stonith-max-attempts`` times (10 by default): keep a
    failure shorter than about a minute if its retry should fence the node."""
    switch = os.path.join(facts["dir"], f"fence-fail-{node}")
    if fail:
        with open(switch, "w", encoding="utf-8") as fh:
            fh.write(f"{delay}\n")
    elif os.path.exists(switch):
        os.remove(switch)


def fence_history(facts, node, seen_from):
    """The fencer's history for ``node`` as ``seen_from`` has it (``stonith_admin
    --history``): one dict per fencing operation, newest first, with ``action``,
    ``target``, ``status`` (success, failed, pending), ``delegate`` (the node that ran
    the device), ``origin`` (the node that asked), ``completed`` (a POSIX time, or
    None), ``exit_reason``. None when ``seen_from`` does not answer."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    # Without --verbose, stonith_admin lists only the last successful operation: no
    # failed or pending ones.
    res = _node_run(
        facts, seen_from, ["stonith_admin", "--history", node, "--verbose", "--output-as=xml"]
    )
    try:
        root = ET.fromstring(res.stdout)
    except ET.ParseError:
        return None
    status = root.find("status")
    if status is not None and status.get("code") not in ("0", None):
        return None
    events = []
    for ev in root.iter("fence_event"):
        events.append(
            {
                "action": ev.get("action"),
                "target": ev.get("target"),
                "status": ev.get("status"),
                "delegate": ev.get("delegate"),
                "origin": ev.get("origin"),
                "client": ev.get("client"),
                "completed": _posix_time(ev.get("completed")),
                "exit_reason": ev.get("exit-reason"),
            }
        )
    return events


def fence_log(facts):
    """What fence_lab did in this lab, oldest first: one dict per off/reboot (``time``,
    ``by``: the node that ran it, ``action``, ``target``, ``result``: success or
    failed, ``error``)."""
    try:
        with open(os.path.join(facts["dir"], "fence_lab.log"), encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except FileNotFoundError:
        return []


def _posix_time(text):
    """crm's ``completed`` stamp (``2024-01-02 03:04:05.678901 +01:00`` or without the
    fraction) as a POSIX time."""
    import datetime  # pylint: disable=import-outside-toplevel

    if not text:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(\.\d+)?\s*([+-]\d\d:?\d\d)?", text)
    if not m:
        return None
    stamp = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S")
    offset = (m.group(3) or "+00:00").replace(":", "")
    tz = datetime.timezone(
        (1 if offset[0] == "+" else -1)
        * datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    )
    return stamp.replace(tzinfo=tz).timestamp() + float(m.group(2) or 0)


def node_state(facts, node, seen_from):
    """``node``'s ``<node>`` attributes in ``crm_mon`` as ``seen_from`` shows them
    (online, unclean, ...: strings), with ``resources``: the ids of the resources
    crm_mon lists on it. None when ``seen_from`` does not answer."""
    import xml.etree.ElementTree as ET  # pylint: disable=import-outside-toplevel

    out = crm_mon(facts, seen_from)
    if not out:
        return None
    root = ET.fromstring(out)
    state = None
    for el in root.iterfind("nodes/node"):
        if el.get("name") == node:
            state = dict(el.attrib)
    if state is None:
        return None
    state["resources"] = sorted(
        rsc.get("id")
        for rsc in root.iter("resource")
        if any(n.get("name") == node for n in rsc.iterfind("node"))
    )
    return state


def node_argv(facts, node, argv):
    """``argv`` run inside ``node``'s mount and UTS namespaces: as on the machine, its
    host name is the node's (what its CephFS clients report to the MDS, by which a
    fenced node's sessions are evicted)."""
    return ["nsenter", "-t", str(facts["nodes"][node]["pid"]), "-m", "-u", "--", *argv]


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


def start(d=None, timeout=90, fencing=False):
    """Start the three nodes and wait for a quorate cluster with all of them online.
    With ``fencing``: install the fence agent (see the module's docstring), then declare
    the fence device and ``stonith-enabled=true`` once the cluster is up."""
    d = os.path.abspath(d or os.path.join("/var/tmp", f"hastack-pcmk-{os.getpid()}"))
    if os.path.realpath(d).startswith("/tmp/"):
        raise LabError("the Pacemaker lab directory must not be under /tmp")
    os.makedirs(d, exist_ok=True)
    # The fencer (root, inside a node) reads lab.json here.
    facts = {"dir": d, "nodes": {}, "host_mnt_ns": _mount_ns(os.getpid())}
    if fencing:
        facts["fence_agent_installed"] = install_fence_agent()
        _save(facts)
    try:
        for name in NODES:
            facts["nodes"][name] = _start_node(d, name, "hastack-lab")
            _save(facts)
        if not procs.until(lambda: online_nodes(facts, "alice") == sorted(NODES), timeout, 1):
            raise LabError(f"the Pacemaker lab did not come up within {timeout} s")
        if fencing:
            configure_fencing(facts)
    except BaseException:
        stop(d)
        raise
    return facts


def _save(facts):
    with open(os.path.join(facts["dir"], FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh)


def restart(facts, node, timeout=90):
    """Start ``node`` again after ``kill`` (a rebooted node keeps its disks: the lab
    directory) and wait until the others see it online. Updates ``facts``."""
    _reap(facts["nodes"][node]["pid"])  # when a fence agent killed it, not ``kill``
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
    if facts.get("fence_agent_installed"):
        remove_fence_agent()
    os.remove(os.path.join(d, FACTS))


if __name__ == "__main__":
    if sys.argv[1] == "start":
        print(json.dumps(start(sys.argv[2] if len(sys.argv) > 2 else None), indent=2))
    else:
        stop(sys.argv[2])

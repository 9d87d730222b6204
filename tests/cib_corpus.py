"""A small corpus of CIB files, built with the real tools the way an operator would.

Every CIB starts as ``cibadmin --empty`` and gets its nodes as a live cluster's CIB has
them (``cibadmin --create -o nodes``); everything else is written with ``pcs -f``,
``crm_resource``, ``crm_attribute`` and ``cibadmin`` on the file (``CIB_file``), never by
hand-editing XML. Each file passes ``crm_verify --xml-file``. pcs costs 0.5-2 s a call,
so the output is kept in ``tests/data/cibs/`` and the tests read that copy; run this
again (and copy the files over) only when the corpus itself should change:

    python -m tests.cib_corpus OUTDIR

Dates in the ``crm_resource --move --lifetime`` constraints are the build time plus
the lifetime, so in the stored copies those constraints have long expired (as they do
in a real CIB some hours after the move).

Fencing: this machine has no ``fence_dummy``; the devices use cluster-glue's ``null``
STONITH plugin (``stonith:null``, a do-nothing device that ``pcs stonith list`` offers
and pcs accepts without ``--force``). ``stonith-enabled`` stays false in every file:
on a CIB file without node status, ``crm_verify`` treats every node as unclean and
unfenceable when fencing is enabled (rc 78).
"""

import os
import subprocess
import sys

from bench.pacemaker import empty_cib as new_cib

ALERT_FILE = "/usr/share/pacemaker/alerts/alert_file.sh.sample"
ALERT_SMTP = "/usr/share/pacemaker/alerts/alert_smtp.sh.sample"
# What a Pacemaker 2.1.5 DC writes as dc-version (Debian 12's build).
DC_VERSION = "2.1.5-a3f44794f94"
MONITOR = ["op", "monitor", "interval=15s", "timeout=20s"]


# --------------------------------------------------------------------------- tools


def _run(argv, path):
    res = subprocess.run(
        argv, env=dict(os.environ, CIB_file=path), capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed (rc {res.returncode}): {(res.stderr or res.stdout).strip()}"
        )
    if res.stderr.strip():  # pcs warnings, crm_resource's "Migration will take effect until"
        print(f"{os.path.basename(path)}: {' '.join(argv)}: {res.stderr.strip()}", file=sys.stderr)
    return res.stdout


def pcs(path, *args):
    """``pcs -f path ARGS``."""
    return _run(["pcs", "-f", path, *args], path)


def tool(path, *argv):
    """A Pacemaker tool (cibadmin, crm_resource, crm_attribute) with ``CIB_file=path``."""
    return _run(list(argv), path)


def live_properties(path, cluster_name):
    """The cluster properties a running cluster's DC writes itself."""
    for name, value in (
        ("cluster-name", cluster_name),
        ("dc-version", DC_VERSION),
        ("cluster-infrastructure", "corosync"),
        ("have-watchdog", "false"),
    ):
        tool(path, "crm_attribute", "--type", "crm_config", "--name", name, "--update", value)


def verify(path):
    res = subprocess.run(
        ["crm_verify", "--xml-file", path], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(
            f"crm_verify {path}: rc {res.returncode}: {(res.stderr + res.stdout).strip()}"
        )


# --------------------------------------------------------------------------- the CIBs


def listing2_operator(path):
    """Nodes alice, bob, charlie. The workshop's Listing 2 loaded exactly as
    ``bench/pacemaker.py`` loads it with pcs (``pcs_commands(listing2(params=False))``:
    Dummy agents, no instance parameters, stonith-enabled=false), then an operator's
    additions, in this order:

    1. ``resource meta cl_quantum-agent-plugin-openvswitch interleave=true``
    2. ``resource update p_IP fake=operator`` (an instance attribute Dummy has)
    3. ``resource meta p_keystone migration-threshold=3``
    4. ``resource utilization p_nova-compute-host1 cpu=2 memory=2048``
    5. ``resource op defaults update timeout=90s``; ``resource defaults update
       migration-threshold=5``
    6. alert al_file (meta timeout=15s) with recipient al_file_rcpt (meta timestamp-format)
    7. fencing: ``stonith create fence_NODE null hostlist=NODE`` per node, each kept off
       the node it fences (``constraint location fence_NODE avoids NODE``), and
       ``stonith level add 1 NODE fence_NODE`` per node
    8. ``tag create t_computes p_nova-compute-host1 p_nova-compute-host2 p_nova-compute-host3``
    9. ``node attribute alice rack=r1``, ``node attribute bob rack=r2``,
       ``node utilization bob cpu=8 memory=16384``
    10. ``crm_attribute --type crm_config``: cluster-name=workshop, dc-version,
        cluster-infrastructure=corosync, have-watchdog=false
    11. ``crm_resource --move --resource p_nova-compute-host2 --node charlie --lifetime PT1H``
        (rule-based cli-prefer-p_nova-compute-host2 with a date_expression)
    12. ``constraint location p_nova-compute-host3 rule constraint-id=lo_host3_not_alice
        score=-INFINITY '#uname' eq alice``
    13. promotable clone p_galera-clone of p_galera (Stateful, monitors per role), meta
        promotable-max=1 notify=true, and ``constraint location p_galera-clone rule
        constraint-id=lo_galera_promote_alice role=Promoted score=100 '#uname' eq alice``
        (Stateful sets its promotion score from its monitor, which crm_simulate does not
        run: without a role=Promoted preference nothing is promoted in a simulation, and
        p_IP, colocated with the Promoted instance, and all of Listing 2 after it stay
        Stopped)
    14. ``constraint colocation add p_IP with Promoted p_galera-clone INFINITY
        id=co_IP_with_galera_master``; ``constraint order promote p_galera-clone then start
        g_basic_services id=o_galera_promote_first``
    15. colocation set cs_computes_apart (host1, host2, sequential=false, score=-100);
        order set os_keystone_glance (g_keystone g_glance require-all=false, kind=Optional)
    16. clone of a group: g_ovs_agents = [p_ovs_a, p_ovs_b], ``resource clone g_ovs_agents
        interleave=true`` (g_ovs_agents-clone)
    17. ``resource disable p_nova-novnc`` (target-role=Stopped inside g_nova)
    18. bundle b_web (podman, image localhost/test:latest, 2 replicas, ip-range-start
        127.0.0.50, control-port 3121, port-map 8080) holding p_web (Dummy); no --force.
        Its guest nodes b_web-0 and b_web-1 count for the clones: crm_simulate shows each
        clone with 5 instances, 2 of them Stopped on the guest nodes
    19. ``cibadmin --create -o resources``: template tpl_dummy (Dummy, monitor 45s) and
        primitive p_from_tpl using it (pcs has no template command)
    """
    from bench.pacemaker import NODES, pcs_commands  # pylint: disable=import-outside-toplevel
    from lab.pcmklab import listing2  # pylint: disable=import-outside-toplevel

    new_cib(path, NODES)
    for cmd in pcs_commands(listing2(params=False)["hastack"]["pacemaker"]):
        pcs(path, *cmd)

    pcs(path, "resource", "meta", "cl_quantum-agent-plugin-openvswitch", "interleave=true")
    pcs(path, "resource", "update", "p_IP", "fake=operator")
    pcs(path, "resource", "meta", "p_keystone", "migration-threshold=3")
    pcs(path, "resource", "utilization", "p_nova-compute-host1", "cpu=2", "memory=2048")
    pcs(path, "resource", "op", "defaults", "update", "timeout=90s")
    pcs(path, "resource", "defaults", "update", "migration-threshold=5")

    pcs(path, "alert", "create", f"path={ALERT_FILE}", "id=al_file", "meta", "timeout=15s")
    pcs(
        path,
        "alert",
        "recipient",
        "add",
        "al_file",
        "value=/var/log/pcmk_alerts.log",
        "id=al_file_rcpt",
        "meta",
        "timestamp-format=%H:%M:%S.%06N",
    )

    for node in NODES:
        pcs(path, "stonith", "create", f"fence_{node}", "null", f"hostlist={node}")
        pcs(path, "constraint", "location", f"fence_{node}", "avoids", node)
        pcs(path, "stonith", "level", "add", "1", node, f"fence_{node}")

    pcs(
        path,
        "tag",
        "create",
        "t_computes",
        "p_nova-compute-host1",
        "p_nova-compute-host2",
        "p_nova-compute-host3",
    )
    pcs(path, "node", "attribute", "alice", "rack=r1")
    pcs(path, "node", "attribute", "bob", "rack=r2")
    pcs(path, "node", "utilization", "bob", "cpu=8", "memory=16384")
    live_properties(path, "workshop")

    tool(
        path,
        "crm_resource",
        "--move",
        "--resource",
        "p_nova-compute-host2",
        "--node",
        "charlie",
        "--lifetime",
        "PT1H",
    )
    pcs(
        path,
        "constraint",
        "location",
        "p_nova-compute-host3",
        "rule",
        "constraint-id=lo_host3_not_alice",
        "score=-INFINITY",
        "#uname",
        "eq",
        "alice",
    )

    pcs(
        path,
        "resource",
        "create",
        "p_galera",
        "ocf:pacemaker:Stateful",
        "promotable",
        "--no-default-ops",
        "op",
        "monitor",
        "interval=20s",
        "role=Promoted",
        "op",
        "monitor",
        "interval=30s",
        "role=Unpromoted",
    )
    pcs(path, "resource", "meta", "p_galera-clone", "promotable-max=1", "notify=true")
    pcs(
        path,
        "constraint",
        "location",
        "p_galera-clone",
        "rule",
        "constraint-id=lo_galera_promote_alice",
        "role=Promoted",
        "score=100",
        "#uname",
        "eq",
        "alice",
    )
    pcs(
        path,
        "constraint",
        "colocation",
        "add",
        "p_IP",
        "with",
        "Promoted",
        "p_galera-clone",
        "INFINITY",
        "id=co_IP_with_galera_master",
    )
    pcs(
        path,
        "constraint",
        "order",
        "promote",
        "p_galera-clone",
        "then",
        "start",
        "g_basic_services",
        "id=o_galera_promote_first",
    )
    pcs(
        path,
        "constraint",
        "colocation",
        "set",
        "p_nova-compute-host1",
        "p_nova-compute-host2",
        "sequential=false",
        "setoptions",
        "score=-100",
        "id=cs_computes_apart",
    )
    pcs(
        path,
        "constraint",
        "order",
        "set",
        "g_keystone",
        "g_glance",
        "require-all=false",
        "setoptions",
        "kind=Optional",
        "id=os_keystone_glance",
    )

    for rid in ("p_ovs_a", "p_ovs_b"):
        pcs(
            path,
            "resource",
            "create",
            rid,
            "ocf:pacemaker:Dummy",
            "--no-default-ops",
            "op",
            "monitor",
            "interval=30s",
            "timeout=30s",
            "--group",
            "g_ovs_agents",
        )
    pcs(path, "resource", "clone", "g_ovs_agents", "interleave=true")
    pcs(path, "resource", "disable", "p_nova-novnc")

    pcs(
        path,
        "resource",
        "bundle",
        "create",
        "b_web",
        "container",
        "podman",
        "image=localhost/test:latest",
        "replicas=2",
        "network",
        "ip-range-start=127.0.0.50",
        "control-port=3121",
        "port-map",
        "port=8080",
    )
    pcs(
        path,
        "resource",
        "create",
        "p_web",
        "ocf:pacemaker:Dummy",
        "--no-default-ops",
        "op",
        "monitor",
        "interval=30s",
        "bundle",
        "b_web",
    )

    tool(
        path,
        "cibadmin",
        "--create",
        "-o",
        "resources",
        "-X",
        '<template id="tpl_dummy" class="ocf" provider="pacemaker" type="Dummy">'
        '<operations><op id="tpl_dummy-monitor" name="monitor" interval="45s"/></operations>'
        "</template>",
    )
    tool(
        path,
        "cibadmin",
        "--create",
        "-o",
        "resources",
        "-X",
        '<primitive id="p_from_tpl" template="tpl_dummy"/>',
    )


def four_node(path):
    """Nodes ctl-a, ctl-b, ctl-c, ctl-d (ids 1..4), all with pcs unless said otherwise:

    1. ``property set stonith-enabled=false``; ``resource defaults update
       resource-stickiness=50``; live properties via crm_attribute (cluster-name=four)
    2. primitives vip_public, vip_internal (Dummy, monitor 15s/20s)
    3. groups grp_db = [db_fs, db_server], grp_mq = [mq_server, mq_mgmt],
       grp_api = [api_keystone, api_nova] (``resource create ... --group``)
    4. ``resource create redis ocf:pacemaker:Stateful ... promotable`` (redis-clone)
    5. ``resource create haproxy ... clone interleave=true clone-max=3`` (haproxy-clone)
    6. grp_agents = [agent_dhcp, agent_meta], ``resource clone grp_agents`` (grp_agents-clone)
    7. locations: ``constraint location add``: lo_db_a (grp_db ctl-a 500), lo_mq_a (grp_mq
       ctl-a 300), lo_api_b (grp_api ctl-b 200), lo_vip_a (vip_public ctl-a 250),
       lo_haproxy_not_d (haproxy-clone ctl-d -INFINITY); ``constraint location redis-clone
       rule constraint-id=lo_redis_promoted_a role=Promoted score=1000 '#uname' eq ctl-a``
    8. ``constraint colocation add grp_db with grp_mq -- -1000 id=co_db_apart_mq``;
       ``constraint colocation add vip_public with Promoted redis-clone INFINITY
       id=co_vip_with_redis_promoted``
    9. colocation set cs_vips (vip_public vip_internal sequential=true, score=INFINITY);
       order set os_db_mq (grp_db grp_mq require-all=false, kind=Optional);
       ``constraint order start haproxy-clone then start grp_api id=o_haproxy_then_api``
    10. ``node attribute ctl-a ssd=true``; alert al_mail (alert_smtp sample, option
        email_sender) with recipient al_mail_rcpt root@localhost
    11. ``crm_resource --move --resource vip_internal --node ctl-c --lifetime PT2H``
    """
    new_cib(path, ["ctl-a", "ctl-b", "ctl-c", "ctl-d"])
    pcs(path, "property", "set", "stonith-enabled=false")
    pcs(path, "resource", "defaults", "update", "resource-stickiness=50")
    live_properties(path, "four")

    def dummy(rid, *extra):
        pcs(
            path,
            "resource",
            "create",
            rid,
            "ocf:pacemaker:Dummy",
            "--no-default-ops",
            *MONITOR,
            *extra,
        )

    dummy("vip_public")
    dummy("vip_internal")
    for gid, members in (
        ("grp_db", ["db_fs", "db_server"]),
        ("grp_mq", ["mq_server", "mq_mgmt"]),
        ("grp_api", ["api_keystone", "api_nova"]),
    ):
        for rid in members:
            dummy(rid, "--group", gid)
    pcs(
        path,
        "resource",
        "create",
        "redis",
        "ocf:pacemaker:Stateful",
        "--no-default-ops",
        "op",
        "monitor",
        "interval=15s",
        "timeout=20s",
        "role=Promoted",
        "op",
        "monitor",
        "interval=16s",
        "timeout=20s",
        "role=Unpromoted",
        "promotable",
    )
    dummy("haproxy", "clone", "interleave=true", "clone-max=3")
    for rid in ("agent_dhcp", "agent_meta"):
        dummy(rid, "--group", "grp_agents")
    pcs(path, "resource", "clone", "grp_agents")

    for lid, rsc, node, score in (
        ("lo_db_a", "grp_db", "ctl-a", "500"),
        ("lo_mq_a", "grp_mq", "ctl-a", "300"),
        ("lo_api_b", "grp_api", "ctl-b", "200"),
        ("lo_vip_a", "vip_public", "ctl-a", "250"),
        ("lo_haproxy_not_d", "haproxy-clone", "ctl-d", "-INFINITY"),
    ):
        # A negative score goes after "--" (pcs 0.11 deprecates it bare).
        pcs(path, "constraint", "location", "add", lid, rsc, node, "--", score)
    pcs(
        path,
        "constraint",
        "location",
        "redis-clone",
        "rule",
        "constraint-id=lo_redis_promoted_a",
        "role=Promoted",
        "score=1000",
        "#uname",
        "eq",
        "ctl-a",
    )
    pcs(
        path,
        "constraint",
        "colocation",
        "add",
        "grp_db",
        "with",
        "grp_mq",
        "--",
        "-1000",
        "id=co_db_apart_mq",
    )
    pcs(
        path,
        "constraint",
        "colocation",
        "add",
        "vip_public",
        "with",
        "Promoted",
        "redis-clone",
        "INFINITY",
        "id=co_vip_with_redis_promoted",
    )
    pcs(
        path,
        "constraint",
        "colocation",
        "set",
        "vip_public",
        "vip_internal",
        "sequential=true",
        "setoptions",
        "score=INFINITY",
        "id=cs_vips",
    )
    pcs(
        path,
        "constraint",
        "order",
        "set",
        "grp_db",
        "grp_mq",
        "require-all=false",
        "setoptions",
        "kind=Optional",
        "id=os_db_mq",
    )
    pcs(
        path,
        "constraint",
        "order",
        "start",
        "haproxy-clone",
        "then",
        "start",
        "grp_api",
        "id=o_haproxy_then_api",
    )

    pcs(path, "node", "attribute", "ctl-a", "ssd=true")
    pcs(
        path,
        "alert",
        "create",
        f"path={ALERT_SMTP}",
        "id=al_mail",
        "options",
        "email_sender=hacluster@localhost",
    )
    pcs(path, "alert", "recipient", "add", "al_mail", "value=root@localhost", "id=al_mail_rcpt")
    tool(
        path,
        "crm_resource",
        "--move",
        "--resource",
        "vip_internal",
        "--node",
        "ctl-c",
        "--lifetime",
        "PT2H",
    )


def old_feature_set(path):
    """Nodes alice, bob, charlie; with pcs: stonith-enabled=false, p_a and p_b (Dummy,
    monitor 30s/30s), ``constraint location add lo_a_alice p_a alice 100``. Then the root
    as a cluster upgraded from Pacemaker 1.1 has it: ``cibadmin --modify --xml-text
    '<cib crm_feature_set="3.0.7" validate-with="pacemaker-1.2"/>'`` (cibadmin validates
    the file against pacemaker-1.2 and accepts it; so do crm_verify and ``cibadmin
    --query``). ``crm_diff`` on this file writes a format="1" diff (the source's feature
    set is below 3.0.8)."""
    new_cib(path, ["alice", "bob", "charlie"])
    pcs(path, "property", "set", "stonith-enabled=false")
    for rid in ("p_a", "p_b"):
        pcs(
            path,
            "resource",
            "create",
            rid,
            "ocf:pacemaker:Dummy",
            "--no-default-ops",
            "op",
            "monitor",
            "interval=30s",
            "timeout=30s",
        )
    pcs(path, "constraint", "location", "add", "lo_a_alice", "p_a", "alice", "100")
    tool(
        path,
        "cibadmin",
        "--modify",
        "--xml-text",
        '<cib crm_feature_set="3.0.7" validate-with="pacemaker-1.2"/>',
    )


CORPUS = {
    "listing2-operator.xml": listing2_operator,
    "four-node.xml": four_node,
    "old-feature-set.xml": old_feature_set,
}


def build(outdir):
    """Write every CIB of the corpus into ``outdir``; each is checked with crm_verify."""
    os.makedirs(outdir, exist_ok=True)
    paths = []
    for name, make in CORPUS.items():
        path = os.path.join(outdir, name)
        make(path)
        verify(path)
        paths.append(path)
    return paths


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m tests.cib_corpus OUTDIR", file=sys.stderr)
        return 2
    for path in build(argv[0]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""
Neutron L3 agents and the routers they serve, through openstacksdk: which agents are
alive (Neutron's view from their heartbeats), which routers each serves, and moving
routers off dead agents, which re-serves every floating IP behind a router at once.

Connection: ``cloud`` (argument) or ``hastack:openstack:cloud`` (pillar or config), as
for ``floating_ip``: a ``clouds.yaml`` entry name or a dict of openstacksdk connection
arguments. One connection per run and cloud is kept (in ``__context__``).

:depends: openstacksdk
"""

import concurrent.futures

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import openstack.exceptions
except ImportError:  # __virtual__ says so
    pass

from hastack_utils import openstack as openstack_conn
from hastack_utils import sites
from hastack_utils.openstack import HAS_SDK
from hastack_utils.openstack import call as _call
from hastack_utils.openstack import one as _one

__virtualname__ = "neutron_l3"


def __virtual__():
    if not HAS_SDK:
        return (
            False,
            "neutron_l3: openstacksdk is missing (pip install 'saltext.hastack[openstack]')",
        )
    return __virtualname__


def _conn(cloud=None):
    cloud = cloud or sites.configured(__salt__, __opts__.get("id"), "openstack:cloud")
    return openstack_conn.connection(openstack_conn.cloud_setting(cloud), __context__)


def _l3_agents(conn):
    return _call("list L3 agents", lambda: list(conn.network.agents(agent_type="L3 agent")))


def _hosted(conn, agent):
    return _call(f"routers on {agent.host}", lambda: list(conn.network.agent_hosted_routers(agent)))


def _agent_routers(conn, method, agent, router):
    # Sent here, not through openstacksdk's add/remove_router_to/from_agent: those drop
    # Neutron's answer, so a refused move (409 RouterHostedByL3Agent) looked done.
    if method == "post":
        resp = conn.network.post(f"/agents/{agent.id}/l3-routers", json={"router_id": router.id})
    else:
        resp = conn.network.delete(f"/agents/{agent.id}/l3-routers/{router.id}")
    openstack.exceptions.raise_from_response(resp)


def agents(cloud=None):
    """
    The L3 agents: ``[{id, host, alive, admin_state_up, routers: [names]}]`` (``alive``
    is Neutron's view from the agent's heartbeats).

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    CLI Example:

    .. code-block:: bash

        salt '*' neutron_l3.agents
    """
    conn = _conn(cloud)
    out = []
    for agent in _l3_agents(conn):
        routers = _hosted(conn, agent)
        out.append(
            {
                "id": agent.id,
                "host": agent.host,
                "alive": agent.is_alive,
                "admin_state_up": agent.is_admin_state_up,
                "routers": sorted(r.name or r.id for r in routers),
            }
        )
    return sorted(out, key=lambda a: a["host"])


def routers(host=None, agent=None, cloud=None):
    """
    The routers an L3 agent (by ``host`` or agent ``id``) serves: ``[{id, name}]``.

    host
        The host the L3 agent runs on, e.g. ``alice``. Give ``host`` or ``agent``.

    agent
        The L3 agent's ID (as ``neutron_l3.agents`` shows it).

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    CLI Example:

    .. code-block:: bash

        salt '*' neutron_l3.routers host=alice
    """
    conn = _conn(cloud)
    agents = [a for a in _l3_agents(conn) if a.host == host or a.id == agent]
    found = _one(agents, f"L3 agent on '{host or agent}'", "host" if host else "agent")
    routers = _hosted(conn, found)
    return sorted(
        ({"id": r.id, "name": r.name} for r in routers), key=lambda r: (r["name"] or "", r["id"])
    )


def move_routers(
    from_host=None, to_host=None, cloud=None, test=False, routers=None, missing_ok=False
):
    """
    Move the routers off dead L3 agents (or off the agent on ``from_host``, dead or not)
    onto live ones: onto ``to_host``'s agent, else each onto the live agent serving the
    fewest routers. Moving a router re-serves every floating IP behind it at once: the
    fewest writes for a network node failure. The moves of different routers run side
    by side, and each is read back from its new agent: a router counts as moved only
    when that agent lists it. Returns ``{moved: {router: {from, to}}, floating_ips:
    [addresses behind the moved routers], failed: {router: why}}``; a router no live
    agent can take is under ``failed``, and the job fails when anything is.

    from_host
        Move the routers off the L3 agent on this host, alive or not. Default: off every
        L3 agent Neutron reports dead.

    to_host
        Move them all onto the live L3 agent on this host. Default: each onto the live,
        enabled (admin state up) agent that serves the fewest routers.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    test
        ``True``: move nothing; the result shows the planned moves and the floating IPs
        behind them. Default: ``False``.

    routers
        Only these routers (names or IDs); one of them that no agent hosts (a move cut
        short between its removal and its addition) is placed on a live agent too, so
        a repeated call finishes what an interrupted one left.

    missing_ok
        ``True``: ``from_host`` without an L3 agent moves nothing (a cluster node that
        is no network node); ``False`` (default): it is an error.

    CLI Example:

    .. code-block:: bash

        salt '*' neutron_l3.move_routers
        salt '*' neutron_l3.move_routers from_host=alice to_host=bob test=True
    """
    conn = _conn(cloud)
    agents = _l3_agents(conn)
    if from_host:
        sources = [a for a in agents if a.host == from_host]
        if not sources:
            if missing_ok:
                return {"moved": {}, "floating_ips": [], "failed": {}}
            raise SaltInvocationError(f"from_host: no L3 agent on '{from_host}'")
    else:
        sources = [a for a in agents if not a.is_alive]
    live = [a for a in agents if a.is_alive and a.is_admin_state_up and a not in sources]
    if to_host:
        live = [a for a in live if a.host == to_host]
        if not live:
            raise SaltInvocationError(f"to_host: no live L3 agent on '{to_host}'")
    # One listing per agent (live ones for their load, the sources for their routers),
    # side by side.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        listed = dict(
            zip(
                [a.id for a in live + sources], pool.map(lambda a: _hosted(conn, a), live + sources)
            )
        )
    hosted = {a.id: listed[a.id] for a in live}
    load = {agent_id: len(held) for agent_id, held in hosted.items()}
    wanted = set(routers or [])
    plan, seen = [], set()
    moved, failed = {}, {}

    def take(router, source):
        if not live:
            failed[router.name or router.id] = "no live L3 agent to take it"
            return
        target = min(live, key=lambda a: (load[a.id], a.host))
        load[target.id] += 1
        plan.append((router, source, target))

    seen_routers = []
    for source in sources:
        for router in listed[source.id]:
            seen.add(router.id)
            seen_routers.append(router)
            if not wanted or {router.id, router.name} & wanted:
                take(router, source)
    if wanted - {n for r in seen_routers for n in (r.id, r.name)}:
        # A wanted router not on the source: hosted elsewhere, or by no agent at all.
        seen.update(r.id for held in hosted.values() for r in held)
        listed = _call("list routers", lambda: list(conn.network.routers()))
        for router in listed:
            if {router.id, router.name} & wanted and router.id not in seen:
                take(router, None)

    def move(router, source, target):
        name = router.name or router.id
        if source is not None:
            _call(
                f"remove router {name} from {source.host}",
                _agent_routers,
                conn,
                "delete",
                source,
                router,
            )
        _call(f"add router {name} to {target.host}", _agent_routers, conn, "post", target, router)

    if plan and not test:
        # Routers are independent: their moves run side by side (one connection).
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(plan))) as pool:
            futures = {pool.submit(move, *item): item for item in plan}
        for future, (router, _, _) in futures.items():
            try:
                future.result()
            except CommandExecutionError as err:
                failed[router.name or router.id] = str(err)
        # Read back: a router counts as moved when its new agent lists it.
        on_target = {}
        for target in {t.id: t for _, _, t in plan}.values():
            on_target[target.id] = {r.id for r in _hosted(conn, target)}
        for router, _, target in plan:
            name = router.name or router.id
            if name not in failed and router.id not in on_target[target.id]:
                failed[name] = f"not on {target.host}'s L3 agent after the move"
    for router, source, target in plan:
        name = router.name or router.id
        if name not in failed:
            moved[name] = {"from": source.host if source else None, "to": target.host}
    # The floating IPs behind the moved routers: one filtered listing per router.
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        fips = [
            f.floating_ip_address
            for found in pool.map(
                lambda router: _call(
                    f"floating IPs of router {router.name or router.id}",
                    lambda: list(conn.network.ips(router_id=router.id)),
                ),
                [r for r, _, _ in plan if (r.name or r.id) in moved],
            )
            for f in found
        ]
    if failed and not test:
        __context__["retcode"] = 1
    return {"moved": moved, "floating_ips": sorted(fips), "failed": failed}

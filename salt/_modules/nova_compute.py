"""
Nova's side of a failover: compute services, the servers on a host, a compute
identity's takeover on a survivor, per-VM evacuation and the survivors' room.

This is the only hastack code that talks to Nova and placement, through openstacksdk
(the connection ``hastack:openstack:cloud`` names, as for Neutron). Every write is read
back: a server counts as back only when Nova shows it ACTIVE, with no task running
and a running guest, on a live host.

:depends: openstacksdk (``pip install 'saltext.hastack[openstack]'``)
"""

import datetime
import logging
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import compute as logic
from hastack_utils import sites

try:
    from hastack_utils import openstack as openstack_conn

    HAS_SDK = openstack_conn.HAS_SDK
except ImportError:  # pragma: no cover (the utils always import; openstacksdk may not)
    HAS_SDK = False

log = logging.getLogger(__name__)

__virtualname__ = "nova_compute"

# The microversions these calls need: forced_down by service id (2.53), evacuate
# without the old force/onSharedStorage fields (2.68), embedded flavor details (2.47).
SERVICE_MV = "2.53"
EVACUATE_MV = "2.68"
POLL = 0.5


def __virtual__():
    if not HAS_SDK:
        return (
            False,
            "nova_compute: openstacksdk is missing (pip install 'saltext.hastack[openstack]')",
        )
    return __virtualname__


def _conn(cloud=None):
    return openstack_conn.connection(
        openstack_conn.cloud_setting(
            cloud or sites.configured(__salt__, __opts__.get("id"), "openstack:cloud")
        ),
        __context__,
    )


def _call(what, fn, *args, **kwargs):
    return openstack_conn.call(what, fn, *args, service="Nova", **kwargs)


def _json(resp, what):
    if resp.status_code >= 400:
        try:
            body = resp.json()
            message = next(iter(body.values())).get("message", resp.text)
        except (ValueError, AttributeError, StopIteration):
            message = resp.text
        raise CommandExecutionError(f"{what}: Nova answered {resp.status_code}: {message}")
    return resp.json() if resp.content else {}


def _parse_time(text):
    if not text:
        return None
    stamp = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return stamp.timestamp()


# --------------------------------------------------------------------------- services


def _services(conn, host=None):
    query = "/os-services?binary=nova-compute" + (f"&host={host}" if host else "")
    got = _json(
        _call("list compute services", conn.compute.get, query, microversion=SERVICE_MV),
        "list compute services",
    )
    return [
        {
            "id": svc["id"],
            "host": svc["host"],
            "state": svc["state"],
            "status": svc["status"],
            "forced_down": svc.get("forced_down", False),
            "updated_at": svc.get("updated_at"),
            "disabled_reason": svc.get("disabled_reason"),
        }
        for svc in got.get("services", [])
    ]


def services(host=None, cloud=None):
    """
    The nova-compute services: ``[{id, host, state, status, forced_down, updated_at,
    disabled_reason}]``.

    host
        Only this host's (a compute identity's ``host=``).

    cloud
        A clouds.yaml entry name or openstacksdk connection arguments (default
        ``hastack:openstack:cloud``).

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.services
    """
    return _services(_conn(cloud), host)


def _one_service(conn, host):
    found = _services(conn, host)
    if not found:
        raise SaltInvocationError(f"host: Nova has no nova-compute service on '{host}'")
    return found[0]


def service_force_down(host, down=True, cloud=None):
    """
    Mark a host's nova-compute service forced down (Nova then allows evacuating its
    servers at once, without waiting for ``service_down_time``), or lift the mark.
    Nova refuses to lift it until the returning compute has started and cleaned up the
    evacuated instances; that refusal is an error here. Returns ``{host, forced_down:
    {old, new}}`` (empty when nothing changed).

    host
        The compute's host name.

    down
        ``True`` (default) to force it down, ``False`` to lift the mark.

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.service_force_down host1
    """
    conn = _conn(cloud)
    svc = _one_service(conn, host)
    if svc["forced_down"] == bool(down):
        return {"host": host}
    _json(
        _call(
            f"force {host} {'down' if down else 'up'}",
            conn.compute.put,
            f"/os-services/{svc['id']}",
            json={"forced_down": bool(down)},
            microversion=SERVICE_MV,
        ),
        f"force {host}'s nova-compute {'down' if down else 'up'}",
    )
    return {"host": host, "forced_down": {"old": svc["forced_down"], "new": bool(down)}}


# --------------------------------------------------------------------------- servers


def _server_view(server):
    flavor = server.flavor or {}
    fault = server.fault or {}
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "task_state": server.task_state,
        "power_state": server.power_state,
        "host": server.compute_host,
        "metadata": dict(server.metadata or {}),
        "flavor": {k: flavor.get(k) for k in ("vcpus", "ram", "disk")},
        "fault": fault.get("message") if isinstance(fault, dict) else None,
    }


def _servers(conn, host):
    return [
        _server_view(s)
        for s in _call(
            f"list the servers on {host}",
            lambda: list(conn.compute.servers(details=True, all_projects=True, compute_host=host)),
        )
    ]


def _server(conn, server_id):
    return _server_view(_call(f"read server {server_id}", conn.compute.get_server, server_id))


def servers(host, metadata_key=None, cloud=None):
    """
    The servers Nova places on ``host``, of every project: ``[{id, name, status,
    task_state, power_state, host, metadata, flavor: {vcpus, ram, disk}, fault}]``.

    host
        The compute's host name (an identity's ``host=``).

    metadata_key
        Only the servers whose metadata sets this key true (e.g. ``HA_Enabled``).

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.servers host1 metadata_key=HA_Enabled
    """
    found = _servers(_conn(cloud), host)
    return logic.protected(found, metadata_key)[0]


def _why_not(server, deadline):
    """Why ``server`` is not back and never will be (ERROR, or its time is up), or None
    while it may still come."""
    if server["status"] == "ERROR":
        return server["fault"] or "Nova set the server to ERROR"
    if time.monotonic() >= deadline:
        return (
            f"not back in time: status {server['status']}, task {server['task_state']}, "
            f"power state {server['power_state']}, host {server['host']}"
        )
    return None


def _drive(conn, ids, start, back, concurrency, timeout):
    """Start ``start(id)`` (an evacuation, a reboot) for each server in order, at most
    ``concurrency`` in flight, and read them all back with one listing a round (the
    servers changed since this began), not one request per server: on a busy Nova the
    read-backs would otherwise compete with the work. Returns ``({id: server view},
    {id: why not})``."""
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    changes_since = since.strftime("%Y-%m-%dT%H:%M:%SZ")
    pending, in_flight = list(ids), {}
    done, failed = {}, {}
    while pending or in_flight:
        while pending and len(in_flight) < max(1, int(concurrency)):
            server_id = pending.pop(0)
            why = start(server_id)
            if why:
                failed[server_id] = why
            else:
                in_flight[server_id] = time.monotonic() + float(timeout)
        if not in_flight:
            continue
        time.sleep(POLL)
        seen = {
            server.id: _server_view(server)
            for server in _call(
                "read back the servers",
                lambda: list(
                    conn.compute.servers(
                        details=True, all_projects=True, changes_since=changes_since
                    )
                ),
            )
        }
        for server_id, deadline in list(in_flight.items()):
            server = seen.get(server_id) or _server(conn, server_id)
            if back(server):
                done[server_id] = server
            else:
                why = _why_not(server, deadline)
                if why is None:
                    continue
                failed[server_id] = why
            del in_flight[server_id]
    return done, failed


# --------------------------------------------------------------------------- capacity


def capacity(exclude=None, cloud=None):
    """
    The free room of every live compute, from placement: ``{host: {VCPU, MEMORY_MB,
    DISK_GB: {free, max_unit}}}``, free being ``(total - reserved) * allocation_ratio -
    used``. Hosts whose service is down, disabled or forced down are left out, and so
    are those in ``exclude``.

    exclude
        Host names to leave out (the failed node's identities).

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.capacity exclude='[host1]'
    """
    conn = _conn(cloud)
    live = {
        s["host"]
        for s in _services(conn)
        if s["state"] == "up" and s["status"] == "enabled" and not s["forced_down"]
    } - set(exclude or [])
    # From 2.53 a hypervisor's id is its compute node's uuid, which is its resource
    # provider's: one host may have several (ironic), each counted.
    hypervisors = _json(
        _call(
            "list hypervisors", conn.compute.get, "/os-hypervisors/detail", microversion=SERVICE_MV
        ),
        "list hypervisors",
    ).get("hypervisors", [])
    out = {}
    for hyp in hypervisors:
        host = (hyp.get("service") or {}).get("host")
        if host not in live:
            continue
        rp = hyp["id"]
        inventories = _json(
            _call(
                f"read {host}'s inventory",
                conn.placement.get,
                f"/resource_providers/{rp}/inventories",
            ),
            f"read {host}'s inventory",
        ).get("inventories", {})
        usages = _json(
            _call(f"read {host}'s usage", conn.placement.get, f"/resource_providers/{rp}/usages"),
            f"read {host}'s usage",
        ).get("usages", {})
        room = out.setdefault(host, {})
        for rc in logic.RESOURCES:
            inv = inventories.get(rc)
            if not inv:
                continue
            total = int((inv["total"] - inv.get("reserved", 0)) * inv.get("allocation_ratio", 1.0))
            held = room.get(rc, {"free": 0, "max_unit": 0})
            room[rc] = {
                "free": held["free"] + total - int(usages.get(rc, 0)),
                "max_unit": max(held["max_unit"], int(inv.get("max_unit", total))),
            }
    return out


def plan(host, metadata_key=None, priority_key=None, exclude=None, target=None, cloud=None):
    """
    What evacuating ``host`` would do, changing nothing: the protected servers in
    priority order, which fit on the survivors (placement's free room, estimated as
    Nova's default weighers spread them) and, when some do not, the shortfall by name
    and number. Returns ``{servers, left_alone, fits: {id: estimated host}, unplaced,
    shortfall, room}``.

    host
        The failed compute's host name.

    metadata_key
        Protect only the servers whose metadata sets this key true; default: all.

    priority_key
        Metadata key holding a whole number: higher goes first (default: by name).

    exclude
        Further hosts whose room does not count (the failed node's other identities).

    target
        A reserved host: only its room counts. Refused (SaltInvocationError) when it is
        not a live, enabled compute other than ``host``.

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.plan host1 metadata_key=HA_Enabled priority_key=ha_priority
        salt '*' nova_compute.plan host1 target=spare1
    """
    conn = _conn(cloud)
    on_host = _servers(conn, host)
    keep, alone = logic.protected(on_host, metadata_key)
    keep = logic.ordered(keep, priority_key)
    room = capacity(exclude=[host, *(exclude or [])], cloud=cloud)
    if target is not None:
        if target not in room:
            raise SaltInvocationError(
                f"target: '{target}' is not a live, enabled compute with room (live: "
                f"{', '.join(sorted(room)) or 'none'})"
            )
        room = {target: room[target]}
    placed, unplaced, left = logic.plan_fit(keep, room)
    return {
        "servers": [{"id": s["id"], "name": s["name"], "flavor": s["flavor"]} for s in keep],
        "left_alone": [s["name"] for s in alone],
        "fits": placed,
        "unplaced": unplaced,
        "shortfall": logic.shortfall(keep, unplaced, left) if unplaced else None,
        "room": room,
    }


# --------------------------------------------------------------------------- evacuation


def evacuate(
    host,
    metadata_key=None,
    priority_key=None,
    target=None,
    concurrency=4,
    timeout=300,
    exclude=None,
    cloud=None,
):
    """
    Evacuate a dead compute's servers: force its service down, plan what fits on the
    survivors (``plan``), then evacuate the servers that fit, in priority order, with at
    most ``concurrency`` at once, each read back until it is ACTIVE with a running
    guest on another live host. A server that does not come back is named with Nova's
    fault, and the others still complete; what does not fit is not started, and is
    reported with the shortfall. Servers already back on another host count as done
    (a resumed run redoes nothing). Only call this once the node is fenced: its old
    guests must not write to their disks any more.

    Returns ``{evacuated: {id: {name, to}}, failed: {id: {name, fault}}, unplaced:
    [name], shortfall, left_alone: [name], forced_down, took}``.

    host
        The dead compute's host name.

    metadata_key, priority_key
        As for ``plan``.

    target
        A reserved host to evacuate to, instead of Nova's scheduler (only its room
        counts in the plan).

    concurrency
        Evacuations in flight at once (default 4).

    timeout
        Seconds each server may take to come back (default 300).

    exclude
        As for ``plan``.

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.evacuate host1 metadata_key=HA_Enabled concurrency=8
    """
    started = time.monotonic()
    conn = _conn(cloud)
    # Planned first: a bad target is refused before the service is forced down.
    planned = plan(host, metadata_key, priority_key, exclude=exclude, target=target, cloud=cloud)
    forced = service_force_down(host, True, cloud=cloud)
    names = {s["id"]: s["name"] for s in planned["servers"]}
    to_move = [s["id"] for s in planned["servers"] if s["id"] in planned["fits"]]

    def start(server_id):
        resp = _call(
            f"evacuate {names[server_id]}",
            conn.compute.post,
            f"/servers/{server_id}/action",
            json={"evacuate": {"host": target} if target else {}},
            microversion=EVACUATE_MV,
        )
        if resp.status_code >= 400:
            try:
                _json(resp, f"evacuate {names[server_id]}")
            except CommandExecutionError as err:
                return str(err)
        return None

    done, failed = _drive(
        conn,
        to_move,
        start,
        lambda server: logic.settled(server, source=host, target=target),
        concurrency,
        timeout,
    )
    out = {
        "evacuated": {
            sid: {"name": names[sid], "to": server["host"]} for sid, server in done.items()
        },
        "failed": {sid: {"name": names[sid], "fault": why} for sid, why in failed.items()},
        "forced_down": bool(forced.get("forced_down")),
    }
    out["unplaced"] = [names[s] for s in planned["unplaced"]]
    out["shortfall"] = planned["shortfall"]
    out["left_alone"] = planned["left_alone"]
    out["took"] = round(time.monotonic() - started, 3)
    if out["failed"]:
        log.warning(
            "hastack: evacuating %s: %s did not come back",
            host,
            ", ".join(f"{v['name']} ({v['fault']})" for v in out["failed"].values()),
        )
    return out


def _reported_since(conn, host, since, seen):
    """``host``'s service and whether its compute serves: it reported twice after
    ``since`` (a UNIX time), noted in ``seen`` across calls. The first report is written
    at start, before the compute's RPC server listens."""
    svc = _one_service(conn, host)
    stamp = _parse_time(svc["updated_at"])
    if stamp is not None and stamp > float(since):
        seen.add(svc["updated_at"])
    return svc, len(seen) >= 2


def takeover(host, since, timeout=120, concurrency=4, cloud=None):
    """
    After a compute identity moved to a survivor (mode identity): wait until its
    nova-compute serves again (its service reported twice since ``since``), then make
    sure every server of ``host`` runs there. A server whose guest did not come back
    (``resume_guests_state_on_host_boot`` is best effort, and a no-op on some drivers)
    is hard-rebooted, which makes the driver create it, and read back. Returns
    ``{back: [name], rebooted: [name], failed: {name: reason}, service_up_after, took}``.

    host
        The identity (nova's ``host=``).

    since
        A UNIX time after the old process died (the fence): reports before it are the
        old process's.

    timeout
        Seconds for the identity's service to come back, and then for each reboot
        (default 120).

    concurrency
        Reboots in flight at once (default 4).

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.takeover host1 since=1733470000
    """
    started = time.monotonic()
    conn = _conn(cloud)
    deadline = started + float(timeout)
    reports = set()
    while True:
        svc, serving = _reported_since(conn, host, since, reports)
        if serving and svc["state"] == "up":
            break
        if time.monotonic() >= deadline:
            raise CommandExecutionError(
                f"the nova-compute of identity '{host}' did not report within {timeout} s "
                "of the takeover (is it running on a survivor? see crm_mon)"
            )
        time.sleep(POLL)
    up_after = round(time.monotonic() - started, 3)
    back, to_reboot = [], []
    for server in _servers(conn, host):
        if logic.settled(server):
            back.append(server["name"])
        elif server["status"] in ("ACTIVE", "SHUTOFF", "ERROR") and server["task_state"] is None:
            to_reboot.append(server)
    # A stopped server stays stopped: only those meant to run are rebooted.
    to_reboot = [s for s in to_reboot if s["status"] != "SHUTOFF"]

    names = {server["id"]: server["name"] for server in to_reboot}

    def start(server_id):
        try:
            _call(f"hard-reboot {names[server_id]}", conn.compute.reboot_server, server_id, "HARD")
        except CommandExecutionError as err:
            return str(err)
        return None

    done, failed = _drive(conn, list(names), start, logic.settled, concurrency, timeout)
    out = {
        "back": back,
        "rebooted": sorted(names[sid] for sid in done),
        "failed": {names[sid]: why for sid, why in failed.items()},
    }
    out.update(service_up_after=up_after, took=round(time.monotonic() - started, 3))
    return out


def _pending_evacuations(conn, host):
    """Evacuations off ``host`` its compute has not cleaned up yet ("done" until the
    returning compute destroys its old guests and marks them "completed")."""
    got = _json(
        _call(
            f"list {host}'s evacuations",
            conn.compute.get,
            f"/os-migrations?migration_type=evacuation&source_compute={host}",
            microversion="2.59",
        ),
        f"list {host}'s evacuations",
    ).get("migrations", [])
    return [m for m in got if m.get("status") in ("accepted", "pre-migrating", "done")]


def service_restore(host, since, timeout=120, cloud=None):
    """
    A node is back: once its nova-compute serves again (reported twice since
    ``since``) and has cleaned up every server evacuated off it (it destroys its old
    guests at start, so that no VM runs twice), lift the forced-down mark so Nova
    schedules to it again. Returns ``{host, forced_down: {old, new}, took}``.

    host
        The compute's host name.

    since
        A UNIX time before the compute was started again.

    timeout
        Seconds to wait for the compute and its clean-up (default 120).

    cloud
        As for ``services``.

    CLI Example:

    .. code-block:: bash

        salt '*' nova_compute.service_restore host1 since=1733470000
    """
    started = time.monotonic()
    conn = _conn(cloud)
    deadline = started + float(timeout)
    reports, pending = set(), None
    while True:
        _, serving = _reported_since(conn, host, since, reports)
        if serving:
            pending = _pending_evacuations(conn, host)
            if not pending:
                break
        if time.monotonic() >= deadline:
            what = (
                f"evacuated servers not cleaned up: {', '.join(m['instance_uuid'] for m in pending)}"
                if pending
                else "its nova-compute did not report"
            )
            raise CommandExecutionError(
                f"{host} is not enabled again after {timeout} s: {what}; it stays forced down"
            )
        time.sleep(POLL)
    lifted = service_force_down(host, False, cloud=cloud)
    return {
        "host": host,
        "forced_down": lifted.get("forced_down", {}),
        "took": round(time.monotonic() - started, 3),
    }

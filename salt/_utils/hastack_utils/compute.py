"""
Which VMs a failover brings back, in what order, and whether the survivors have room:
pure decisions over what ``nova_compute`` read from Nova and placement, unit tested
without Salt's loader.
"""

RUNNING = 1  # Nova's power_state of a running guest
RESOURCES = ("VCPU", "MEMORY_MB", "DISK_GB")
# A server's needs as its flavor gives them, by placement's resource class.
FLAVOR_FIELDS = {"VCPU": "vcpus", "MEMORY_MB": "ram", "DISK_GB": "disk"}
TRUE = ("true", "yes", "1", "on")


def protected(servers, metadata_key=None):
    """The servers a failover brings back: all, or with ``metadata_key`` those whose
    metadata holds it set to a true value (Masakari's ``HA_Enabled=True`` convention).
    Returns ``(protected, left alone)``."""
    if not metadata_key:
        return list(servers), []
    keep, left = [], []
    for server in servers:
        value = str((server.get("metadata") or {}).get(metadata_key, "")).strip().lower()
        (keep if value in TRUE else left).append(server)
    return keep, left


def ordered(servers, priority_key=None):
    """Highest priority first (``metadata[priority_key]``, a whole number, default 0),
    then by name and id, so that a plan and a re-run agree."""

    def priority(server):
        try:
            return int(str((server.get("metadata") or {}).get(priority_key, 0)))
        except ValueError:
            return 0

    return sorted(
        servers,
        key=lambda s: (-priority(s) if priority_key else 0, s.get("name") or "", s["id"]),
    )


def needs(server):
    """``{resource class: amount}`` of a server, from its flavor."""
    flavor = server.get("flavor") or {}
    return {rc: int(flavor.get(field) or 0) for rc, field in FLAVOR_FIELDS.items()}


def plan_fit(servers, free):
    """Place ``servers`` (in their order) on hosts with ``free`` room (``{host: {rc:
    {free, max_unit}}}``), each on the host with the most free memory that fits all its
    needs, as Nova's default weighers spread them. Returns ``(placed {id: host},
    unplaced [id], left {host: {rc: free}})``: the estimate the scheduler then makes
    real; what does not fit here is not started."""
    left = {host: {rc: dict(inv) for rc, inv in room.items()} for host, room in free.items()}
    placed, unplaced = {}, []
    for server in servers:
        want = needs(server)
        fits = [
            host
            for host, room in left.items()
            if all(
                amount == 0
                or (
                    rc in room
                    and room[rc]["free"] >= amount
                    and amount <= room[rc].get("max_unit", amount)
                )
                for rc, amount in want.items()
            )
        ]
        if not fits:
            unplaced.append(server["id"])
            continue
        host = max(fits, key=lambda h: (left[h].get("MEMORY_MB", {}).get("free", 0), h))
        for rc, amount in want.items():
            if amount:
                left[host][rc]["free"] -= amount
        placed[server["id"]] = host
    return (
        placed,
        unplaced,
        {h: {rc: inv["free"] for rc, inv in r.items()} for h, r in left.items()},
    )


def shortfall(servers, unplaced, left):
    """What the survivors lack for the ``unplaced`` servers, in words and numbers
    (``left``: the room ``plan_fit`` left after the others): ``{summary, needed: {rc:
    n}, free: {rc: n}, servers: [names]}``."""
    missing = [s for s in servers if s["id"] in unplaced]
    needed = {rc: sum(needs(s)[rc] for s in missing) for rc in RESOURCES}
    total = {rc: sum(room.get(rc, 0) for room in left.values()) for rc in RESOURCES}
    names = [s.get("name") or s["id"] for s in missing]
    summary = (
        f"{len(missing)} of {len(servers)} protected VMs do not fit on the survivors "
        f"({', '.join(names)}): they need "
        + ", ".join(f"{rc} {needed[rc]}" for rc in RESOURCES)
        + "; free after the others: "
        + ", ".join(f"{rc} {total[rc]}" for rc in RESOURCES)
    )
    return {"summary": summary, "needed": needed, "free": total, "servers": names}


def settled(server, source=None, target=None):
    """Whether an evacuated (or rebooted) server is back: ACTIVE, no task running, a
    running guest, off ``source`` (and on ``target`` when one was asked for)."""
    return (
        server.get("status") == "ACTIVE"
        and server.get("task_state") is None
        and server.get("power_state") == RUNNING
        and (source is None or server.get("host") != source)
        and (target is None or server.get("host") == target)
    )

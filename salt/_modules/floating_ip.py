"""
Floating IPs and L3 routers by name, through openstacksdk.

The recipe's UUID chase (``net-list`` -> ``floatingip-create`` -> ``port-list`` ->
``floatingip-associate FIP_ID PORT_ID``) becomes one call::

    salt-call floating_ip.associate server=web1 network=ext_net

A target is named by server (through Nova), port name, or fixed IP; the address is an
existing floating address, or a new one from a network named by argument or by
``hastack:openstack:external_network``. Every write to an existing floating IP carries
Neutron's ``If-Match: revision_number=N`` precondition, so a change someone made since
it was read is detected (HTTP 412) and never overwritten. Connection errors and 5xx
answers are retried with bounded backoff; work on many floating IPs runs with bounded
concurrency.

Connection: ``cloud`` (argument) or ``hastack:openstack:cloud`` (pillar or config): the
name of a ``clouds.yaml`` entry, or a dict of openstacksdk connection arguments (e.g.
``{auth_type: none, network_endpoint_override: http://127.0.0.1:9696/}``). One
connection per run and cloud is kept (in ``__context__``).

:depends: openstacksdk
"""

import concurrent.futures
import contextvars
import ipaddress
import json
import logging
import math
import os
import re
import threading
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import openstack as openstack_conn
from hastack_utils import sites
from hastack_utils.openstack import HAS_SDK
from hastack_utils.openstack import call as _call
from hastack_utils.openstack import one as _one

if HAS_SDK:
    import openstack.exceptions

log = logging.getLogger(__name__)

__virtualname__ = "floating_ip"
CONCURRENCY = 8
# Seconds a changed association is left before it is read back: twice the write's own
# time, within these bounds (two accepted concurrent writes commit within about one
# request of each other; see _update).
SETTLE = 0.3
SETTLE_MAX = 3.0
# A reissue's deadline follows the work: REISSUE_BASE seconds plus 1.5 times the writes
# at the cost a write had in this minion's earlier reissues, else WRITE_COST (one API
# worker of the lab's neutron-server: about 0.35 s of CPU a write, 0.9 s each at
# concurrency 8). Finding the addresses takes at most LIST_DEADLINE; what is unanswered
# at the end is read back within the last READBACK_MAX seconds at most.
REISSUE_BASE = 10
WRITE_COST = 1.0
LIST_DEADLINE = 20
READBACK_MAX = 3.0


def __virtual__():
    if not HAS_SDK:
        return (
            False,
            "floating_ip: openstacksdk is missing (pip install 'saltext.hastack[openstack]')",
        )
    return __virtualname__


def _conn(cloud=None):
    return openstack_conn.connection(_cloud(cloud), __context__)


def _cloud(cloud):
    return openstack_conn.cloud_setting(
        cloud or sites.configured(__salt__, __opts__.get("id"), "openstack:cloud")
    )


def _by_name_or_id(listing, name, kind):
    """The one ``kind`` (network, router) named ``name``, else with that ID."""
    found = _call(f"look up {kind} {name}", lambda: list(listing(name=name)))
    found = found or [r for r in _call(f"list {kind}s", lambda: list(listing())) if r.id == name]
    return _one(found, f"{kind} named '{name}'", kind)


def _fips(conn, what, deadline=None, **query):
    """Floating IPs matching ``query`` (e.g. ``port_id=``, ``floating_ip_address=``)."""
    return _call(what, lambda: list(conn.network.ips(**query)), deadline=deadline)


def _port_busy(target, held, why=""):
    return SaltInvocationError(
        f"the port {target.name or target.id} already has floating IP "
        f"{held[0].floating_ip_address}{why}"
    )


def _network(conn, name):
    net = _by_name_or_id(conn.network.networks, name, "network")
    if not net.is_router_external:
        raise SaltInvocationError(
            f"network: '{name}' is not an external network (router:external "
            "is false): floating IPs come from external networks"
        )
    return net


def _check_in_subnets(conn, net, name, address):
    """An address Neutron is to allocate must lie in one of the network's subnets: say
    so now (also under test) rather than when Neutron refuses the write."""
    subnets = _call(f"subnets of {name}", lambda: list(conn.network.subnets(network_id=net.id)))
    cidrs = [s.cidr for s in subnets]
    try:
        wanted = ipaddress.ip_address(address)
    except ValueError as err:
        raise SaltInvocationError(f"address: {address!r} is not an IP address") from err
    if not any(wanted in ipaddress.ip_network(cidr, strict=False) for cidr in cidrs):
        raise SaltInvocationError(
            f"address: {address} is outside the subnets of '{name}' ({', '.join(cidrs) or 'none'})"
        )


def _server_ports(conn, name):
    """The ports of the server named ``name`` (through Nova)."""
    try:
        compute = conn.compute
        servers = _call(
            f"look up server {name}",
            lambda: [
                s
                for s in compute.servers(name=f"^{re.escape(name)}$", all_projects=True)
                if s.name == name
            ],
        )
    except openstack.exceptions.EndpointNotFound as err:
        raise SaltInvocationError(
            f"server: the cloud has no compute (Nova) endpoint to find '{name}'; name the port "
            "(port=) or the fixed IP (fixed_ip=)"
        ) from err
    server = _one(servers, f"server named '{name}'", "server")
    ports = _call(f"ports of server {name}", lambda: list(conn.network.ports(device_id=server.id)))
    if not ports:
        raise SaltInvocationError(f"server: '{name}' ({server.id}) has no port")
    return ports


def _target_port(conn, server=None, port=None, fixed_ip=None):
    given = [(k, v) for k, v in (("server", server), ("port", port), ("fixed_ip", fixed_ip)) if v]
    if len(given) != 1:
        raise SaltInvocationError("name exactly one target: server=, port= or fixed_ip=")
    if port:
        found = _call(f"look up port {port}", lambda: list(conn.network.ports(name=port)))
        return _one(found, f"port named '{port}'", "port")
    if fixed_ip:
        found = _call(
            f"look up fixed IP {fixed_ip}",
            lambda: list(conn.network.ports(fixed_ips=[f"ip_address={fixed_ip}"])),
        )
        return _one(found, f"port with fixed IP {fixed_ip}", "fixed_ip")
    return _one(
        _server_ports(conn, server), f"port of server '{server}' (name the port instead)", "server"
    )


def _target_of(conn, spec):
    """The port of a target given as ``{server|port|fixed_ip: ...}`` (a pillar standby)."""
    return _target_port(conn, spec.get("server"), spec.get("port"), spec.get("fixed_ip"))


def _fip_by_address(conn, address):
    found = _fips(conn, f"look up floating IP {address}", floating_ip_address=address)
    return _one(found, f"floating IP {address}", "address")


def _data(fip, ports=None):
    port = (ports or {}).get(fip.port_id)
    return {
        "id": fip.id,
        "address": fip.floating_ip_address,
        "network_id": fip.floating_network_id,
        "port_id": fip.port_id,
        "port_name": port.name if port is not None else None,
        "server_id": port.device_id if port is not None else None,
        "host": port.binding_host_id if port is not None else None,
        "fixed_ip": fip.fixed_ip_address,
        "router_id": fip.router_id,
        "status": fip.status,
        "revision": fip.revision_number,
    }


# --------------------------------------------------------------------------- reading


def list_ips(server=None, host=None, router=None, network=None, cloud=None):
    """
    Floating IPs as plain data (``address``, ``port_id``, ``port_name``, ``server_id``,
    ``host``, ``fixed_ip``, ``router_id``, ``status``, ``revision``): all, or those of
    one server (by name), of the ports bound to one host, behind one router (name or
    ID), or from one network (name or ID). Filters given together must all match; the
    list is sorted by address.

    server
        Only the floating IPs on the ports of the server with exactly this name (looked
        up through Nova, in all projects). Default: any server.

    host
        Only the floating IPs whose port is bound to this host (the port's
        ``binding:host_id``, e.g. a compute node's hostname). Default: any host.

    router
        Only the floating IPs behind this router (name or ID). Default: any router.

    network
        Only the floating IPs from this network (name or ID; it must be an external
        network). Default: any network.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.list_ips host=alice
    """
    conn = _conn(cloud)
    fips, ports = _selected(conn, server, host, router, network)
    return sorted((_data(f, ports) for f in fips), key=lambda f: f["address"])


def _selected(conn, server=None, host=None, router=None, network=None, deadline=None):
    """The floating IPs the filters select, and every port by ID."""
    query = {}
    if network:
        query["floating_network_id"] = _network(conn, network).id
    if router:
        query["router_id"] = _by_name_or_id(conn.network.routers, router, "router").id
    fips = _fips(conn, "list floating IPs", deadline=deadline, **query)
    ports = {
        p.id: p for p in _call("list ports", lambda: list(conn.network.ports()), deadline=deadline)
    }
    if server:
        wanted = {p.id for p in _server_ports(conn, server)}
        fips = [f for f in fips if f.port_id in wanted]
    if host:
        fips = [f for f in fips if f.port_id in ports and ports[f.port_id].binding_host_id == host]
    return fips, ports


# --------------------------------------------------------------------------- writing


def _put_association(conn, fip, port_id):
    # Sent as is: openstacksdk's update_ip drops a port_id equal to the one it holds,
    # and a reissue is exactly that PUT.
    resp = conn.network.put(
        f"/floatingips/{fip.id}",
        json={"floatingip": {"port_id": port_id}},
        headers={"If-Match": f"revision_number={fip.revision_number}"},
    )
    openstack.exceptions.raise_from_response(resp)
    return resp.json()["floatingip"]


def _update(conn, fip, port_id, what, deadline=None, verify=False, on_send=None):
    """PUT the association guarded by the revision this decision was made on.

    Neutron checks ``If-Match`` before it takes the row, so two writers that read the
    same revision can both be accepted, the later silently replacing the earlier. With
    ``verify`` the write is read back once a concurrent writer's accepted write has had
    time to land (``SETTLE``): if the address is no longer where this write put it, the
    call reports the conflict instead of a move that did not hold."""
    address = fip.floating_ip_address
    started = time.monotonic()
    sent = []

    def put():
        sent.append(time.monotonic())
        if on_send is not None:
            on_send()
        return _put_association(conn, fip, port_id)

    try:
        written = _call(what, put, deadline=deadline)
    except openstack.exceptions.PreconditionFailedException as err:
        if len(sent) > 1:
            # A retry: an earlier try may have landed after all (Neutron stalled, the
            # request timed out here, the server applied it later), and its new revision
            # is what refused the retry. The address where this call wants it is that write.
            now = _call(f"read back {address}", conn.network.get_ip, fip.id, deadline=deadline)
            if now.port_id == port_id and now.revision_number > fip.revision_number:
                log.info(
                    "hastack: %s: an earlier try landed (revision %s)", what, now.revision_number
                )
                return now.to_dict()
        raise CommandExecutionError(
            f"floating IP {address} changed since it was read (revision "
            f"{fip.revision_number}); nothing was overwritten: read it again ({what})"
        ) from err
    if verify:
        conflicts = _read_back(conn, [_write_of(fip, port_id, written, started)])
        if conflicts:
            raise CommandExecutionError(f"{conflicts[fip.id]} ({what})")
    return written


def _write_of(fip, port_id, answer, started):
    """A guarded write to read back (plain data: a failover hands it from one job to
    the next): what was written and when it can be read back (``until``, epoch
    seconds), since a concurrent accepted write commits within about one request of
    this one."""
    took = time.monotonic() - started
    return {
        "id": fip.id,
        "address": fip.floating_ip_address,
        "port_id": port_id,
        "revision": answer.get("revision_number"),
        "until": time.time() + min(SETTLE_MAX, max(SETTLE, 2 * took)),
    }


def _read_back(conn, writes):
    """Read written associations back (``writes``: ``_write_of`` each) once the last
    one's guard has passed. One listing for all of them. Returns ``{fip id: why}`` for
    each that is no longer where its write put it."""
    time.sleep(max(0.0, max(w["until"] for w in writes) - time.time()))
    resp = _call(
        "read back the floating IPs",
        lambda: conn.network.get("/floatingips", params={"id": sorted(w["id"] for w in writes)}),
    )
    openstack.exceptions.raise_from_response(resp)
    now = {f["id"]: f for f in resp.json()["floatingips"]}
    conflicts = {}
    for write in writes:
        held = now.get(write["id"]) or {}
        if held.get("port_id") != write["port_id"]:
            conflicts[write["id"]] = (
                f"floating IP {write['address']} changed since it was read: a "
                f"concurrent writer put it on port {held.get('port_id')} (revision "
                f"{held.get('revision_number')}) right after this write (revision "
                f"{write['revision']}) and Neutron accepted both; it is there now, "
                "nothing more was changed"
            )
    return conflicts


def _held_by_standby(conn, standby, address, network):
    """The standby's floating IP that stands for this association (after a ``move``)."""
    if not standby:
        return None
    target = _target_of(conn, standby)
    net_id = _network(conn, network).id if network and not address else None
    for fip in _fips(conn, "floating IPs of the standby", port_id=target.id):
        if fip.floating_ip_address == address or (net_id and fip.floating_network_id == net_id):
            return {
                "changed": False,
                "address": fip.floating_ip_address,
                "port_id": target.id,
                "old_port_id": target.id,
                "standby": True,
            }
    return None


def associate(
    server=None,
    port=None,
    fixed_ip=None,
    address=None,
    network=None,
    cloud=None,
    standby=None,
    test=False,
):
    """
    Give a server (by name), a port (by name) or a fixed IP a floating IP: ``address``
    (an unassociated floating address, allocated from the network first if it is not
    yet), else a new one from ``network`` (else ``hastack:openstack:external_network``).
    With ``standby`` (``{server: ...}``, ``{port: ...}`` or ``{fixed_ip: ...}``), a
    floating IP that ``move`` put on the standby counts as this association: nothing
    is taken back or allocated anew (``standby: True`` in the result). Idempotent: when
    the port already has that address (or, without ``address``, any floating IP from the
    network) nothing changes.
    Returns ``{changed, address, port_id, old_port_id}`` (``address`` is None when a new
    one would be allocated under ``test``).

    server
        The name of the server (looked up through Nova) whose port gets the floating IP;
        it must have exactly one port, else name the port. Give exactly one of
        ``server``, ``port`` and ``fixed_ip``.

    port
        The name of the Neutron port that gets the floating IP.

    fixed_ip
        A fixed IP address of the port that gets the floating IP, e.g. ``10.5.5.12``.

    address
        The floating address to give, e.g. ``192.168.144.77``. Allocated already, it must
        not be associated with another port (``floating_ip.move`` takes it from there);
        not allocated yet, it is allocated from ``network``. Default: one from ``network``.

    network
        The external network (name or ID) new floating IPs come from; default:
        ``hastack:openstack:external_network`` (pillar or config). Without ``address``,
        a floating IP the port already has from this network is kept.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    standby
        Where ``floating_ip.move`` sends the address on failure: ``{server: ...}``,
        ``{port: ...}`` or ``{fixed_ip: ...}``. While the port has no floating IP and the
        standby holds it, nothing changes. Default: no standby.

    test
        ``True``: change nothing, return what would be done. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.associate server=web1 network=ext_net
        salt '*' floating_ip.associate port=web1-port address=192.168.144.77
    """
    conn = _conn(cloud)
    target = _target_port(conn, server, port, fixed_ip)
    held = _fips(conn, "floating IPs of the port", port_id=target.id)
    network = network or sites.configured(
        __salt__, __opts__.get("id"), "openstack:external_network"
    )
    if not held:
        # Failed over to its standby (floating_ip.move): that is this association, held there.
        on_standby = _held_by_standby(conn, standby, address, network)
        if on_standby:
            return on_standby
    if address:
        found = _fips(conn, f"look up floating IP {address}", floating_ip_address=address)
        if not found:
            # Not allocated yet: take exactly this address from the network.
            if held:
                raise _port_busy(target, held, "; disassociate it first")
            if not network:
                raise SaltInvocationError(
                    f"address: {address} is not allocated; name the network to take it from "
                    "(network=, or pillar hastack:openstack:external_network)"
                )
            net = _network(conn, network)
            _check_in_subnets(conn, net, network, address)
            if not test:
                _call(
                    f"allocate {address} on {network}",
                    conn.network.create_ip,
                    floating_network_id=net.id,
                    floating_ip_address=address,
                    port_id=target.id,
                )
            return {"changed": True, "address": address, "port_id": target.id, "old_port_id": None}
        fip = _one(found, f"floating IP {address}", "address")
        if fip.port_id == target.id:
            return {
                "changed": False,
                "address": address,
                "port_id": target.id,
                "old_port_id": target.id,
            }
        if held:
            raise _port_busy(target, held, "; disassociate it first")
        if fip.port_id:
            raise SaltInvocationError(
                f"address: {address} is associated with port {fip.port_id}; use floating_ip.move "
                "to take it from there"
            )
        if not test:
            _update(conn, fip, target.id, f"associate {address}", verify=True)
        return {"changed": True, "address": address, "port_id": target.id, "old_port_id": None}

    if not network:
        raise SaltInvocationError(
            "network: name the external network (network=, or pillar "
            "hastack:openstack:external_network), or give address="
        )
    net = _network(conn, network)
    for fip in held:
        if fip.floating_network_id == net.id:
            return {
                "changed": False,
                "address": fip.floating_ip_address,
                "port_id": target.id,
                "old_port_id": target.id,
            }
    if held:
        raise _port_busy(target, held, " from another network")
    if test:
        return {"changed": True, "address": None, "port_id": target.id, "old_port_id": None}
    try:
        fip = _call(
            f"allocate a floating IP on {network}",
            conn.network.create_ip,
            floating_network_id=net.id,
            port_id=target.id,
        )
    except CommandExecutionError as err:
        if "No more IP addresses" in str(err):
            raise CommandExecutionError(
                f"network: no free floating address left on '{network}'"
            ) from err
        if isinstance(err.__cause__, openstack.exceptions.ConflictException):
            # Another minion applying the same declaration got there first (Neutron
            # refused a second floating IP for the port and allocated nothing): done.
            for fip in _fips(conn, "floating IPs of the port", port_id=target.id):
                if fip.floating_network_id == net.id:
                    return {
                        "changed": False,
                        "address": fip.floating_ip_address,
                        "port_id": target.id,
                        "old_port_id": target.id,
                    }
        raise
    return {
        "changed": True,
        "address": fip.floating_ip_address,
        "port_id": target.id,
        "old_port_id": None,
    }


def disassociate(address=None, cloud=None, test=False, server=None, port=None, fixed_ip=None):
    """
    Detach the floating IP ``address`` from its port, or every floating IP of a server,
    port or fixed IP (the addresses stay allocated). Returns ``{changed, address,
    old_port_id}`` (``address``: a list when detached by target).

    address
        The floating IP address, e.g. ``192.168.144.77``; an error when no floating IP
        has it. Nothing changes when it is associated with no port. Or give a target:

    server
        The name of the server whose floating IPs to detach (looked up through Nova).

    port
        The name of the port whose floating IPs to detach.

    fixed_ip
        The fixed IP of the port whose floating IPs to detach.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    test
        ``True``: detach nothing, only report whether it would be. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.disassociate 192.168.144.77
        salt '*' floating_ip.disassociate server=web1
    """
    conn = _conn(cloud)
    if not address:
        if len([t for t in (server, port, fixed_ip) if t]) != 1:
            raise SaltInvocationError("give address, or exactly one of server, port, fixed_ip")
        target = _target_port(conn, server, port, fixed_ip)
        held = _fips(conn, "floating IPs of the port", port_id=target.id)
        if not test:
            for fip in held:
                _update(conn, fip, None, f"disassociate {fip.floating_ip_address}")
        return {
            "changed": bool(held),
            "address": sorted(f.floating_ip_address for f in held),
            "old_port_id": target.id if held else None,
        }
    fip = _fip_by_address(conn, address)
    old_port_id = fip.port_id  # the update below changes the object in place
    if not old_port_id:
        return {"changed": False, "address": address, "old_port_id": None}
    if not test:
        _update(conn, fip, None, f"disassociate {address}")
    return {"changed": True, "address": address, "old_port_id": old_port_id}


def release(address, cloud=None, test=False):
    """
    Give the floating IP ``address`` back to its network (delete it), guarded by its
    revision. Returns ``{changed, address, old_port_id}``.

    address
        The floating IP address to delete, e.g. ``192.168.144.77``; one still associated
        is detached with it. Nothing changes when it is not allocated.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    test
        ``True``: delete nothing, only report whether it would be. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.release 192.168.144.77
    """
    conn = _conn(cloud)
    found = _fips(conn, f"look up floating IP {address}", floating_ip_address=address)
    if not found:
        return {"changed": False, "address": address, "old_port_id": None}
    fip = _one(found, f"floating IP {address}", "address")
    if not test:
        try:
            _call(
                f"release {address}", conn.network.delete_ip, fip, if_revision=fip.revision_number
            )
        except openstack.exceptions.PreconditionFailedException as err:
            raise CommandExecutionError(
                f"floating IP {address} changed since it was read; not released"
            ) from err
    return {"changed": True, "address": address, "old_port_id": fip.port_id}


def _standby(conn, address):
    """The standby target the pillar names for ``address`` (a label in
    ``hastack:floating_ips:addresses``, or the address an entry holds), and the floating
    address to move."""
    entries = sites.configured(__salt__, __opts__.get("id"), "floating_ips:addresses", {}) or {}
    label = address if address in entries else None
    if label is None:
        label = next((k for k, v in entries.items() if (v or {}).get("address") == address), None)
    if label is None:
        raise SaltInvocationError(
            f"address: '{address}' is neither a label nor an address in hastack:floating_ips:addresses; "
            "name the target (server=, port= or fixed_ip=)"
        )
    entry = entries[label]
    standby = entry.get("standby") or {}
    if not standby:
        raise SaltInvocationError(
            f"hastack:floating_ips:addresses:{label}:standby: not set; name the "
            "target (server=, port= or fixed_ip=)"
        )
    if entry.get("address"):
        return standby, entry["address"]
    # An address the primary got from the network: read it from the primary's port.
    # The primary's port, or when already moved (or never associated) the standby's.
    for spec in (entry, standby):
        held = _fips(conn, "floating IPs of the port", port_id=_target_of(conn, spec).id)
        if held:
            return standby, held[0].floating_ip_address
    raise SaltInvocationError(f"address: '{label}' has no floating IP on its server or its standby")


def move(address, server=None, port=None, fixed_ip=None, cloud=None, test=False):
    """
    Move the floating IP ``address`` to another server, port or fixed IP (e.g. a standby
    server's port), in one guarded write. Without a target, ``address`` may be a label
    in ``hastack:floating_ips:addresses`` (or the address an entry holds): the target is
    that entry's ``standby`` (``{server: ...}``, ``{port: ...}`` or ``{fixed_ip: ...}``).
    The target port must not hold a floating IP already.
    Returns ``{changed, address, port_id, old_port_id}``.

    address
        The floating IP address to move, e.g. ``192.168.144.77``; without a target, also
        a label in ``hastack:floating_ips:addresses`` or the address an entry there holds.

    server
        The name of the server (looked up through Nova) to move it to; it must have
        exactly one port. Give at most one of ``server``, ``port`` and ``fixed_ip``;
        with none, the target is the pillar entry's ``standby``.

    port
        The name of the Neutron port to move it to.

    fixed_ip
        A fixed IP address of the port to move it to, e.g. ``10.5.5.13``.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    test
        ``True``: move nothing, only report what would change. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.move 192.168.144.77 server=web1-standby
        salt '*' floating_ip.move web1          # to the standby the pillar names
    """
    conn = _conn(cloud)
    if server or port or fixed_ip:
        target = _target_port(conn, server, port, fixed_ip)
    else:
        standby, address = _standby(conn, address)
        target = _target_of(conn, standby)
    fip, result = _move_plan(conn, address, target)
    if result["changed"] and not test:
        _update(conn, fip, target.id, f"move {address}", verify=True)
    return result


def _move_plan(conn, address, target):
    """The floating IP ``address`` and what moving it to ``target`` (a port) changes."""
    fip = _fip_by_address(conn, address)
    if fip.port_id == target.id:
        return fip, {
            "changed": False,
            "address": address,
            "port_id": target.id,
            "old_port_id": target.id,
        }
    held = _fips(conn, "floating IPs of the port", port_id=target.id)
    if held:
        raise _port_busy(target, held)
    return fip, {
        "changed": True,
        "address": address,
        "port_id": target.id,
        "old_port_id": fip.port_id,
    }


def to_standby(labels, cloud=None, test=False, read_back=True):
    """
    Move the floating IPs of several ``hastack:floating_ips:addresses`` entries to their
    standbys at once, as a failover does: the guarded writes run side by side, and one
    listing reads them all back once a concurrent writer's accepted write would have
    landed (the two-movers guard, paid once for all). An entry already on its standby
    is left. Returns ``{moved: {label: {changed, address, port_id, old_port_id}},
    failed: {label: error}}``; the job fails when any entry failed.

    labels
        The entries' labels, e.g. ``[web1, db1]`` (each must have a ``standby``).

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    test
        ``True``: move nothing, only report what would change. Default: ``False``.

    read_back
        ``False``: return as soon as the writes are answered, with ``written`` (what
        ``floating_ip.read_back_moves`` takes), so that other work (a failover's router
        moves) fills the guard's wait. Default: ``True``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.to_standby '[web1, db1]'
    """
    if isinstance(labels, str):
        labels = [labels]
    conn = _conn(cloud)
    moved, failed, written = {}, {}, {}
    lock = threading.Lock()

    def one(label):
        standby, address = _standby(conn, label)
        fip, result = _move_plan(conn, address, _target_of(conn, standby))
        if result["changed"] and not test:
            started = time.monotonic()
            answer = _update(conn, fip, result["port_id"], f"move {address} to its standby")
            with lock:
                written[label] = _write_of(fip, result["port_id"], answer, started)
        return result

    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        # Each in a copy of this context: __salt__ (config.get) lives in a context variable.
        futures = {
            pool.submit(contextvars.copy_context().run, one, label): label for label in labels
        }
    for future, label in futures.items():
        try:
            moved[label] = future.result()
        except (CommandExecutionError, SaltInvocationError) as err:
            failed[label] = str(err)
    out = {"moved": moved, "failed": failed}
    if read_back:
        checked = read_back_moves(written, cloud=cloud)
        failed.update(checked["failed"])
        for label in checked["failed"]:
            moved.pop(label, None)
    else:
        out["written"] = written
    if failed:
        __context__["retcode"] = 1
    return out


def read_back_moves(written, cloud=None):
    """
    The second half of ``floating_ip.to_standby read_back=False``: wait until the last
    write's guard has passed (a concurrent writer's accepted write would have landed by
    then), then read every address back in one listing. Returns ``{held: [labels],
    failed: {label: why}}``; the job fails when an address is no longer where its write
    put it.

    written
        What ``to_standby`` returned under ``written``: ``{label: {id, address,
        port_id, revision, until}}``.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.read_back_moves "$(cat written.json)"
    """
    if not written:
        return {"held": [], "failed": {}}
    by_id = {w["id"]: label for label, w in written.items()}
    conflicts = _read_back(_conn(cloud), list(written.values()))
    failed = {by_id[fip_id]: why for fip_id, why in conflicts.items()}
    if failed:
        __context__["retcode"] = 1
    return {"held": sorted(set(written) - set(failed)), "failed": failed}


def _cost_file():
    return os.path.join(__opts__["cachedir"], "hastack", "neutron-writes.json")


def _cloud_key(cloud):
    return cloud if isinstance(cloud, str) else json.dumps(cloud, sort_keys=True)


def _write_cost(cloud):
    """Seconds a reissue's write has cost this minion on ``cloud``, as measured by its
    earlier reissues (all at once, concurrency included), else ``WRITE_COST``."""
    try:
        with open(_cost_file(), encoding="utf-8") as fh:
            return float(json.load(fh)[_cloud_key(cloud)]), True
    except (OSError, ValueError, KeyError, TypeError):
        return WRITE_COST, False


def _note_write_cost(cloud, seconds):
    """Keep a smoothed measure of a write's cost for the next reissue's deadline."""
    try:
        with open(_cost_file(), encoding="utf-8") as fh:
            costs = json.load(fh)
    except (OSError, ValueError):
        costs = {}
    old = costs.get(_cloud_key(cloud))
    costs[_cloud_key(cloud)] = round(seconds if old is None else (old + seconds) / 2, 4)
    os.makedirs(os.path.dirname(_cost_file()), exist_ok=True)
    tmp = f"{_cost_file()}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(costs, fh)
    os.replace(tmp, _cost_file())


def reissue(
    addresses=None,
    host=None,
    server=None,
    cloud=None,
    concurrency=CONCURRENCY,
    test=False,
    deadline=None,
    request_timeout=None,
):
    """
    Associate floating IPs again with the port their server has now, so Neutron
    re-programs them (after a network node or a compute failed): the given
    ``addresses``, or those of the ports bound to ``host``, or of ``server``. Each is one
    guarded PUT; at most ``concurrency`` run at once. Floating IPs associated with no
    port are skipped. Returns ``{reissued: [addresses], failed: {address: why},
    in_flight: {address: why}, deadline: seconds}``: ``failed`` holds what was refused
    or never sent, ``in_flight`` what was sent but not answered by the deadline and not
    seen written when read back (it may still land); the job fails when either is not
    empty.

    addresses
        One floating address or a list of them; each must exist. When given, ``host``
        and ``server`` are ignored.

    host
        Reissue the floating IPs of the ports bound to this host (e.g. the compute node
        that failed), when ``addresses`` is not given.

    server
        Reissue the floating IPs of this server (by name), when ``addresses`` is not
        given; together with ``host``, a floating IP must match both.

    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).

    concurrency
        How many PUTs run at once (at least 1); default: 8.

    deadline
        Seconds the whole call may take: every request is bounded by it, no write starts
        in its last seconds (kept to read back what is still unanswered), and the call
        returns by then, a stalled or frozen Neutron included. Default: it follows the
        work, 10 s plus 1.5 times the addresses' writes at the cost a write had in this
        minion's earlier reissues (1 s before any). A deadline the writes cannot fit in
        at that cost is refused before anything is written.

    request_timeout
        Seconds one request may take before it is sent again (default: the deadline). A
        retry whose earlier try landed meanwhile (a stalled Neutron applied it late)
        recognises that write by reading the address back: it is reported done, not as
        a conflict.

    test
        ``True``: write nothing, return the addresses that would be reissued and the
        deadline. Default: ``False``.

    CLI Example:

    .. code-block:: bash

        salt '*' floating_ip.reissue host=alice
        salt '*' floating_ip.reissue '[192.168.144.77, 192.168.144.78]'
    """
    started = time.monotonic()
    if deadline is not None:
        deadline = float(deadline)
        if deadline <= 0:
            raise SaltInvocationError("deadline: seconds, more than 0")
    if request_timeout is not None and float(request_timeout) <= 0:
        raise SaltInvocationError("request_timeout: seconds, more than 0")
    cloud = _cloud(cloud)
    # Finding the addresses is bounded by the deadline given, else by one listing's time.
    listed_by = started + (deadline or LIST_DEADLINE)
    conn = openstack_conn.connection(cloud, __context__, api_timeout=deadline or LIST_DEADLINE)
    if addresses:
        wanted = set([addresses] if isinstance(addresses, str) else addresses)
        try:
            listed = _fips(conn, "list floating IPs", deadline=listed_by)
        except CommandExecutionError as err:
            # Neutron did not answer in time: nothing was sent, every address is left.
            __context__["retcode"] = 1
            return {
                "reissued": [],
                "failed": {address: f"not done: {err}" for address in wanted},
                "in_flight": {},
                "deadline": deadline,
            }
        fips = [f for f in listed if f.floating_ip_address in wanted]
        missing = wanted - {f.floating_ip_address for f in fips}
        if missing:
            raise SaltInvocationError(f"addresses: no floating IP {', '.join(sorted(missing))}")
    elif host or server:
        fips, _ = _selected(conn, server=server, host=host, deadline=listed_by)
    else:
        raise SaltInvocationError("name what to reissue: addresses=, host= or server=")
    fips = [f for f in fips if f.port_id]
    cost, measured = _write_cost(cloud)
    needed = len(fips) * cost
    left = None if deadline is None else deadline - (time.monotonic() - started)
    if left is None:
        deadline = round(REISSUE_BASE + 1.5 * needed, 1)
        left = deadline
    elif fips and needed > left:
        raise SaltInvocationError(
            f"deadline: {len(fips)} addresses need about {needed:.0f} s at "
            f"{cost:.2f} s a write ({'measured by this minion' if measured else 'before any measure'})"
            f", more than the {left:.0f} s left; give deadline={math.ceil(REISSUE_BASE + 1.5 * needed)}"
            " or leave it out (it then follows the work). Nothing was written"
        )
    if test:
        return {
            "reissued": sorted(f.floating_ip_address for f in fips),
            "failed": {},
            "in_flight": {},
            "deadline": deadline,
        }
    stop_at = time.monotonic() + left
    # The last seconds read back what is still unanswered: no write starts in them.
    reserve = min(READBACK_MAX, 0.2 * left)
    timeout = left if request_timeout is None else min(float(request_timeout), left)
    conn = openstack_conn.connection(cloud, __context__, api_timeout=timeout)
    sent = {}

    def one(fip):
        address = fip.floating_ip_address

        def count():
            sent[address] = sent.get(address, 0) + 1

        _update(
            conn, fip, fip.port_id, f"reissue {address}", deadline=stop_at - reserve, on_send=count
        )
        return address

    reissued, failed, in_flight, unanswered = [], {}, {}, []
    writing = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(concurrency)))
    try:
        futures = {pool.submit(one, fip): fip for fip in fips}
        done, _ = concurrent.futures.wait(
            futures, timeout=max(0.0, stop_at - reserve / 2 - time.monotonic())
        )
        wrote_for = time.monotonic() - writing
        for future, fip in futures.items():
            address = fip.floating_ip_address
            if future in done:
                try:
                    reissued.append(future.result())
                except (CommandExecutionError, SaltInvocationError) as err:
                    failed[address] = str(err)
            elif sent.get(address):
                unanswered.append(fip)
            else:
                failed[address] = f"not done: not sent before the deadline ({deadline:g} s)"
    finally:
        # A request in flight ends by its own timeout; none starts anew.
        pool.shutdown(wait=False, cancel_futures=True)
    if unanswered:
        seen = _written_since(cloud, unanswered, max(0.1, stop_at - time.monotonic()))
        for fip in unanswered:
            address = fip.floating_ip_address
            if seen.get(fip.id):
                reissued.append(address)
            else:
                in_flight[address] = (
                    "sent, not answered by the deadline and not seen written"
                    + ("" if fip.id in seen else " (Neutron did not answer the read-back)")
                    + ": it may still land; read it again later"
                )
    if len(reissued) >= 3:
        _note_write_cost(cloud, wrote_for / len(reissued))
    if failed or in_flight:
        __context__["retcode"] = 1  # addresses left undone or unknown: the job must say so
    return {
        "reissued": sorted(reissued),
        "failed": failed,
        "in_flight": in_flight,
        "deadline": deadline,
    }


def _written_since(cloud, fips, timeout):
    """``{fip id: written}``: whether each floating IP was written since it was read (a
    newer revision, on the port it had), by one listing bounded by ``timeout``; an id is
    missing when Neutron did not answer in time."""
    conn = openstack_conn.connection(cloud, __context__, api_timeout=timeout)
    try:
        resp = conn.network.get("/floatingips", params={"id": [f.id for f in fips]})
        openstack.exceptions.raise_from_response(resp)
    except Exception as err:  # pylint: disable=broad-except
        log.warning("hastack: reading back %d floating IPs failed: %s", len(fips), err)
        return {}
    now = {f["id"]: f for f in resp.json()["floatingips"]}
    return {
        f.id: now[f.id]["revision_number"] > f.revision_number and now[f.id]["port_id"] == f.port_id
        for f in fips
        if f.id in now
    }

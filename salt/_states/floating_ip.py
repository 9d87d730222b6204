"""
Floating IPs by name, declared.

.. code-block:: yaml

    web1-floating-ip:
      floating_ip.associated:
        - server: web1            # or port: web1-port, or fixed_ip: 10.5.5.12
        - network: ext_net        # a new address from here (default: hastack:openstack:external_network)
        # - address: 192.168.144.77   # or this existing one

    old-floating-ip:
      floating_ip.absent:
        - address: 192.168.144.50
        - release: true           # also give the address back (default: only detach)

``changes`` are ``{address: {old, new}, port: {old, new}}``; under ``test=True`` the
predicted changes, nothing written (a new address shows as ``(new from <network>)``).
"""

from hastack_utils import loader, states

__virtualname__ = "floating_ip"


def __virtual__():
    if "floating_ip.associate" not in __salt__:
        # Say why (e.g. which package is missing), as the execution module does.
        return (False, loader.unavailable(__salt__, "floating_ip.associate"))
    return __virtualname__


def associated(
    name,
    server=None,
    port=None,
    fixed_ip=None,
    address=None,
    network=None,
    cloud=None,
    standby=None,
    pillar_key=None,
):
    """
    The server, port or fixed IP has a floating IP (``address``, or any from ``network``).

    name
        A label for the association (e.g. the server's role).
    server
        The name of the server (looked up through Nova) that gets the floating IP; it
        must have exactly one port. Give exactly one of ``server``, ``port`` and
        ``fixed_ip``.
    port
        The name of the Neutron port that gets the floating IP.
    fixed_ip
        A fixed IP address of the port that gets the floating IP, e.g. ``10.5.5.12``.
    address
        The floating address it must have: taken if unassociated, allocated from
        ``network`` if not allocated yet; one held by another port is an error (use
        ``floating_ip.move``). Default: any floating IP from ``network``.
    network
        The external network (name or ID) a new floating IP comes from; default:
        ``hastack:openstack:external_network`` (pillar or config).
    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).
    standby
        Where ``floating_ip.move`` sends it on failure (``{server: ...}``, ``{port: ...}``
        or ``{fixed_ip: ...}``): held there, the association counts as kept, and a
        highstate neither takes it back nor allocates another.
    pillar_key
        Where this entry is declared (``hastack:floating_ips:addresses:<label>``), named
        in errors.
    """
    ret = states.new_ret(name)
    args = {
        "server": server,
        "port": port,
        "fixed_ip": fixed_ip,
        "address": address,
        "network": network,
        "cloud": cloud,
        "standby": standby,
    }
    try:
        plan = __salt__["floating_ip.associate"](test=True, **args)
    except states.ERRORS as err:
        return _named(states.failed(ret, err), pillar_key)
    target = server or port or fixed_ip
    where = " (on its standby: floating_ip.move it back when ready)" if plan.get("standby") else ""
    new_address = plan["address"] or f"(new from {network or 'the external network'})"
    changes = {}
    if plan["changed"]:
        changes = {
            "address": {"old": None, "new": new_address},
            "port": {"old": plan["old_port_id"], "new": plan["port_id"]},
        }
    done = {}

    def write():
        done.update(__salt__["floating_ip.associate"](**args))
        # The address Neutron gave, which the prediction could not name.
        return states.Made(
            address={"old": None, "new": done["address"]},
            port={"old": done["old_port_id"], "new": done["port_id"]},
        )

    def remaining():
        # Neutron must now hold the association, on the address it gave.
        after = __salt__["floating_ip.associate"](
            test=True, **dict(args, address=done.get("address") or address)
        )
        return set(changes) if after["changed"] else set()

    return _named(
        states.converge(
            ret,
            changes,
            write,
            remaining,
            test=__opts__["test"],
            done_comment=lambda: f"{target} has floating IP {done.get('address') or new_address}",
            same_comment=f"{target} has floating IP {plan['address']}{where}",
            predicted_comment=f"{target} would get floating IP {new_address}",
        ),
        pillar_key,
    )


def absent(
    name,
    address=None,
    release=False,
    cloud=None,
    server=None,
    port=None,
    fixed_ip=None,
    pillar_key=None,
):
    """
    The floating IP ``address`` (default: ``name``) is associated with no port; with
    ``release``, it is given back to its network. Or: the server, port or fixed IP has
    no floating IP.

    name
        The floating IP address, unless ``address`` or a target is given (then a label).
    address
        The floating IP address, e.g. ``192.168.144.50``; default: ``name``.
    server
        Detach every floating IP of the server with this name (looked up through Nova).
    port
        Detach every floating IP of the port with this name.
    fixed_ip
        Detach every floating IP of the port with this fixed IP.
    release
        ``True``: also delete the floating IP, giving the address back to its network
        (by address only). Default ``False``: only detach it (it stays allocated).
    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).
    pillar_key
        Where this entry is declared (``hastack:floating_ips:addresses:<label>``), named
        in errors.
    """
    ret = states.new_ret(name)
    target = {k: v for k, v in (("server", server), ("port", port), ("fixed_ip", fixed_ip)) if v}
    if target and (address or release):
        return _named(
            states.failed(
                ret,
                "give an address or a target (server, port, "
                "fixed_ip), and release only with an address",
            ),
            pillar_key,
        )
    args = dict(target) if target else {"address": address or name}
    what = next(iter(target.values())) if target else args["address"]
    fun = "floating_ip.release" if release else "floating_ip.disassociate"
    verb = "released" if release else "detached"
    try:
        plan = __salt__[fun](cloud=cloud, test=True, **args)
    except states.ERRORS as err:
        return _named(states.failed(ret, err), pillar_key)
    changes = {}
    if plan["changed"]:
        changes = {"port": {"old": plan["old_port_id"], "new": None}}
        if release:
            changes["address"] = {"old": args["address"], "new": None}
    return _named(
        states.converge(
            ret,
            changes,
            write=lambda: __salt__[fun](cloud=cloud, **args),
            remaining=lambda: (
                set(changes) if __salt__[fun](cloud=cloud, test=True, **args)["changed"] else set()
            ),
            test=__opts__["test"],
            done_comment=f"{what} {verb}",
            same_comment=f"{what} {'is not allocated' if release else 'has no floating IP'}"
            if target or release
            else f"{what} is not associated",
            predicted_comment=f"{what} would be {verb}",
        ),
        pillar_key,
    )


def _named(ret, pillar_key):
    """A failed state's comment starts with the pillar key of the entry, when known."""
    if ret["result"] is False and pillar_key and not ret["comment"].startswith(pillar_key):
        ret["comment"] = f"{pillar_key}: {ret['comment']}"
    return ret

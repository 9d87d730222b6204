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

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import loader

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
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
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
        target = server or port or fixed_ip
        if not plan["changed"]:
            where = (
                " (on its standby: floating_ip.move it back when ready)"
                if plan.get("standby")
                else ""
            )
            ret["comment"] = f"{target} has floating IP {plan['address']}{where}"
            return ret
        new_address = plan["address"] or f"(new from {network or 'the external network'})"
        if __opts__["test"]:
            ret.update(
                result=None,
                comment=f"{target} would get floating IP {new_address}",
                changes={
                    "address": {"old": None, "new": new_address},
                    "port": {"old": plan["old_port_id"], "new": plan["port_id"]},
                },
            )
            return ret
        done = __salt__["floating_ip.associate"](**args)
        # Read back, as every hastack state does: Neutron must now hold the association.
        after = __salt__["floating_ip.associate"](test=True, **dict(args, address=done["address"]))
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = {
        "address": {"old": None, "new": done["address"]},
        "port": {"old": done["old_port_id"], "new": done["port_id"]},
    }
    if after["changed"]:
        ret.update(
            result=False,
            comment=f"{target} was given floating IP {done['address']}, "
            f"but a re-read shows it elsewhere (port {after['old_port_id']})",
        )
    else:
        ret["comment"] = f"{target} has floating IP {done['address']}"
    return ret


def absent(name, address=None, release=False, cloud=None):
    """
    The floating IP ``address`` (default: ``name``) is associated with no port; with
    ``release``, it is given back to its network.

    name
        The floating IP address, unless ``address`` is given (then a free label).
    address
        The floating IP address, e.g. ``192.168.144.50``; default: ``name``.
    release
        ``True``: also delete the floating IP, giving the address back to its network.
        Default ``False``: only detach it from its port (it stays allocated).
    cloud
        The OpenStack cloud: a ``clouds.yaml`` entry name or a dict of openstacksdk
        connection arguments; default: ``hastack:openstack:cloud`` (pillar or config).
    """
    address = address or name
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    fun = "floating_ip.release" if release else "floating_ip.disassociate"
    try:
        plan = __salt__[fun](address, cloud=cloud, test=True)
        if not plan["changed"]:
            ret["comment"] = f"{address} is {'not allocated' if release else 'not associated'}"
            return ret
        changes = {"port": {"old": plan["old_port_id"], "new": None}}
        if release:
            changes["address"] = {"old": address, "new": None}
        if __opts__["test"]:
            ret.update(
                result=None,
                changes=changes,
                comment=f"{address} would be {'released' if release else 'detached'}",
            )
            return ret
        __salt__[fun](address, cloud=cloud)
        still = __salt__[fun](address, cloud=cloud, test=True)["changed"]  # read back
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    if still:
        ret.update(
            result=False,
            comment=f"{address} was {'released' if release else 'detached'}, "
            "but a re-read shows it still there",
        )
    else:
        ret.update(changes=changes, comment=f"{address} {'released' if release else 'detached'}")
    return ret

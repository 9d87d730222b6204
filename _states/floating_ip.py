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

__virtualname__ = "floating_ip"


def __virtual__():
    if "floating_ip.associate" not in __salt__:
        return (False, "floating_ip state: the floating_ip execution module is not available")
    return __virtualname__


def associated(name, server=None, port=None, fixed_ip=None, address=None, network=None, cloud=None,
               standby=None):
    """
    The server, port or fixed IP has a floating IP (``address``, or any from ``network``).

    name
        A label for the association (e.g. the server's role).
    standby
        Where ``floating_ip.move`` sends it on failure (``{server: ...}``, ``{port: ...}``
        or ``{fixed_ip: ...}``): held there, the association counts as kept, and a
        highstate neither takes it back nor allocates another.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    args = {"server": server, "port": port, "fixed_ip": fixed_ip, "address": address,
            "network": network, "cloud": cloud, "standby": standby}
    try:
        plan = __salt__["floating_ip.associate"](test=True, **args)
        target = server or port or fixed_ip
        if not plan["changed"]:
            where = " (on its standby: floating_ip.move it back when ready)" if plan.get("standby") else ""
            ret["comment"] = f"{target} has floating IP {plan['address']}{where}"
            return ret
        new_address = plan["address"] or f"(new from {network or 'the external network'})"
        if __opts__["test"]:
            ret.update(result=None, comment=f"{target} would get floating IP {new_address}",
                       changes={"address": {"old": None, "new": new_address},
                                "port": {"old": plan["old_port_id"], "new": plan["port_id"]}})
            return ret
        done = __salt__["floating_ip.associate"](**args)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = {"address": {"old": None, "new": done["address"]},
                      "port": {"old": done["old_port_id"], "new": done["port_id"]}}
    ret["comment"] = f"{target} has floating IP {done['address']}"
    return ret


def absent(name, address=None, release=False, cloud=None):
    """
    The floating IP ``address`` (default: ``name``) is associated with no port; with
    ``release``, it is given back to its network.
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
            ret.update(result=None, changes=changes,
                       comment=f"{address} would be {'released' if release else 'detached'}")
            return ret
        __salt__[fun](address, cloud=cloud)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret.update(changes=changes, comment=f"{address} {'released' if release else 'detached'}")
    return ret

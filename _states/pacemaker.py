"""
The control plane's Pacemaker configuration, declared as pillar data.

.. code-block:: yaml

    hastack-pacemaker:
      pacemaker.configured:
        - nodes: [alice, bob, charlie]
        - config: {properties: ..., primitives: ..., groups: ..., locations: ...}

Every attribute of every item is compared (not just that an id exists). ``changes``
are ``{"<section>:<id>": {old, new}}``. The candidate is checked with ``crm_verify``
before it is written; the write is one epoch-guarded patch, retried on a fresh read
when someone else wrote first, so applying from several nodes at once loses nothing.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "pacemaker"
SECTIONS = ("properties", "resource_defaults", "primitives", "groups", "clones", "locations",
            "colocations", "orders")


def __virtual__():
    if "pacemaker.configuration" not in __salt__:
        return (False, "pacemaker state: the pacemaker execution module is not available")
    return __virtualname__


def _diff(current, wanted, remove_undeclared):
    changes = {}
    for section in SECTIONS:
        have, want = current.get(section) or {}, wanted.get(section) or {}
        if section in ("properties", "resource_defaults"):
            keys = set(want) | (set(have) if remove_undeclared else set())
            for name in sorted(keys):
                if have.get(name) != want.get(name):
                    changes[f"{section}:{name}"] = {"old": have.get(name), "new": want.get(name)}
            continue
        for item_id in sorted(set(want) | (set(have) if remove_undeclared else set())):
            if have.get(item_id) != want.get(item_id):
                changes[f"{section}:{item_id}"] = {"old": have.get(item_id), "new": want.get(item_id)}
    return changes


def configured(name, config, nodes, cib_file=None, remove_undeclared=False):
    """
    Make the cluster's configuration match the declaration.

    name
        A label (e.g. the site).
    config
        The plain shape (see the ``pacemaker`` execution module).
    nodes
        The cluster's node names (locations may name only these).
    cib_file
        Work on a CIB file instead of the live cluster.
    remove_undeclared
        Also remove items the declaration does not name (default: leave them).
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        wanted = __salt__["pacemaker.validate"](config, nodes)
        current = __salt__["pacemaker.configuration"](cib_file=cib_file)
        changes = _diff(current, wanted, remove_undeclared)
        if not changes:
            ret["comment"] = "The Pacemaker configuration is as declared"
            return ret
        check = __salt__["pacemaker.verify"](config=wanted, cib_file=cib_file,
                                             remove_undeclared=remove_undeclared)
        if not check["valid"]:
            ret.update(result=False, comment="crm_verify refuses the declared configuration: "
                       + "; ".join(check["messages"]))
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes,
                       comment=f"{len(changes)} item(s) would change")
            return ret
        # The merge with undeclared items happens inside the epoch-guarded write, on the
        # CIB as it is then: a concurrent writer's additions are kept, not overwritten.
        __salt__["pacemaker.write"](wanted, cib_file=cib_file, remove_undeclared=remove_undeclared)
        remaining = _diff(__salt__["pacemaker.configuration"](cib_file=cib_file), wanted,
                          remove_undeclared)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = changes
    if remaining:
        ret.update(result=False, comment=f"written, but still differs in: {', '.join(remaining)}")
    else:
        ret["comment"] = f"{len(changes)} item(s) changed"
    return ret

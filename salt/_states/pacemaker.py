"""
The control plane's Pacemaker configuration, declared as pillar data.

.. code-block:: yaml

    hastack-pacemaker:
      pacemaker.configured:
        - nodes: [alice, bob, charlie]
        - config: {properties: ..., primitives: ..., groups: ..., locations: ...}

Every declared attribute of every declared item is compared (not just that an id
exists), and only those are written: what an operator set beside them (other
parameters, meta attributes, operations, whole sections) stays as it is. ``changes``
are ``{"<section>:<id>": {old, new}}`` with the declared part of each item. The
candidate is checked with ``crm_verify`` before it is written; the write is one
epoch-guarded patch, retried on a fresh read when someone else wrote first, so
applying from several nodes at once loses nothing.
"""

from hastack_utils import loader, states

__virtualname__ = "pacemaker"


def __virtual__():
    if "pacemaker.diff" not in __salt__:
        # Say why (e.g. which package is missing), as the execution module does.
        return (False, loader.unavailable(__salt__, "pacemaker.diff"))
    return __virtualname__


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
        Also remove whole items of the declared sections that the declaration does not
        name (default: leave them). The failover's shifts, ``crm_resource`` moves and
        bans, and fencing devices always stay.
    """
    ret = states.new_ret(name)
    try:
        wanted = __salt__["pacemaker.validate"](config, nodes)
        changes = __salt__["pacemaker.diff"](
            wanted, cib_file=cib_file, remove_undeclared=remove_undeclared
        )
        if changes:
            check = __salt__["pacemaker.verify"](
                config=wanted, cib_file=cib_file, remove_undeclared=remove_undeclared
            )
            if not check["valid"]:
                return states.failed(
                    ret,
                    "crm_verify refuses the declared configuration: "
                    + "; ".join(check["messages"]),
                )
    except states.ERRORS as err:
        return states.failed(ret, err)
    return states.converge(
        ret,
        changes,
        # The edit is made inside the epoch-guarded write, on the CIB as it is then: a
        # concurrent writer's changes are kept, not overwritten.
        write=lambda: __salt__["pacemaker.write"](
            wanted, cib_file=cib_file, remove_undeclared=remove_undeclared
        ),
        remaining=lambda: __salt__["pacemaker.diff"](
            wanted, cib_file=cib_file, remove_undeclared=remove_undeclared
        ),
        test=__opts__["test"],
        done_comment=f"{len(changes)} item(s) changed",
        same_comment="The Pacemaker configuration is as declared",
        predicted_comment=f"{len(changes)} item(s) would change",
    )

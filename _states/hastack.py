"""
hastack's own states: INI options in OpenStack service configuration files.

.. code-block:: yaml

    hastack-glance-conf:
      hastack.ini_present:
        - name: /etc/glance/glance-api.conf
        - sections:
            DEFAULT: {enabled_backends: 'ceph:rbd'}
            glance_store: {default_backend: ceph}

Only the named options are managed; every other line survives. ``changes`` are
``{"[section] option": {old, new}}``, and ``test=True`` reports exactly those.
"""

from hastack_utils import loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

__virtualname__ = "hastack"


def __virtual__():
    if "hastack.ini_diff" not in __salt__:
        # Say why (e.g. which package is missing), as the execution module does.
        return (False, loader.unavailable(__salt__, "hastack.ini_diff"))
    return __virtualname__


def ini_present(name, sections, mode="0644"):
    """
    Make sure an INI file holds these options.

    name
        The file's path.
    sections
        ``{section: {option: value}}``.
    mode
        The mode of a file created here (an existing file keeps its own).
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        changes = __salt__["hastack.ini_diff"](name, sections)
        if not changes:
            ret["comment"] = f"{name} holds the wanted options"
            return ret
        if __opts__["test"]:
            ret.update(result=None, changes=changes, comment=f"{name} would be updated")
            return ret
        __salt__["hastack.ini_set"](name, sections, mode=mode)
        remaining = __salt__["hastack.ini_diff"](name, sections)
    except (CommandExecutionError, SaltInvocationError) as err:
        ret.update(result=False, comment=str(err))
        return ret
    ret["changes"] = changes
    if remaining:
        ret.update(result=False, comment=f"{name} was written but still differs in: {', '.join(remaining)}")
    else:
        ret["comment"] = f"{name} updated"
    return ret

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

from hastack_utils import loader, states

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
    ret = states.new_ret(name)
    try:
        changes = __salt__["hastack.ini_diff"](name, sections)
    except states.ERRORS as err:
        return states.failed(ret, err)
    return states.converge(
        ret,
        changes,
        write=lambda: __salt__["hastack.ini_set"](name, sections, mode=mode),
        remaining=lambda: __salt__["hastack.ini_diff"](name, sections),
        test=__opts__["test"],
        done_comment=f"{name} updated",
        same_comment=f"{name} holds the wanted options",
        predicted_comment=f"{name} would be updated",
    )

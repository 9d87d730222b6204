"""
libvirt secrets holding Ceph keys (for nova-compute and cinder volumes on RBD).

.. code-block:: yaml

    hastack-libvirt-secret-95aae3f5-...:
      libvirt_secret.present:
        - name: 95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6
        - ceph_user: cinder
        - key_pillar: hastack:ceph:users:cinder:key

The value is compared with the key without ever being shown: a change is reported as
``{"value": {"old": "(hidden)", "new": "(hidden)"}}``.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import loader, states

__virtualname__ = "libvirt_secret"
HIDDEN = "(hidden)"


def _usage_taken(holder, usage, uuid):
    return (
        f"libvirt secret {holder} already holds usage '{usage}'; libvirt allows one secret "
        f"per usage. Remove it, or set replace_usage (pillar hastack:libvirt:secrets:{uuid}:"
        f"replace_usage: true) to replace it with {uuid}."
    )


def __virtual__():
    if "libvirt_secret.get" not in __salt__:
        # Say why (e.g. which package is missing), as the execution module does.
        return (False, loader.unavailable(__salt__, "libvirt_secret.get"))
    return __virtualname__


def present(name, ceph_user, key=None, key_pillar=None, uri=None, replace_usage=False, usage=None):
    """
    Make sure secret ``name`` (a UUID) exists with usage ``client.<ceph_user> secret``
    and holds the Ceph user's key.

    name
        The secret's UUID (what ``rbd_secret_uuid`` names in cinder.conf and nova.conf).
    ceph_user
        The Ceph user whose key the secret holds, e.g. ``cinder``.
    key_pillar / key
        The key's pillar path (preferred) or the key itself.
    uri
        libvirt URI; default ``hastack:libvirt:uri``, else ``qemu:///system``.
    usage
        The usage name; default ``client.<ceph_user> secret`` (hastack names the secrets
        of a cluster other than the main one ``<cluster>.client.<user> secret``).
    replace_usage
        libvirt allows one secret per usage name. When another UUID holds it, fail
        (default) or, with ``True``, remove that secret and take its place.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    usage = usage or __salt__["libvirt_secret.usage_name"](ceph_user)
    try:
        current = __salt__["libvirt_secret.get"](name, uri=uri)
        holder = __salt__["libvirt_secret.holder"](usage, uri=uri)
        # A private secret cannot be read back: it is replaced (undefined, defined again).
        # Otherwise this also checks the key, even when the secret does not exist yet.
        value_ok = None
        if current is None or not current["private"]:
            value_ok = __salt__["libvirt_secret.value_matches"](
                name, key=key, key_pillar=key_pillar, uri=uri
            )
    except (CommandExecutionError, SaltInvocationError) as err:
        ret["result"] = False
        ret["comment"] = str(err)
        return ret

    if holder is not None and holder != name and not replace_usage:
        ret["result"] = False
        ret["comment"] = _usage_taken(holder, usage, name)
        return ret

    changes = {}
    if holder is not None and holder != name:
        changes["replaced"] = {"old": holder, "new": None}
    if current is None:
        changes.update(
            {
                "uuid": {"old": None, "new": name},
                "usage": {"old": None, "new": usage},
                "value": {"old": None, "new": HIDDEN},
            }
        )
    else:
        if current["usage_type"] != "ceph" or current["usage_id"] != usage:
            changes["usage"] = {"old": current["usage_id"], "new": usage}
        if current["private"]:
            changes["private"] = {"old": True, "new": False}
        if not value_ok:
            changes["value"] = {"old": HIDDEN if value_ok is False else None, "new": HIDDEN}

    def write():
        if "replaced" in changes:
            __salt__["libvirt_secret.undefine"](holder, uri=uri)
        if current is not None and current["private"]:
            __salt__["libvirt_secret.undefine"](name, uri=uri)  # private cannot be undone in place
        __salt__["libvirt_secret.define"](
            name, ceph_user, key=key, key_pillar=key_pillar, uri=uri, usage=usage
        )

    def remaining():
        after = __salt__["libvirt_secret.get"](name, uri=uri)
        if after is None:
            return set(changes)
        left = {"private"} if after["private"] else set()
        if after["usage_id"] != usage:
            left.add("usage")
        if not __salt__["libvirt_secret.value_matches"](
            name, key=key, key_pillar=key_pillar, uri=uri
        ):
            left.add("value")
        if "replaced" in changes and __salt__["libvirt_secret.get"](holder, uri=uri) is not None:
            left.add("replaced")
        return left

    return states.converge(
        ret,
        changes,
        write,
        remaining,
        test=__opts__["test"],
        done_comment=f"libvirt secret {name} set for client.{ceph_user}",
        same_comment=f"libvirt secret {name} holds the key of client.{ceph_user}",
        predicted_comment=f"libvirt secret {name} would be set for client.{ceph_user}",
    )


def usable(name, secrets, uri=None):
    """
    Read-only preflight: libvirt answers at ``uri`` and no secret that would be defined
    finds its usage name held by another UUID (unless that secret allows replacing it).
    Give it ``order: 1`` and ``failhard: True`` so a problem stops the run before
    anything changes.

    name
        A label for the check.
    secrets
        The secrets the run would define: ``{uuid: {usage: ..., replace_usage: bool}}``
        (``usage`` is required; ``replace_usage`` defaults to false).
    uri
        libvirt URI; default ``hastack:libvirt:uri``, else ``qemu:///system``.
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    problems = []
    try:
        for uuid, spec in sorted(secrets.items()):
            holder = __salt__["libvirt_secret.holder"](spec["usage"], uri=uri)
            if holder not in (None, uuid) and not spec.get("replace_usage"):
                problems.append(_usage_taken(holder, spec["usage"], uuid))
    except (CommandExecutionError, SaltInvocationError) as err:
        problems.append(str(err))
    if problems:
        ret.update(result=False, comment="\n".join(problems))
    else:
        ret["comment"] = f"libvirt answers; the usage names of {len(secrets)} secret(s) are free"
    return ret


def absent(name, uri=None):
    """
    Make sure no secret has UUID ``name``.

    name
        The UUID of the secret to remove.
    uri
        libvirt URI; default ``hastack:libvirt:uri``, else ``qemu:///system``.
    """
    ret = states.new_ret(name)
    try:
        current = __salt__["libvirt_secret.get"](name, uri=uri)
    except states.ERRORS as err:
        return states.failed(ret, err)
    changes = {} if current is None else {"uuid": {"old": name, "new": None}}
    return states.converge(
        ret,
        changes,
        write=lambda: __salt__["libvirt_secret.undefine"](name, uri=uri),
        remaining=lambda: [] if __salt__["libvirt_secret.get"](name, uri=uri) is None else ["uuid"],
        test=__opts__["test"],
        done_comment=f"libvirt secret {name} removed",
        same_comment=f"libvirt secret {name} is absent",
        predicted_comment=f"libvirt secret {name} would be removed",
    )

"""
libvirt secrets that hold Ceph keys, through libvirt-python.

This replaces the recipe's ``virsh secret-define`` + ``virsh secret-set-value UUID
KEY``, which puts the key on a command line where every user of ``ps`` sees it. Here
the key goes from pillar to libvirt through the API, as the raw bytes of the cephx
key (what ``virsh secret-set-value --base64`` stores), and no function returns it.

The connection URI is the ``uri`` argument, else the ``hastack:libvirt:uri`` pillar or
config key, else ``qemu:///system`` (the URI nova uses).

:depends: libvirt-python
"""

import base64
import logging
from xml.sax.saxutils import escape

from salt.exceptions import CommandExecutionError, SaltInvocationError

from hastack_utils import cephx, sites

try:
    import libvirt

    # libvirt prints every error to stderr by default; they become exceptions here.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    HAS_LIBVIRT = True
except ImportError:
    HAS_LIBVIRT = False

log = logging.getLogger(__name__)

__virtualname__ = "libvirt_secret"
DEFAULT_URI = "qemu:///system"


def __virtual__():
    if not HAS_LIBVIRT:
        return (
            False,
            "libvirt_secret: the libvirt Python bindings are missing (install "
            "python3-libvirt, or pip install 'saltext.hastack[libvirt]')",
        )
    return __virtualname__


def _uri(uri):
    return uri or sites.configured(__salt__, __opts__.get("id"), "libvirt:uri") or DEFAULT_URI


def _connect(uri):
    uri = _uri(uri)
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as err:
        raise CommandExecutionError(
            f"cannot connect to libvirt at {uri} (hastack:libvirt:uri): {err.get_error_message()}"
        ) from err


def _key_bytes(key=None, key_pillar=None):
    """The raw bytes of a cephx key from pillar (or given); never logged or returned."""
    where = key_pillar or "key"
    if key_pillar:
        key = __salt__["pillar.get"](key_pillar, None, unmask=True)
    if key is None:
        raise SaltInvocationError(
            f"{where}: no key" if key_pillar else "one of key or key_pillar is required"
        )
    if not cephx.key_valid(key):
        raise SaltInvocationError(f"{where}: not a cephx key")
    return base64.b64decode(key.strip())


def usage_name(ceph_user):
    """
    The usage name hastack gives the secret of a Ceph user: ``client.<user> secret``.

    ceph_user
        The Ceph user's name without ``client.``, e.g. ``cinder``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.usage_name cinder
    """
    return f"client.{ceph_user} secret"


def _describe(secret):
    from xml.etree import ElementTree  # pylint: disable=import-outside-toplevel

    root = ElementTree.fromstring(secret.XMLDesc(0))
    usage = root.find("usage")
    return {
        "uuid": secret.UUIDString(),
        "usage_type": usage.get("type") if usage is not None else None,
        "usage_id": secret.usageID() or None,
        "private": root.get("private") == "yes",
        "ephemeral": root.get("ephemeral") == "yes",
    }


def list_(uri=None):
    """
    Every secret libvirt holds: uuid, usage type and name, private, ephemeral (no values).

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.list
    """
    conn = _connect(uri)
    try:
        return sorted((_describe(s) for s in conn.listAllSecrets()), key=lambda s: s["uuid"])
    finally:
        conn.close()


__func_alias__ = {"list_": "list"}


def _lookup(conn, uuid):
    try:
        return conn.secretLookupByUUIDString(uuid)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise CommandExecutionError(f"libvirt: {err.get_error_message()}") from err


def get(uuid, uri=None):
    """
    One secret's description, or ``None`` when no secret has that UUID.

    uuid
        The secret's UUID, e.g. ``95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6``.

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.get 95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6
    """
    conn = _connect(uri)
    try:
        secret = _lookup(conn, uuid)
        return None if secret is None else _describe(secret)
    finally:
        conn.close()


def holder(usage, uri=None):
    """
    The UUID of the secret holding a ceph usage name (``client.cinder secret``), or ``None``.

    usage
        The usage name of a ``ceph`` secret, e.g. ``client.cinder secret`` (see
        ``libvirt_secret.usage_name``).

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.holder 'client.cinder secret'
    """
    conn = _connect(uri)
    try:
        secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH, usage)
        return secret.UUIDString()
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
            return None
        raise CommandExecutionError(f"libvirt: {err.get_error_message()}") from err
    finally:
        conn.close()


def value_matches(uuid, key=None, key_pillar=None, uri=None):
    """
    Tell whether the secret holds exactly this Ceph key; ``None`` when it has no value
    (or does not exist). A private secret's value cannot be read: that is an error.

    uuid
        The secret's UUID.

    key
        The cephx key itself (base64, as in a keyring). It shows on the command line and
        in the job's arguments: prefer ``key_pillar``.

    key_pillar
        The pillar path of the key, e.g. ``hastack:ceph:users:cinder:key``; read on the
        minion, never logged or returned. Takes precedence over ``key``; give one of them.

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.value_matches 95aae3f5-... key_pillar=hastack:ceph:users:cinder:key
    """
    wanted = _key_bytes(key, key_pillar)
    conn = _connect(uri)
    try:
        secret = _lookup(conn, uuid)
        if secret is None:
            return None
        try:
            return secret.value(0) == wanted
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_SECRET:
                return None  # defined, no value yet
            if "private" in (err.get_error_message() or "").lower():
                raise CommandExecutionError(
                    f"secret {uuid} is private: its value cannot be compared"
                ) from err
            raise CommandExecutionError(f"libvirt: {err.get_error_message()}") from err
    finally:
        conn.close()


def define(uuid, ceph_user, key=None, key_pillar=None, uri=None, usage=None):
    """
    Define (or redefine) a ceph secret with usage ``usage`` (default ``client.<ceph_user>
    secret``) and set its value to the Ceph key, through the API (never a command line).
    The secret is neither private nor ephemeral. Returns ``True``.

    uuid
        The secret's UUID (what ``rbd_secret_uuid`` names in cinder.conf and nova.conf);
        an existing secret with it is redefined.

    ceph_user
        The Ceph user whose key the secret holds, without ``client.``, e.g. ``cinder``.

    key
        The cephx key itself (base64, as in a keyring). It shows on the command line and
        in the job's arguments: prefer ``key_pillar``.

    key_pillar
        The pillar path of the key, e.g. ``hastack:ceph:users:cinder:key``; read on the
        minion, never logged or returned. Takes precedence over ``key``; give one of them.

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    usage
        The usage name; default: ``client.<ceph_user> secret``. libvirt allows one secret
        per usage name: one held by another UUID is an error.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.define 95aae3f5-... cinder key_pillar=hastack:ceph:users:cinder:key
    """
    value = _key_bytes(key, key_pillar)
    xml = (
        "<secret ephemeral='no' private='no'>"
        f"<uuid>{uuid}</uuid>"
        f"<usage type='ceph'><name>{escape(usage or usage_name(ceph_user))}</name></usage>"
        "</secret>"
    )
    conn = _connect(uri)
    try:
        secret = conn.secretDefineXML(xml, 0)
        secret.setValue(value, 0)
    except libvirt.libvirtError as err:
        raise CommandExecutionError(f"libvirt: {err.get_error_message()}") from err
    finally:
        conn.close()
    # Noted for hastack.clean, which removes it once the pillar no longer names it.
    __salt__["hastack.managed_note"]("libvirt_secrets", uuid.lower(), scope=_uri(uri))
    return True


def undefine(uuid, uri=None):
    """
    Remove a secret; ``False`` when it did not exist.

    uuid
        The UUID of the secret to remove.

    uri
        The libvirt connection URI; default: ``hastack:libvirt:uri`` (pillar or config),
        else ``qemu:///system``.

    CLI Example:

    .. code-block:: bash

        salt '*' libvirt_secret.undefine 95aae3f5-...
    """
    conn = _connect(uri)
    try:
        secret = _lookup(conn, uuid)
        if secret is None:
            return False
        secret.undefine()
        __salt__["hastack.managed_note"](
            "libvirt_secrets", uuid.lower(), scope=_uri(uri), present=False
        )
        return True
    except libvirt.libvirtError as err:
        raise CommandExecutionError(f"libvirt: {err.get_error_message()}") from err
    finally:
        conn.close()

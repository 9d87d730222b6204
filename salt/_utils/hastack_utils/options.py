"""
The OpenStack option names hastack writes, per release: Glance's RBD store, Cinder's
RBD backends and Nova's ``[libvirt]`` RBD settings, as ``{section: {option: value}}``
for ``hastack.ini_present``. ``folsom`` is the workshop's release (Glance's
``default_store``, Cinder's one ``volume_driver`` in ``[DEFAULT]``, no Nova RBD disks);
``current`` is today's (``enabled_backends``, one section per backend).
"""

RELEASES = ("current", "folsom")


def glance(release, store_name, pool, user, ceph_conf, chunk_size):
    """glance-api.conf settings for an RBD store."""
    store = {
        "rbd_store_pool": pool,
        "rbd_store_user": user,
        "rbd_store_ceph_conf": ceph_conf,
        "rbd_store_chunk_size": chunk_size,
    }
    if release == "folsom":
        return {"DEFAULT": {"default_store": "rbd", "show_image_direct_url": "True", **store}}
    return {
        "DEFAULT": {"enabled_backends": f"{store_name}:rbd", "show_image_direct_url": "True"},
        "glance_store": {"default_backend": store_name},
        store_name: store,
    }


def cinder(release, backends):
    """cinder.conf settings for RBD backends: ``backends`` maps a backend name to
    ``{pool, user, secret_uuid, backend_name, ceph_conf}``."""
    settings = {"DEFAULT": {}}
    for name, spec in sorted(backends.items()):
        rbd = {
            "rbd_pool": spec["pool"],
            "rbd_user": spec["user"],
            "rbd_secret_uuid": spec["secret_uuid"],
        }
        if release == "folsom":
            settings["DEFAULT"].update(volume_driver="cinder.volume.driver.RBDDriver", **rbd)
        else:
            settings[name] = {
                "volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                "volume_backend_name": spec["backend_name"],
                "rbd_ceph_conf": spec["ceph_conf"],
                **rbd,
            }
    if release != "folsom":
        settings["DEFAULT"]["enabled_backends"] = ",".join(sorted(backends))
    return settings


def nova(release, user, secret_uuid, images_pool=None, ceph_conf=None):
    """nova.conf settings: the rbd user and secret for volumes, and with ``images_pool``
    instance disks on RBD. Folsom's nova took both from cinder: nothing to set."""
    if release == "folsom":
        return {}
    libvirt = {"rbd_user": user, "rbd_secret_uuid": secret_uuid}
    if images_pool:
        libvirt.update(
            images_type="rbd", images_rbd_pool=images_pool, images_rbd_ceph_conf=ceph_conf
        )
    return {"libvirt": libvirt}

"""Drive the real glance_store RBD driver with a glance-api.conf hastack rendered.

Loads the file the way glance-api does (multistore: the current release's names),
stores a 1 MiB image in the default backend, reads it back, compares, and deletes it. Prints one JSON line. Runs as its
own process because oslo.config and the store registry are process-global.

Usage: ``python -m lab.glance_check /path/to/glance-api.conf``
"""

import io
import json
import os
import sys
import uuid


def main(config_file):
    import glance_store  # pylint: disable=import-outside-toplevel
    from glance_store import multi_backend  # pylint: disable=import-outside-toplevel
    from oslo_config import cfg  # pylint: disable=import-outside-toplevel

    conf = cfg.CONF
    # glance registers enabled_backends itself; glance_store does not.
    conf.register_opt(cfg.DictOpt("enabled_backends"))
    conf([], project="glance", default_config_files=[config_file])
    data = os.urandom(1024 * 1024)
    image_id = str(uuid.uuid4())
    multi_backend.register_store_opts(conf)
    multi_backend.create_multi_stores(conf)
    backend = conf.glance_store.default_backend
    store = multi_backend.get_store_from_store_identifier(backend)
    location, size, _, _, _ = store.add(image_id, io.BytesIO(data), len(data), "sha512")
    loc = glance_store.location.get_location_from_uri_and_backend(location, backend, conf=conf)
    got, got_size = store.get(loc)
    read_back = b"".join(got)
    store.delete(loc)
    print(
        json.dumps(
            {
                "backend": backend,
                "location": location,
                "size": size,
                "read_back_equal": read_back == data and got_size == len(data),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

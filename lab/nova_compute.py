"""Run Debian's nova-compute (``nova.cmd.compute.main``) from python3-nova alone.

Usage: ``/usr/bin/python3 lab/nova_compute.py --config-file nova.conf --config-file
compute-host1.conf``. The ``nova-compute`` package would pull libvirt and qemu; the lab
uses ``compute_driver = fake.FakeDriver`` and needs only the Python code.
"""

import sys

from nova.cmd import compute

if __name__ == "__main__":
    sys.exit(compute.main())

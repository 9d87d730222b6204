"""A real, isolated libvirtd for tests, the demo and the benchmarks.

A root libvirtd always uses /etc/libvirt/secrets and /run/libvirt, so it runs in its
own mount namespace (``unshare -m``) with private directories bind-mounted over
/etc/libvirt, /run, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt: the
host's libvirt state is never touched. Only the secret driver is loaded
(``LIBVIRT_DRIVER_DIR``). Its socket lives in the lab directory; connect with the URI
in the facts (``secret:///system?socket=...``). ``stop`` ends only the PID it started.

Usage::

    python -m lab.libvirtlab start DIR
    python -m lab.libvirtlab stop DIR
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from lab import procs

FACTS = "lab.json"
DRIVERS = "/usr/lib/x86_64-linux-gnu/libvirt/connection-driver"
SHADOWED = ("/etc/libvirt", "/run", "/var/lib/libvirt", "/var/cache/libvirt", "/var/log/libvirt")


class LabError(RuntimeError):
    pass


def start(d, timeout=20):
    """Start libvirtd in directory ``d``; return its facts (``uri``, ``pid``, ``dir``)."""
    d = os.path.abspath(d)
    if os.path.exists(os.path.join(d, FACTS)):
        raise LabError(f"a libvirt lab already lives in {d}: stop it first")
    sock_dir = os.path.join(d, "sock")
    drivers = os.path.join(d, "drivers")
    for sub in ("sock", "drivers", "log", *(p.strip("/").replace("/", "-") for p in SHADOWED)):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    driver = os.path.join(DRIVERS, "libvirt_driver_secret.so")
    if not os.path.exists(driver):
        raise LabError(f"{driver} is missing (install libvirt-daemon)")
    link = os.path.join(drivers, "libvirt_driver_secret.so")
    if not os.path.islink(link):
        os.symlink(driver, link)
    conf = os.path.join(d, "libvirtd.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        fh.write(
            f'unix_sock_dir = "{sock_dir}"\n'
            'unix_sock_rw_perms = "0700"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
            f'log_outputs = "3:file:{d}/log/libvirtd.log"\n'
        )
    mounts = []
    for path in SHADOWED:
        os.makedirs(path, exist_ok=True)  # a mount point must exist (usually does)
        mounts.append(
            f"mount --bind {shlex.quote(os.path.join(d, path.strip('/').replace('/', '-')))} {path}"
        )
    # In the new namespace: private bind mounts, then exec libvirtd (same PID as Popen's).
    script = " && ".join(mounts + [f"exec libvirtd -f {shlex.quote(conf)}"])
    env = dict(os.environ, LIBVIRT_DRIVER_DIR=drivers)
    with open(os.path.join(d, "log", "libvirtd.stdout"), "ab") as out:
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    with open(os.path.join(d, "pid"), "w", encoding="utf-8") as fh:
        fh.write(str(proc.pid))
    sock = os.path.join(sock_dir, "libvirt-sock")
    deadline = time.monotonic() + timeout
    # libvirtd can exit after starting; wait for its socket, not its return code.
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(d)
            raise LabError(f"libvirtd did not start (see {d}/log)")
        time.sleep(0.05)
    facts = {"dir": d, "pid": proc.pid, "uri": f"secret:///system?socket={sock}"}
    with open(os.path.join(d, FACTS), "w", encoding="utf-8") as fh:
        json.dump(facts, fh, indent=2)
    return facts


def stop(d):
    """Stop the libvirtd this lab started, by its PID."""
    d = os.path.abspath(d)
    path = os.path.join(d, "pid")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            procs.stop([int(fh.read().strip())])
        os.remove(path)
    try:
        os.remove(os.path.join(d, FACTS))
    except FileNotFoundError:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m lab.libvirtlab", description=__doc__.split("\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(json.dumps(start(args.dir), indent=2))
        else:
            stop(args.dir)
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

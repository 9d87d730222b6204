"""A private PostgreSQL instance for a lab: Debian's binaries run as the ``postgres``
user on a free loopback port, its socket and data in the lab directory.

Shared by the Neutron and Nova labs. ``init`` + ``launch`` start one; its process is
the caller's to record and stop (``stop``): every lab ends only the PIDs it started.
"""

import os
import shutil
import signal
import subprocess

from lab import procs

PG_BIN = "/usr/lib/postgresql/15/bin"


def as_postgres(argv, **kwargs):
    return subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        check=True,
        capture_output=True,
        text=True,
        **kwargs,
    )


def unreachable_parent(d):
    """The first parent of ``d`` the postgres user cannot search, or None."""
    parent = os.path.dirname(d)
    while parent != "/":
        if not os.stat(parent).st_mode & 0o001:
            return parent
        parent = os.path.dirname(parent)
    return None


def own_dirs(*dirs):
    """Create ``dirs`` for the postgres user (PostgreSQL wants its data dir 0700)."""
    for owned in dirs:
        os.makedirs(owned, mode=0o700, exist_ok=True)
        shutil.chown(owned, "postgres", "postgres")


def init(pgdata):
    """initdb a cluster in ``pgdata`` (trust: loopback and socket only, a lab database)."""
    as_postgres(
        [
            os.path.join(PG_BIN, "initdb"),
            "-D",
            pgdata,
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]
    )


def launch(pgdata, sock_dir, port, log_path):
    """Start the postmaster in its own session; returns its PID."""
    with open(log_path, "a", encoding="utf-8") as log:
        # fsync off: a lab database that is thrown away.
        pg = subprocess.Popen(  # pylint: disable=consider-using-with
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                os.path.join(PG_BIN, "postgres"),
                "-D",
                pgdata,
                "-p",
                str(port),
                "-k",
                sock_dir,
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return pg.pid


def ready(sock_dir, port):
    res = subprocess.run(
        [os.path.join(PG_BIN, "pg_isready"), "-h", sock_dir, "-p", str(port)],
        capture_output=True,
        check=False,
    )
    return res.returncode == 0


def psql(sock_dir, port, sql, db=None):
    """Run ``sql`` as the postgres superuser through the instance's socket."""
    return as_postgres(
        [
            os.path.join(PG_BIN, "psql"),
            "-h",
            sock_dir,
            "-p",
            str(port),
            "-U",
            "postgres",
            *(["-d", db] if db else []),
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ]
    )


def stop(pid, timeout=15):
    """Fast shutdown (SIGINT) of the postmaster ``pid`` and its session; SIGKILL after
    ``timeout`` s."""
    try:
        os.killpg(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    procs.until(lambda: not procs.alive(pid), timeout, 0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

"""Stopping the daemons a lab started, by PID only."""

import json
import os
import signal
import socket
import time

FACTS = "lab.json"


def read_facts(d):
    """A lab's facts file in ``d``, or None when no lab runs there."""
    try:
        with open(os.path.join(os.path.abspath(d), FACTS), encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(n):
    """``n`` distinct TCP ports free on 127.0.0.1 right now: held open together while
    chosen (ports picked one by one may come back the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def alive(pid):
    """True while ``pid`` runs (a zombie counts as gone; it is reaped if it is ours)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: fall back to /proc
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def until(condition, timeout, interval=0.2):
    """Poll ``condition`` until it holds (True) or ``timeout`` s pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def stop(pids, timeout=10):
    """SIGTERM these PIDs, wait up to ``timeout`` s for them all, then SIGKILL the rest."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)

"""A keyring whose owner, group or mode changes is never readable, at any system call,
by anyone whom neither the old nor the new setting lets read it (checked with strace
on the real syscalls the ceph_client module makes)."""

import grp
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOGROUP = grp.getgrnam("nogroup").gr_gid
KEYRING = "[client.glance]\n\tkey = AQAAAAAAAAAAABAARkFLRS1nbGFuY2Uta2V5IQ==\n"
SYSCALL = re.compile(r'^(?:\d+ +)?(f?ch(?:own|mod)(?:at)?)\((?:AT_FDCWD, )?"[^"]*", ([^)]*)\) = 0')


def readers(uid, gid, mode):
    """Who may read a file with this owner, group and mode."""
    out = set()
    if mode & 0o400:
        out.add(("user", uid))
    if mode & 0o040:
        out.add(("group", gid))
    if mode & 0o004:
        out.add("everyone")
    return out


def traced_meta_change(path, owner, group, mode):
    """Run ceph_client.keyring_meta_set under strace; the (uid, gid, mode) after each
    chown/chmod it made."""
    trace = f"{path}.strace"
    code = (
        "from tests.helpers import load_module; "
        "load_module('_modules', 'ceph_client').keyring_meta_set("
        f"{path!r}, {owner!r}, {group!r}, {mode!r})"
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO}:{os.path.join(REPO, '_utils')}")
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            trace,
            "-e",
            "trace=chown,fchownat,chmod,fchmodat,fchmod,fchown",
            sys.executable,
            "-c",
            code,
        ],
        check=True,
        cwd=REPO,
        env=env,
    )
    st = os.stat(path)
    with open(trace, encoding="utf-8") as fh:
        calls = [SYSCALL.match(line) for line in fh]
    return [m.groups() for m in calls if m], st


@pytest.mark.parametrize(
    "old, new",
    [
        ((0, 0, 0o640), ("root", "nogroup", "0600")),  # group changes, mode narrows
        ((0, NOGROUP, 0o600), ("root", "root", "0640")),  # group changes, mode widens
        ((0, 0, 0o640), ("root", "nogroup", "0640")),  # only the group changes
        ((0, NOGROUP, 0o640), ("root", "root", "0400")),  # both, in opposite directions
    ],
)
def test_keyring_is_never_readable_wider_than_old_or_new(tmp_path, old, new):
    path = str(tmp_path / "ceph.client.glance.keyring")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(KEYRING)
    os.chown(path, old[0], old[1])
    os.chmod(path, old[2])
    calls, st = traced_meta_change(path, *new)
    new_state = (0, grp.getgrnam(new[1]).gr_gid, int(new[2], 8))
    allowed = readers(*old) | readers(*new_state)
    uid, gid, mode = old
    assert calls, "no chown/chmod was traced"
    for name, args in calls:
        values = [a.strip() for a in args.split(",")]
        if "chown" in name:
            uid, gid = int(values[0]), int(values[1])
        else:
            mode = int(values[0], 8)
        assert readers(uid, gid, mode) <= allowed, (name, args, calls)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == new_state

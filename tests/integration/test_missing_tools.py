"""A node renders and applies hastack with only the tools its roles need: minions that
lack, in turn, the ceph CLI, the Pacemaker tools and the libvirt binding. What a role
does need and is missing is an error naming the package; nothing else changes.

A tool is taken away by running salt-call in a private mount namespace where an empty
file covers it, a binding by a module on PYTHONPATH that refuses to import: the rest
of the machine is the same real one."""

import os
import shutil

from tests.helpers import admin_ceph, apply, cluster_snapshot, states

CEPH_TOOLS = ("ceph", "rbd")
PACEMAKER_TOOLS = (
    "cibadmin",
    "crm_diff",
    "crm_verify",
    "crm_simulate",
    "crm_mon",
    "crm_attribute",
    "crm_resource",
)


def without_tools(minion, tmp_path, tools=(), bindings=()):
    """Make ``minion``'s salt-call run without ``tools`` (an empty, non-executable file
    is bind-mounted over each, in a private mount namespace: the minion cannot find or
    run them) and without the Python ``bindings`` (modules that refuse to import).
    Returns the environment to call it with."""
    absent = tmp_path / "absent"
    absent.write_text("")
    absent.chmod(0o644)
    mounts = [f"mount --bind {absent} {shutil.which(tool)}" for tool in tools]
    minion.wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-ec",
        "; ".join(mounts + ['exec "$@"']),
        "without-tools",
    ]
    env = dict(os.environ)
    if bindings:
        hide = tmp_path / "hide-bindings"
        hide.mkdir()
        for module in bindings:
            (hide / f"{module}.py").write_text(
                f'raise ImportError("{module} is not installed here")\n'
            )
        env["PYTHONPATH"] = str(hide)
    return env


def outcome(ret):
    """{state id: (result, comment)} of a state.apply return."""
    assert isinstance(ret, dict), ret
    return {sid: (result.result, result.comment) for sid, result in states(ret).items()}


def test_compute_without_ceph_cli_or_pacemaker_tools_applies_all_it_needs(
    make_minion, ceph_lab, tmp_path
):
    charlie = make_minion("charlie")
    env = without_tools(charlie, tmp_path, CEPH_TOOLS + PACEMAKER_TOOLS)
    rc, predicted = apply(charlie, test=True, env=env)
    assert rc == 0, charlie.last_output
    rc, ret = apply(charlie, env=env)
    assert rc == 0, charlie.last_output
    states = outcome(ret)
    assert all(result for result, _ in states.values()), states
    # The keyring, ceph.conf and the libvirt secret a compute needs are all there.
    assert {
        "hastack-ceph-keyring-cinder",
        "hastack-ceph-conf",
        "hastack-libvirt-secret-95aae3f5-ad4b-4ec1-8a37-4ca0b7a3d1f6",
    } <= set(states)
    assert sorted(os.listdir(charlie.conf_dir)) == ["ceph.client.cinder.keyring", "ceph.conf"]
    assert set(outcome(predicted)) == set(states)


def test_admin_minion_without_ceph_cli_manages_the_cluster_through_librados(
    make_minion, ceph_lab, tmp_path
):
    alice = make_minion("alice")
    rc, ret = apply(alice, env=without_tools(alice, tmp_path, CEPH_TOOLS))
    assert rc == 0, alice.last_output
    changed = {sid for sid, value in ret.items() if value["changes"]}
    assert any("hastack-ceph-user-glance" in sid for sid in changed), changed
    assert any(
        e["entity"] == "client.glance" for e in admin_ceph(ceph_lab, "auth", "ls")["auth_dump"]
    )


def test_admin_minion_without_ceph_cli_or_binding_is_told_what_to_install(
    make_minion, ceph_lab, tmp_path
):
    alice = make_minion("alice")
    before = cluster_snapshot(ceph_lab)
    rc, ret = apply(alice, env=without_tools(alice, tmp_path, CEPH_TOOLS, ["rados", "rbd"]))
    assert rc != 0
    states = outcome(ret)
    result, comment = states["hastack-ceph-cluster-reachable"]
    assert result is False
    assert (
        "the 'ceph' command is missing on this minion and Ceph's Python bindings do not "
        "import (install python3-rados and python3-rbd, or ceph-common)"
    ) in comment
    # Nothing that depends on the cluster was done; the cluster is as it was.
    assert not [
        sid
        for sid, (result, _) in states.items()
        if sid.startswith(("hastack-ceph-pool-", "hastack-ceph-user-")) and result
    ]
    assert cluster_snapshot(ceph_lab) == before


def test_controller_without_pacemaker_tools_is_told_and_the_rest_applies(make_minion, tmp_path):
    alice = make_minion("alice")
    rc, ret = apply(alice, env=without_tools(alice, tmp_path, PACEMAKER_TOOLS))
    assert rc != 0
    failed = {sid: comment for sid, (result, comment) in outcome(ret).items() if result is False}
    assert list(failed) == ["hastack-pacemaker"], failed
    assert "'cibadmin' is missing (install pacemaker-cli-utils)" in failed["hastack-pacemaker"]
    assert os.path.exists(os.path.join(alice.conf_dir, "ceph.client.glance.keyring"))


def test_compute_without_libvirt_binding_is_told_and_nothing_changes(make_minion, tmp_path):
    charlie = make_minion("charlie")
    rc, ret = apply(charlie, env=without_tools(charlie, tmp_path, bindings=["libvirt"]))
    assert rc != 0
    # Salt stops a run whose state functions are missing before any state runs: the
    # error names the package, and nothing else changes.
    assert outcome(ret) == {
        "hastack-libvirt-preflight": (
            False,
            (
                "State 'libvirt_secret.usable' was not found in SLS 'hastack.libvirt'\n"
                "Reason: 'libvirt_secret' __virtual__ returned False: libvirt_secret: the libvirt "
                "Python bindings are missing (install python3-libvirt, or pip install "
                "'saltext.hastack[libvirt]')\n"
            ),
        )
    }
    assert not os.path.exists(charlie.conf_dir)

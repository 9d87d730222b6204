"""The formula as template-formula has it: relocatable (served under another name),
parameters per OS family, leaf SLS that honour the roles when applied directly."""

import os

from lab import saltlocal
from tests.helpers import apply, states

REPO = saltlocal.REPO


def state_ids(ret):
    return set(states(ret))


def test_formula_works_under_another_name(make_minion, tmp_path):
    alice = make_minion("alice")
    rc, as_hastack = apply(alice, test=True)
    assert rc == 0, alice.last_output
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "cloudha").symlink_to(os.path.join(REPO, "salt", "hastack"))
    alice.configure(file_roots={"base": [str(roots)]})
    rc, as_cloudha = alice.call("state.apply", "cloudha", test=True)
    assert rc == 0, alice.last_output
    assert state_ids(as_cloudha) == state_ids(as_hastack)


def test_leaf_sls_applied_directly_honours_roles(make_minion):
    # charlie is compute only: Glance, Cinder and Pacemaker are not his, even by name.
    charlie = make_minion("charlie")
    for sls in ("hastack.glance", "hastack.cinder", "hastack.pacemaker"):
        rc, ret = charlie.call("state.apply", sls, test=True)
        assert rc == 0, (sls, charlie.last_output)
        # Nothing but a note that says why.
        (only,) = ret.values()
        assert only["changes"] == {} and "does not apply to this minion" in only["comment"], ret
        assert "(compute)" in only["comment"], only["comment"]
    # alice is a controller: the same SLS applied directly do their work.
    alice = make_minion("alice")
    rc, ret = alice.call("state.apply", "hastack.glance", test=True)
    assert rc == 0 and "hastack-glance-conf" in state_ids(ret), alice.last_output


def test_os_family_parameters_name_the_services(make_minion):
    alice = make_minion("alice", {"hastack": {"cinder": {"service": {"manage": True}}}})
    alice.configure(grains={"os_family": "RedHat", "init": "systemd"})
    rc, ret = apply(alice, test=True)
    assert rc is not None and isinstance(ret, dict), alice.last_output
    names = {
        result.name
        for sid, result in states(ret).items()
        if sid in ("hastack-cinder-service", "hastack-cinder-ceph-args")
    }
    assert "openstack-cinder-volume" in names, names
    assert any("/openstack-cinder-volume.service.d/" in name for name in names), names


def test_pillar_is_validated_once_per_run(make_minion):
    alice = make_minion("alice")
    rc, ret = alice.call("state.apply", "hastack", test=True, log_level="debug")
    assert rc == 0, alice.last_output
    # Seven SLS with states (and two that only include), each importing map.jinja...
    assert len({value["__sls__"] for value in ret.values()}) == 7
    assert alice.last_output.count("hastack: validating the hastack pillar of alice") == 1

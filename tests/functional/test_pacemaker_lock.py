"""The incident lock in the CIB (``pacemaker.lock``/``unlock``) on CIBs an operator left
(tests/data/cibs: the four-node layout and Listing 2 with pcs/crm_resource extras):
one holder at a time, a lease another holder may take over only when it ran out,
concurrent takers of which exactly one wins, and a configuration that stays exactly
as it was for ``pacemaker.configuration`` and ``crm_verify``."""

import concurrent.futures
import subprocess
import time

import pytest


def configuration(modules, cib):
    """The configuration as hastack maps it, without the CIB's write counters."""
    conf = modules.pacemaker.configuration(cib_file=cib)
    return {k: v for k, v in conf.items() if k not in ("epoch", "admin_epoch")}


def crm_verify(cib):
    res = subprocess.run(["crm_verify", "--xml-file", cib], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["four-node.xml", "listing2-operator.xml"])
def test_one_holder_at_a_time_and_the_configuration_is_untouched(modules, corpus, name):
    cib = corpus(name)
    before = configuration(modules, cib)
    got = modules.pacemaker.lock("incident-ctl-a", "master1", value="i-1", cib_file=cib)
    assert got["acquired"] and got["holder"] == "master1" and got["value"] == "i-1"
    crm_verify(cib)
    assert configuration(modules, cib) == before

    # Another master: refused, told who holds it and for which incident.
    other = modules.pacemaker.lock("incident-ctl-a", "master2", value="i-2", cib_file=cib)
    assert other == {
        "acquired": False,
        "holder": "master1",
        "value": "i-1",
        "renewed": got["renewed"],
    }
    # The holder again (a restarted master resuming): renewed, still its.
    again = modules.pacemaker.lock("incident-ctl-a", "master1", value="i-1", cib_file=cib)
    assert again["acquired"] and again["value"] == "i-1"
    # Another node's lock is independent.
    assert modules.pacemaker.lock("incident-ctl-b", "master2", cib_file=cib)["acquired"]

    assert modules.pacemaker.unlock("incident-ctl-a", "master2", cib_file=cib) is False
    assert modules.pacemaker.unlock("incident-ctl-a", "master1", cib_file=cib) is True
    assert modules.pacemaker.unlock("incident-ctl-a", "master1", cib_file=cib) is False
    assert modules.pacemaker.lock("incident-ctl-a", "master2", cib_file=cib)["acquired"]
    assert configuration(modules, cib) == before


def test_a_lock_not_renewed_within_its_lease_is_taken_over(modules, corpus):
    cib = corpus("four-node.xml")
    modules.pacemaker.lock("incident-ctl-a", "master1", value="i-1", cib_file=cib)
    time.sleep(2.1)
    kept = modules.pacemaker.lock("incident-ctl-a", "master2", lease=300, cib_file=cib)
    assert not kept["acquired"]
    taken = modules.pacemaker.lock("incident-ctl-a", "master2", value="i-2", lease=1, cib_file=cib)
    assert taken["acquired"] and taken["holder"] == "master2" and taken["value"] == "i-2"
    crm_verify(cib)


def test_concurrent_takers_exactly_one_wins(modules, corpus):
    cib = corpus("listing2-operator.xml")
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        results = list(
            pool.map(
                lambda i: modules.pacemaker.lock(
                    "incident-alice", f"master{i}", value=f"i-{i}", cib_file=cib
                ),
                range(6),
            )
        )
    winners = [r for r in results if r["acquired"]]
    assert len(winners) == 1, results
    assert all(r["holder"] == winners[0]["holder"] for r in results)


def test_a_bad_lock_name_is_refused(modules, corpus):
    from salt.exceptions import SaltInvocationError  # pylint: disable=import-outside-toplevel

    with pytest.raises(SaltInvocationError, match="^name:"):
        modules.pacemaker.lock("bad name'", "m", cib_file=corpus("four-node.xml"))


def test_pacemaker_configured_with_remove_undeclared_keeps_the_lock(modules, states, corpus):
    from lab import pcmklab  # pylint: disable=import-outside-toplevel

    cib = corpus("listing2-operator.xml")
    modules.pacemaker.lock("incident-alice", "master1", value="i-1", cib_file=cib)
    pcmk = pcmklab.listing2()["hastack"]["pacemaker"]
    config = {k: v for k, v in pcmk.items() if k != "nodes"}
    for test in (True, False):
        ret = states.pacemaker.configured(
            name="t",
            config=config,
            nodes=pcmk["nodes"],
            cib_file=cib,
            remove_undeclared=True,
            test=test,
        )
        assert ret.result is not False, ret
        assert not [k for k in ret.changes if "holder" in k or "lock" in k], ret.changes
    held = modules.pacemaker.lock("incident-alice", "master2", cib_file=cib)
    assert not held["acquired"] and held["holder"] == "master1" and held["value"] == "i-1"

"""The one state skeleton every hastack state ends in."""

from salt.exceptions import CommandExecutionError

from hastack_utils import states

CHANGES = {"pool": {"old": None, "new": "images"}, "application": {"old": None, "new": "rbd"}}


def run(write, remaining, test=False, changes=CHANGES):
    return states.converge(
        states.new_ret("images"),
        dict(changes),
        write,
        remaining,
        test,
        "Pool images created",
        "Pool images is as wanted",
    )


def test_no_difference_is_true_without_changes_even_under_test():
    for test in (True, False):
        ret = run(lambda: 1 / 0, lambda: 1 / 0, test=test, changes={})
        assert ret["result"] is True and ret["changes"] == {}


def test_test_mode_predicts_and_writes_nothing():
    ret = run(lambda: 1 / 0, lambda: 1 / 0, test=True)
    assert ret["result"] is None and ret["changes"] == CHANGES


def test_a_write_that_fails_half_way_reports_only_what_the_re_read_confirms():
    def write():
        raise CommandExecutionError("rbd pool init images failed")

    ret = run(write, lambda: {"application"})
    assert ret["result"] is False and ret["comment"] == "rbd pool init images failed"
    assert ret["changes"] == {"pool": CHANGES["pool"]}


def test_a_write_that_does_not_read_back_fails_naming_what_differs():
    ret = run(lambda: None, lambda: ["application"])
    assert ret["result"] is False and ret["comment"].endswith("still differs in: application")


def test_a_write_can_report_what_it_really_did():
    made = states.Made(address={"old": None, "new": "192.0.2.7"})
    ret = states.converge(
        states.new_ret("web"),
        {"address": {"old": None, "new": "(new)"}},
        lambda: made,
        lambda: set(),
        False,
        lambda: "web has floating IP 192.0.2.7",
        "web has one",
    )
    assert ret["changes"] == {"address": {"old": None, "new": "192.0.2.7"}}
    assert ret["comment"] == "web has floating IP 192.0.2.7"

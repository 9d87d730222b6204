"""
The one skeleton of every hastack state: compare, predict under test, write, re-read.

A state module reads what is there and computes ``changes`` (``{what: {old, new}}``),
then hands over to ``converge`` with two callables: ``write()`` makes the changes and
``remaining()`` reads back and returns what still differs (the keys of ``changes``
not yet true). A ``write()`` that learns what it really did (an address Neutron
picked) returns those changes, wrapped in ``Made``, to report instead of the predicted
ones; ``done_comment`` may then be a callable that names them. No difference -> ``result: True`` and no changes, also under test;
under test -> ``result: None`` with the prediction; else write, re-read, and report
only the changes the re-read confirms, also when the write failed half-way.
"""

from salt.exceptions import CommandExecutionError, SaltInvocationError

ERRORS = (CommandExecutionError, SaltInvocationError)


class Made(dict):
    """What a ``write()`` really changed, when that differs from the prediction (an
    address Neutron picked): return it wrapped in this, and it is what is reported."""


def new_ret(name):
    """A state return that has changed nothing yet."""
    return {"name": name, "result": True, "changes": {}, "comment": ""}


def failed(ret, err):
    """``ret`` as a failure with the error's text."""
    ret.update(result=False, comment=str(err))
    return ret


def converge(
    ret, changes, write, remaining, test, done_comment, same_comment, predicted_comment=None
):
    """Finish a state (see the module docs); ``test`` is ``__opts__["test"]``."""
    if not changes:
        ret["comment"] = same_comment
        return ret
    if test:
        ret.update(
            result=None,
            changes=changes,
            comment=predicted_comment or f"{done_comment} (test: would be)",
        )
        return ret
    error = None
    try:
        made = write()
        if isinstance(made, Made):
            changes = dict(made)
    except ERRORS as err:
        error = str(err)
    try:
        left = set(remaining())
    except ERRORS as err:
        left, error = set(changes), error or str(err)
    ret["changes"] = {what: change for what, change in changes.items() if what not in left}
    if error:
        ret.update(result=False, comment=error)
    elif left:
        ret.update(
            result=False,
            comment=f"{done_comment() if callable(done_comment) else done_comment}, but a re-read "
            f"still differs in: {', '.join(sorted(left))}",
        )
    else:
        ret["comment"] = done_comment() if callable(done_comment) else done_comment
    return ret

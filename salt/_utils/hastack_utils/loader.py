"""Glue that hastack's state modules share with Salt's loader."""


def unavailable(funcs, fun):
    """Why the execution function ``fun`` is not in ``funcs`` (a state module's
    ``__salt__``): the execution module's own ``__virtual__`` reason, which names what
    to install, when the loader kept it."""
    module = fun.split(".")[0]
    loader = funcs.value() if hasattr(funcs, "value") else funcs
    reason = (getattr(loader, "missing_modules", None) or {}).get(module)
    return reason or f"'{fun}' is not available"

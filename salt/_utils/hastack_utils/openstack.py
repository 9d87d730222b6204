"""
The OpenStack connection and request policy that hastack's OpenStack modules share
(``floating_ip``, ``neutron_l3``, ``nova_compute``): one openstacksdk connection per run and cloud,
bounded retries with backoff on connection errors and 5xx answers, errors that say
what failed. The modules make the requests; this only shapes how.
"""

import json
import logging
import threading
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

try:
    import openstack
    import openstack.exceptions
    from keystoneauth1 import exceptions as ksa_exceptions

    HAS_SDK = True
except ImportError:
    HAS_SDK = False

log = logging.getLogger(__name__)

# Bounded: at most this many tries of one request, backoff doubling from RETRY_BASE.
RETRIES = 4
RETRY_BASE = 0.25
# Per-request timeout (seconds): a Neutron that does not answer becomes an error.
API_TIMEOUT = 30

# Worker threads of one call (floating_ip.reissue) share the run's connection.
_CONNECTIONS_LOCK = threading.Lock()


def cloud_setting(cloud):
    """``cloud`` (an argument, else ``hastack:openstack:cloud``) checked."""
    if not cloud:
        raise SaltInvocationError(
            "cloud: no OpenStack cloud given (argument cloud=, or pillar hastack:openstack:cloud: "
            "a clouds.yaml entry name or openstacksdk connection arguments)"
        )
    if not isinstance(cloud, (str, dict)):
        raise SaltInvocationError(
            "hastack:openstack:cloud: must be a clouds.yaml entry name or a dict"
        )
    return cloud


def connection(cloud, cache, api_timeout=API_TIMEOUT):
    """The openstacksdk connection to ``cloud``, made on first use and kept in ``cache``
    (the calling module's ``__context__``: one connection per run). ``api_timeout``
    bounds each request (seconds)."""
    key = f"hastack.openstack.{api_timeout}." + (
        cloud if isinstance(cloud, str) else json.dumps(cloud, sort_keys=True)
    )
    with _CONNECTIONS_LOCK:
        if key not in cache:
            args = {"cloud": cloud} if isinstance(cloud, str) else dict(cloud)
            args.setdefault("api_timeout", api_timeout)
            try:
                cache[key] = openstack.connect(**args)
            except openstack.exceptions.SDKException as err:
                raise CommandExecutionError(
                    f"cannot set up the OpenStack connection (hastack:openstack:cloud): {err}"
                ) from err
        return cache[key]


def unreachable(err):
    return isinstance(
        err,
        (
            ksa_exceptions.ConnectFailure,
            ksa_exceptions.ConnectTimeout,
            ksa_exceptions.DiscoveryFailure,
        ),
    )


def transient(err):
    if unreachable(err):
        return True
    status = getattr(err, "status_code", None)
    return (
        isinstance(err, openstack.exceptions.HttpException) and status is not None and status >= 500
    )


class DeadlinePassed(CommandExecutionError):
    """The call's deadline passed before this request could be (re)sent."""


def call(what, fn, *args, deadline=None, service="Neutron", **kwargs):
    """``fn(*args, **kwargs)`` retried on connection errors and 5xx answers (bounded);
    other failures become CommandExecutionError naming ``what`` (and the ``service``
    when it is unreachable). With ``deadline`` (a ``time.monotonic()`` instant) no
    attempt starts and no backoff runs past it."""
    for attempt in range(RETRIES):
        if deadline is not None and time.monotonic() >= deadline:
            raise DeadlinePassed(f"{what}: not done, the call's deadline passed")
        try:
            return fn(*args, **kwargs)
        except openstack.exceptions.PreconditionFailedException:
            raise
        except Exception as err:  # pylint: disable=broad-except
            if transient(err) and attempt < RETRIES - 1:
                delay = RETRY_BASE * 2**attempt
                if deadline is not None:
                    delay = min(delay, max(0.0, deadline - time.monotonic()))
                log.info("hastack: %s failed (%s); retry in %.2f s", what, err, delay)
                time.sleep(delay)
                continue
            if unreachable(err):
                raise CommandExecutionError(
                    f"{service} is unreachable ({what}, {RETRIES} tries): {err}"
                ) from err
            if isinstance(err, openstack.exceptions.SDKException):
                raise CommandExecutionError(f"{what}: {neutron_message(err)}") from err
            raise
    raise AssertionError("unreachable")


def neutron_message(err):
    details = getattr(err, "details", None)
    return details or str(err)


def one(items, what, arg):
    """The one item of ``items``; none or several is an error naming ``arg``."""
    items = list(items)
    if not items:
        raise SaltInvocationError(f"{arg}: no {what}")
    if len(items) > 1:
        ids = ", ".join(sorted(i.id for i in items))
        raise SaltInvocationError(
            f"{arg}: {what} is ambiguous ({len(items)} match); use an ID: {ids}"
        )
    return items[0]

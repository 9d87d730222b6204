"""Session-wide test setup.

pytest-salt-factories binds its log server and event listener to 0.0.0.0 by default;
this project keeps every test service on loopback, so both are moved to 127.0.0.1.
"""

import logging

import pytest
from saltfactories.plugins.event_listener import EventListener

# Salt daemons stopped at the end of a test flush their log handlers into streams pytest
# has already closed; that is noise, not a failure.
logging.raiseExceptions = False


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    log_server = config.pluginmanager.get_plugin("saltfactories-log-server")
    if log_server is not None:
        log_server.log_host = "127.0.0.1"


@pytest.fixture(scope="session")
def event_listener():
    listener = EventListener()
    listener.host = "127.0.0.1"
    listener.address = f"tcp://127.0.0.1:{listener.port}"
    with listener:
        yield listener

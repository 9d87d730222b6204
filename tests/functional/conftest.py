"""The functional tier: hastack's modules through Salt's loader in the test process
(milliseconds a call, no salt-call start-up), loaded by pytest-salt-factories'
``Loaders`` as saltext test suites do; state calls return its ``StateResult`` objects.
Against the real Pacemaker tools on CIB files. One set of loaders per session."""

import os
import shutil

import pytest
import salt.config
from saltfactories.utils.functional import Loaders

from lab import saltlocal

CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "cibs")


@pytest.fixture(scope="session")
def loaders(tmp_path_factory):
    """The loaders of a minion configured as the lab's (this repository's module, state
    and utils directories) with an empty pillar."""
    minion = saltlocal.Minion(
        str(tmp_path_factory.mktemp("loader")), "functional", {}, example=False
    )
    opts = salt.config.minion_config(os.path.join(minion.config_dir, "minion"))
    opts["pillar"] = {}
    return Loaders(opts)


@pytest.fixture
def modules(loaders):
    return loaders.modules


@pytest.fixture
def states(loaders):
    return loaders.states


@pytest.fixture
def corpus(tmp_path):
    """A private copy of a corpus CIB (tests/data/cibs, built with pcs, crm_resource,
    crm_attribute and cibadmin by tests/cib_corpus.py)."""

    def copy(name):
        path = str(tmp_path / name)
        shutil.copy(os.path.join(CORPUS, name), path)
        return path

    return copy

"""The functional tier: hastack's modules through the Salt loader in the test process
(milliseconds a call, no salt-call start-up), against the real Pacemaker tools on CIB
files. One loader per session."""

import os
import shutil

import pytest

from lab import saltlocal

CORPUS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "cibs")


@pytest.fixture(scope="session")
def loader(tmp_path_factory):
    """``(execution functions, state functions)`` of a minion with an empty pillar."""
    minion = saltlocal.Minion(str(tmp_path_factory.mktemp("loader")), "functional", {},
                              example=False)
    return minion.loader({})


@pytest.fixture
def corpus(tmp_path):
    """A private copy of a corpus CIB (tests/data/cibs, built with pcs, crm_resource,
    crm_attribute and cibadmin by tests/cib_corpus.py)."""

    def copy(name):
        path = str(tmp_path / name)
        shutil.copy(os.path.join(CORPUS, name), path)
        return path

    return copy

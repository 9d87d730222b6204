# hastack: `make demo` and `make test` are the two commands an operator needs; each
# runs `make setup` first, so either works alone on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the lab and the modules use (ceph-common gives the ceph/rbd CLIs).
DEB_PACKAGES := ceph-mon ceph-osd ceph-common python3-venv
PYTEST_ARGS ?=

.PHONY: setup demo test unit integration bench lab-start lab-stop clean

setup: $(VENV)/.requirements-installed
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(VENV)/.requirements-installed: requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "setup: installing Python requirements into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

demo: setup
	$(PY) -m lab.demo

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.ceph_client

lab-start: setup
	$(PY) -m lab.cephlab start .lab/ceph

lab-stop:
	$(PY) -m lab.cephlab stop .lab/ceph

clean: lab-stop
	rm -rf .lab

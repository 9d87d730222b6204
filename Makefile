# hastack: `make demo` and `make test` are the two commands an operator needs; each
# runs `make setup` first, so either works alone on a fresh Debian 12 machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# Debian packages the lab and the modules use: the ceph/rbd CLIs and a Ceph cluster,
# libvirtd and virsh (the benchmark's peer), what libvirt-python builds against, the
# rados/rbd Python bindings that glance_store needs (Debian ships them only), the
# Pacemaker tools, corosync + Pacemaker for the live 3-node lab (Dummy agents), crm
# shell and pcs (the Pacemaker benchmark's peers), and neutron-server with PostgreSQL
# for the floating-IP lab, an MDS and ceph-fuse for the CephFS instances directory (the
# kernel client cannot load here: no ceph module, no modprobe), and the lab Nova
# (lab/novalab.py): nova-api/conductor/scheduler, placement under uwsgi, glance-api and
# RabbitMQ; python3-nova holds nova-compute's code (the nova-compute package would pull
# libvirt and qemu; the lab runs the fake driver).
DEB_PACKAGES := ceph-mon ceph-osd ceph-common ceph-mds ceph-fuse python3-venv python3-rados python3-rbd python3-cephfs \
	libvirt-daemon libvirt-clients libvirt-dev pkg-config pacemaker-cli-utils \
	pacemaker corosync pacemaker-resource-agents crmsh pcs \
	neutron-server postgresql python3-psycopg2 \
	python3-nova python3-placement nova-api nova-conductor nova-scheduler placement-api \
	glance-api rabbitmq-server uwsgi-plugin-python3
# The venv gets Debian's rados/rbd/cephfs bindings (and nothing else from dist-packages).
SITE_PACKAGES = $(VENV)/lib/python3.11/site-packages
PYTEST_ARGS ?=

.PHONY: .deb-packages setup demo test lint unit integration bench drill lab-start lab-stop clean
NODE ?= alice

setup: .deb-packages $(VENV)/.requirements-installed

# A policy-rc.d (unless one exists) keeps postinsts, rabbitmq-server's among them,
# from starting system services: the labs start their own, by PID.
.deb-packages:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && guard=1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  rc=$$?; [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; exit $$rc; \
	fi

# Order-only: the Debian packages come first (libvirt-python builds against libvirt-dev).
$(VENV)/.requirements-installed: requirements.txt | .deb-packages
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Debian ships rados/rbd for CPython 3.11 only"'
	@ln -sf /usr/lib/python3/dist-packages/rados.cpython-311-x86_64-linux-gnu.so \
	        /usr/lib/python3/dist-packages/rbd.cpython-311-x86_64-linux-gnu.so \
	        /usr/lib/python3/dist-packages/cephfs.cpython-311-x86_64-linux-gnu.so $(SITE_PACKAGES)/
	@echo "setup: installing Python requirements into $(VENV)"
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	@touch $@

demo: setup
	$(PY) -m lab.demo

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The pre-commit checks (.pre-commit-config.yaml), run with the venv's tools.
lint: setup
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(PY) tools/check_docs.py
	find salt/hastack pillar -name '*.sls' -print0 | xargs -0 $(VENV)/bin/salt-lint

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench.ceph_client
	$(PY) -m bench.libvirt_secret
	$(PY) -m bench.pacemaker
	$(PY) -W ignore -m bench.floating_ip
	$(PY) -W ignore -m bench.failover
	$(PY) -W ignore -m bench.evacuation
	$(PY) -W ignore -m bench.rollout

# What losing NODE would do, on the self-healing lab (a real master, minions inside the
# live Pacemaker nodes, the lab Neutron): the plan as a table; nothing is changed.
drill: setup
	$(PY) -W ignore -m lab.failoverlab drill $(NODE)

lab-start: setup
	$(PY) -m lab.cephlab start .lab/ceph

lab-stop:
	$(PY) -m lab.cephlab stop .lab/ceph

clean: lab-stop
	rm -rf .lab

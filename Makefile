# Everything a fresh machine needs: `make run`, `make test`, `make bench`, `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
APT_PACKAGES := chromium wrk nginx npm
# The OpenID Connect client library the single-page-app test drives (tests/test_browser_oidc.py):
# pinned, checked against the registry's integrity of that version, vendored by `make test`.
OIDC_CLIENT_TS_VERSION := 3.5.0
OIDC_CLIENT_TS_INTEGRITY := sha512-l2q8l9CTCTOlbX+AnK4p3M+4CEpKpyQhle6blQkdFhm0IsBqsxm15bYaSa11G7pWdsYr6epdsRZxJpCyCRbT8A==
OIDC_CLIENT_TS_DIR := tests/assets/oidc-client-ts
OIDC_CLIENT_TS := $(OIDC_CLIENT_TS_DIR)/oidc-client-ts.min.js

.PHONY: install run test lint format bench system-deps vendor clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e '.[embedded,test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests and the benchmark drive: headless Chromium, wrk, nginx, and npm
# (which fetches oidc-client-ts below).
# Each package is named like its command; nginx's is in /usr/sbin. nginx's postinst may
# fail to start the system service (port 80 taken, no init): the tests start their own,
# so only a command still missing after apt-get is an error.
system-deps:
	@missing=""; \
	for tool in $(APT_PACKAGES); do \
	  PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null \
	    || echo "apt-get reported an error; checking the commands"; \
	  for tool in $$missing; do \
	    PATH="$$PATH:/usr/sbin" command -v $$tool >/dev/null 2>&1 \
	      || { echo "still missing: $$tool"; exit 1; }; \
	  done; \
	fi

# oidc-client-ts's browser bundle (an IIFE defining the global `oidc`, jwt-decode inside) and
# its licence, from the npm registry: the tarball must have the pinned sha512, whatever the
# registry says now. Nothing is fetched at test time.
$(OIDC_CLIENT_TS): | system-deps
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	cd "$$tmp" && npm pack --silent oidc-client-ts@$(OIDC_CLIENT_TS_VERSION) >/dev/null && \
	tarball=oidc-client-ts-$(OIDC_CLIENT_TS_VERSION).tgz && \
	got=$$($(PYTHON) -c 'import base64, hashlib, sys; \
	  print("sha512-" + base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' \
	  "$$tarball") && \
	if [ "$$got" != "$(OIDC_CLIENT_TS_INTEGRITY)" ]; then \
	  echo "oidc-client-ts $(OIDC_CLIENT_TS_VERSION): integrity $$got is not the pinned one"; exit 1; \
	fi && \
	tar -xzf "$$tarball" package/dist/browser/oidc-client-ts.min.js package/LICENSE && \
	cd - >/dev/null && mkdir -p $(OIDC_CLIENT_TS_DIR) && \
	cp "$$tmp/package/LICENSE" $(OIDC_CLIENT_TS_DIR)/LICENSE && \
	cp "$$tmp/package/dist/browser/oidc-client-ts.min.js" $@.part && mv $@.part $@
	@echo "vendored oidc-client-ts $(OIDC_CLIENT_TS_VERSION) into $(OIDC_CLIENT_TS_DIR)"

vendor: $(OIDC_CLIENT_TS)

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py

test: install system-deps vendor lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache $(OIDC_CLIENT_TS_DIR)

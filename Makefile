# Everything a fresh machine needs: `make run`, `make test`, `make bench`, `make lint`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
APT_PACKAGES := chromium wrk nginx

.PHONY: install run test lint format bench system-deps clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --quiet -e '.[embedded,test]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests and the benchmark drive: headless Chromium, wrk, and nginx.
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

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py

test: install system-deps lint
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
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

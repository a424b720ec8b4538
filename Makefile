# mailbot — the two commands a newcomer needs:
#   make demo   set up .venv and run the main job on the embedded default
#   make test   set up .venv with test deps and system packages, run the tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test venv venv-test system-deps check-rules bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e .

venv-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

# Dovecot (IMAP) for the integration tests, from Debian's packages.
system-deps:
	@if ! command -v dovecot >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing dovecot-imapd from Debian's packages"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null; \
	  else \
	    echo "dovecot is absent and cannot be installed (need root and apt-get): IMAP integration tests will be skipped"; \
	  fi; \
	fi

demo: venv
	$(BIN)/python -m mailbot demo

test: venv-test system-deps
	$(BIN)/mailbot check-rules rules
	$(BIN)/python -m pytest -q

check-rules: venv
	$(BIN)/mailbot check-rules rules

bench: venv
	$(BIN)/python bench/triage.py

clean:
	rm -rf $(VENV) var build *.egg-info

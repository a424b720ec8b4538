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

# Debian packages the tests use: Dovecot (a real IMAP server for the
# integration tests) and Chromium (renders the staff digest to PNG).
SYSTEM_PACKAGES = dovecot-imapd chromium fonts-dejavu-core
system-deps:
	@missing=""; \
	command -v dovecot >/dev/null 2>&1 || missing="$$missing dovecot-imapd"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium fonts-dejavu-core"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing from Debian's packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "absent and not installable here (need root and apt-get):$$missing — the tests that need them skip"; \
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

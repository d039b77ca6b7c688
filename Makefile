# voiceos: `make run` starts the assistant, `make say TEXT="..."` answers in speech, `make test` runs the suite.
# Both create .venv and install whatever is missing first (system packages through apt-get when run as root or
# with sudo). Second runs only check stamps and are quick.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TEXT   ?= Hello! Who are you?
PIP_VERSION := 26.3
UV_VERSION  := 0.13.9

# Debian/Ubuntu packages. Runtime: PortAudio for sounddevice; g++ and cmake build llama.cpp, the embedded LM's decoder
# (llama-cpp-python ships as source: pip builds it once per machine and keeps the wheel in its cache). Tests also start a
# private PulseAudio server with virtual devices (pulseaudio, pulseaudio-utils, ALSA's pulse plugin) and a real systemd
# user manager.
SYSTEM_PACKAGES      := libportaudio2 gcc g++ cmake
SYSTEM_TEST_PACKAGES := $(SYSTEM_PACKAGES) pulseaudio pulseaudio-utils libasound2-plugins systemd

.PHONY: run say listen bench install-service install install-test lock system-deps system-deps-test test lint format doctor clean

run: install
	$(BIN)/voiceos run

say: install
	$(BIN)/voiceos say "$(TEXT)"

bench: install-test
	$(BIN)/voiceos bench

install-service: install
	$(BIN)/voiceos install-service

listen: install
	$(BIN)/voiceos listen "$(FILE)"

doctor: install
	$(BIN)/voiceos doctor

install: system-deps $(VENV)/.installed
install-test: system-deps-test $(VENV)/.installed-test

# Every install path installs requirements.lock: the whole tree, exact versions and hashes, for Linux x86-64 and
# every Python the README names. --no-deps: the lock is already resolved, so pip adds nothing of its own choosing.
# Then voiceos itself (editable, its dependencies are in the lock) and the self-check: every heavy library the pipeline
# loads is imported once, and a pair that does not load together stops the install with a one-line message.
$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	sh packaging/pip-install-lock.sh $(BIN)/python requirements.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m voiceos.selfcheck
	@touch $@

# The lock holds the test and coqui extras too; `make test` adds the server extra of llama-cpp-python, the LM server the
# tests of dialogue.backend: openai run against.
$(VENV)/.installed-test: $(VENV)/.installed packaging/test-server.lock
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r packaging/test-server.lock
	@touch $@

# Refresh requirements.lock on purpose (a new dependency in pyproject.toml, or to take upstream releases), then run
# `make test` on the result before committing it. uv resolves (uv pip compile; pip-tools' format, read by plain pip).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==$(UV_VERSION)
	$(BIN)/uv pip compile pyproject.toml packaging/lock.in --extra test --extra coqui --universal \
	  --python-version 3.10 --generate-hashes --override packaging/lock-overrides.txt \
	  --custom-compile-command "make lock" -o requirements.lock
	$(BIN)/uv pip compile packaging/test-server.in -c requirements.lock --universal --python-version 3.10 \
	  --generate-hashes --custom-compile-command "make lock" -o packaging/test-server.lock

system-deps:
	@$(call apt_install,$(SYSTEM_PACKAGES))
system-deps-test:
	@$(call apt_install,$(SYSTEM_TEST_PACKAGES))

# Install the Debian packages that dpkg does not report as installed; explain what to run when we cannot.
define apt_install
missing=""; for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  if ! command -v apt-get >/dev/null; then echo "please install:$$missing (no apt-get here)"; exit 1; fi; \
  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; \
  else echo "please run as root: apt-get install$$missing"; exit 1; fi; \
  echo "installing system packages:$$missing"; \
  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
fi
endef

# mypy reads its files and options from pyproject.toml ([tool.mypy]).
test: install-test
	$(BIN)/ruff check voiceos tests benchmarks
	$(BIN)/ruff format --check voiceos tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: install-test
	$(BIN)/ruff check voiceos tests benchmarks
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format voiceos tests benchmarks
	$(BIN)/ruff check --fix voiceos tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info

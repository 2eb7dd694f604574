# deepkeys: two entry points on a fresh Debian / Raspberry Pi OS machine.
#   make demo   install what the device needs, then accompany the bundled melodies
#   make test   install everything (host tools included), lint, then run the whole suite
#   make lint   ruff (lint and format) and mypy over the whole tree
#   make install   on the Pi: the service user, config and systemd unit too
#   make test-arm64   as root: the Pi install and device tests in an emulated arm64 root (arm64/)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_OUT ?= demo-out

# The device: audio, synth, SoundFont, and a compiler for pyalsaaudio.
APT_DEVICE := python3-venv python3-dev gcc libasound2-dev libasound2-plugins \
              libfluidsynth3 timgm6mb-soundfont
# The tests add the JACK server (virtual MIDI ports), MMA, an SSH server and systemd
# (systemd-analyze verifies the units and scores their sandboxes).
APT_TEST   := $(APT_DEVICE) jackd2 mma openssh-server openssh-client systemd

# The harmony model and the genre library, retrained from scratch (about 75 min on a 2-core CPU;
# see models/README.md).
STYLE_GENRES := rock pop jazz bossa blues funk country

.PHONY: demo test lint library install deps-device deps-test clean test-arm64

demo: $(VENV)/.device-installed
	$(BIN)/deepkeys demo --out $(DEMO_OUT)

test: lint
	$(BIN)/python -m pytest tests hil

# The firmware on the Pi's architecture, under qemu-user (root; slow: see arm64/README.md).
# The x86 venv generates the notes the arm64 ones are compared with.
test-arm64: $(VENV)/.device-installed
	arm64/test-arm64.sh

# mypy reads the packages through a link tree: device/, host/ and hil/ are deepkeys.device,
# deepkeys.host and deepkeys.hil only once installed (pyproject's package-dir).
MYPY_PATH := .cache/mypy-path
lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p $(MYPY_PATH)/deepkeys
	for d in device host hil; do ln -sfn ../../../$$d $(MYPY_PATH)/deepkeys/$$d; done
	$(BIN)/mypy -p deepkeys.device -p deepkeys.host -p deepkeys.hil
	$(BIN)/mypy tests

# The appliance on a Pi: the code in /opt/deepkeys, then user, config and service.
install: $(VENV)/.device-installed
	$(SUDO) $(BIN)/deepkeys install

library: $(VENV)/.test-installed
	$(BIN)/deepkeys train-harmony --epochs 40 --seed 0
	$(BIN)/deepkeys train --genre chorale --epochs 150 --seed 0 && $(BIN)/deepkeys export --genre chorale
	$(BIN)/deepkeys train --genre ballad --epochs 20 --seed 0 && $(BIN)/deepkeys export --genre ballad
	for g in $(STYLE_GENRES); do \
	  $(BIN)/deepkeys train --genre $$g --epochs 20 --seed 0 && $(BIN)/deepkeys export --genre $$g || exit 1; \
	done
	$(BIN)/deepkeys export --genre symphony

deps-device: $(VENV)/.device-installed
deps-test: $(VENV)/.test-installed

$(VENV)/.device-installed: pyproject.toml
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_DEVICE)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[device]'
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(SUDO) apt-get update -q
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(APT_TEST)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.device-installed $@

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

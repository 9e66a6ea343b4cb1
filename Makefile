# The two commands a learner needs: `make lab` and `make test`. Both set everything up first.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.course-installed
KERNEL := dl-perf-course
# The same release as the bindings pinned in requirements.txt.
TENSORRT := tensorrt-cu13==11.4.0.106
# TensorRT 10's bindings: read from their wheel by chapter 7's name check, never installed (the module has the same
# name as 11.4's). The same pin as TENSORRT_10_BINDINGS in helpers/ch07_tools/tensorrt_names.py, which downloads it
# itself when this cache lacks it.
TENSORRT10_BINDINGS := tensorrt-cu13-bindings==10.16.1.11
BINDINGS_CACHE := .cache/tensorrt-bindings
BINDINGS_DOWNLOAD := --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64
# With a wheelhouse/ folder (`make wheelhouse`), every install reads only that folder: no network needed.
PIP_SOURCE := $(if $(wildcard wheelhouse/*.whl),--no-index --find-links wheelhouse)
# Without an NVIDIA GPU, torch and torchvision come from PyTorch's CPU-only index when it answers within 5 s: about
# 1.9 GB of virtual environment instead of 6.6 GB, most of it CUDA libraries a CPU never uses (README, "Set-up").
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
# pip prints one harmless line per package for this machine's offline package folders; hide those.
QUIET_PIP := sed "/is ignored: it is neither a file nor a directory/d"

.PHONY: setup torch-source class-report tensorrt tensorrt-10-bindings browser lab test book budget claims colab-check execute sync readme wheelhouse clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml tools/jupyterlab_overrides.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	extra=$$($(MAKE) --no-print-directory -s torch-source); echo "torch and torchvision from: $${extra:-the package index}"; \
	$(PY) -m pip install -q $(PIP_SOURCE) $$extra -r requirements.txt 2>&1 | $(QUIET_PIP)
	$(PY) -m pip install -q $(PIP_SOURCE) --no-deps -e . 2>&1 | $(QUIET_PIP)
	$(PY) -c "import torch, torchvision, helpers"
	$(MAKE) --no-print-directory tensorrt
	$(MAKE) --no-print-directory tensorrt-10-bindings
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python 3 (DL performance course)"
	mkdir -p $(VENV)/etc/jupyter
	echo '{"ServerApp": {"allow_root": true}}' > $(VENV)/etc/jupyter/jupyter_server_config.json
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/jupyterlab_overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	touch $@

torch-source:  ## print pip's extra index for a CPU-only torch, or nothing (a GPU, a wheelhouse, or no answer in 5 s)
	@if [ -z "$(PIP_SOURCE)" ] && ! nvidia-smi >/dev/null 2>&1 && $(PY) -c "import urllib.request; \
	urllib.request.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" >/dev/null 2>&1; then \
	  echo "--extra-index-url $(TORCH_CPU_INDEX)"; fi

tensorrt:  ## TensorRT itself, only where an NVIDIA GPU answers (its libraries run nowhere else)
	@if nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q $(PIP_SOURCE) $(TENSORRT) 2>&1 | $(QUIET_PIP) \
	  || echo "could not install $(TENSORRT): chapter 7's TensorRT cells will say so and skip"; \
	else echo "no NVIDIA GPU answers nvidia-smi: TensorRT not installed (chapter 7's TensorRT cells skip)"; fi

tensorrt-10-bindings:  ## TensorRT 10's bindings wheel into .cache/, for chapter 7's name check (read, never installed)
	@$(PY) -m pip download -q $(PIP_SOURCE) $(BINDINGS_DOWNLOAD) -d $(BINDINGS_CACHE) $(TENSORRT10_BINDINGS) 2>&1 \
	  | $(QUIET_PIP) || echo "could not download $(TENSORRT10_BINDINGS): chapter 7's TensorRT 10 name check will try again"

lab: setup  ## open JupyterLab on the chapters, at the repository's root so that helpers/ is one click up
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

browser:  ## Debian's Chromium for the browser test: installed with apt when missing and we are root
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium with apt (once)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
	  || echo "could not install chromium: the browser test will be skipped (and fail on CI)"; \
	else echo "chromium is missing and we are not root: the browser test will be skipped (apt-get install chromium)"; fi

test: setup browser  ## unit tests, strict nbval on every chapter, browser test, jupytext pairing, book build
	$(PY) -m pytest $(PYTEST_ARGS)

class-report: setup  ## a workshop's ledgers (LEDGERS=folder/, one .json per participant) into class-report.html
	@test -n "$(LEDGERS)" || { echo "usage: make class-report LEDGERS=folder/ (one ledger .json per participant)"; exit 2; }
	$(PY) tools/class_report.py $(LEDGERS) --out $(or $(REPORT),class-report.html)

book: setup  ## build the Jupyter Book into _build/html from the stored outputs
	$(PY) tools/build_book.py

budget: setup  ## execute every chapter; print wall time and peak memory; fail if over budget
	$(PY) tools/run_notebooks.py --check

claims: setup  ## benchmark: execute every chapter and print its speed claims with intervals and verdicts
	$(PY) tools/claims.py $(NB)

colab-check: setup  ## run each chapter alone as on Colab (its Python, its packages, the Colab cell); GPU=1, CHAPTERS="5 A"
	$(PY) tools/colab_check.py --save $(if $(GPU),--gpu) $(if $(CHAPTERS),--chapters $(CHAPTERS))

execute: setup  ## re-execute chapters (NB=notebooks/x.ipynb for one) and store their outputs
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb
	COURSE_STRICT_WARNINGS=1 $(PY) tools/run_notebooks.py --save $(NB)
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb
	$(PY) tools/readme.py --write

sync: setup  ## update each notebook/.py pair from whichever side changed
	$(VENV)/bin/jupytext --sync notebooks/*.ipynb

readme: setup  ## regenerate the README's tables, helpers/README.md and the reference ledgers shipped in helpers/
	$(PY) tools/readme.py --write

wheelhouse: setup  ## download every pinned package into wheelhouse/ for offline set-ups (needs the network once)
	$(PY) -m pip download -q -r requirements.txt "setuptools>=68" -d wheelhouse 2>&1 | $(QUIET_PIP)
	$(PY) -m pip download -q $(BINDINGS_DOWNLOAD) -d wheelhouse $(TENSORRT10_BINDINGS) 2>&1 | $(QUIET_PIP)

clean:
	rm -rf _build test-artifacts

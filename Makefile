# hvmspec: every target bootstraps .venv (created, and the project installed
# editable with its dev dependencies, when it is missing or pyproject.toml is
# newer than the last install).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test docs check conform bench timeline os os-timeline fuzz mutate clean

$(STAMP): pyproject.toml setup.py impl/_clock.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/hvmspec run demo --engine impl

# the suite on every core (CI has 2): a test module runs whole on one worker, so
# its module-scoped fixtures (QEMU screens, firmware runs) are made once
test: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder --durations=25 -m "not os"

# the whole-OS runs that make test leaves out (tests marked os), several minutes each
os: $(STAMP)
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m os --durations=10

docs: $(STAMP)
	$(BIN)/python -m sphinx -W -b html docs docs/_build/html

check: $(STAMP)
	$(BIN)/hvmspec check

conform: $(STAMP)
	$(BIN)/hvmspec conform --firmware
	$(BIN)/hvmspec conform linux-cd

bench: $(STAMP)
	$(BIN)/python -m bench --write docs/bench.json

# the Firmware page's POST timeline, from a real run of rombios (bochsbios)
timeline: $(STAMP)
	$(BIN)/python -m hvmspec.timeline --write docs/post_timeline.json

# the OS page's record: Debian's Linux from the CD on impl, to the prompt and
# power-off (several minutes; needs the CD's packages: hvmspec.linux_iso)
os-timeline: $(STAMP)
	$(BIN)/python -m hvmspec.timeline --os --write docs/os_timeline.json

# long campaigns: spec/x86 against Unicorn (CASES=...), then generated guests
# on both engines (GUESTS=...); SEED=... for both
CASES ?= 200000
GUESTS ?= 2000
SEED ?= 0
fuzz: $(STAMP)
	$(BIN)/python -m hvmspec.x86diff --cases $(CASES) --seed $(SEED)
	$(BIN)/python -m hvmspec.guestgen --count $(GUESTS) --seed $(SEED)

# mutation testing of the spec modules the proofs are about, hvmspec check as the
# killer (cosmic-ray): MODULES="spec/irq.py ..." to run some
MODULES ?=
mutate: $(STAMP)
	$(BIN)/python -m hvmspec.mutation $(foreach m,$(MODULES),--module $(m)) --write docs/mutation.json

clean:
	rm -rf $(VENV) docs/_build docs/_generated .pytest_cache

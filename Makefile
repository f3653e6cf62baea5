# Two commands on a fresh machine (each installs what it needs into .venv):
#   make demo   - the whole pipeline on sample_videos/ through the Prefect deployments (outputs under runs/demo/;
#                 ARGS=--keep leaves the Prefect server and worker up, ARGS=--stop stops them)
#   make test   - the test suite (no GPU, slow tests skipped)
.PHONY: demo test test-all install lock bench samples clean

demo:
	bash scripts/demo.sh $(ARGS)

test:
	bash scripts/test.sh

test-all:
	bash scripts/install.sh && .venv/bin/python -m pytest

install:
	bash scripts/install.sh

# Regenerate locks/ from pyproject.toml; ARGS="--upgrade-package NAME" or ARGS="--upgrade" to move versions.
lock:
	bash scripts/install.sh && bash scripts/lock.sh $(ARGS)

bench:
	bash scripts/install.sh && .venv/bin/python benchmarks/audio_throughput.py --report benchmarks/reports/audio_cpu.md

samples:
	bash scripts/install.sh && .venv/bin/python scripts/make_sample_videos.py

clean:
	rm -rf runs .pytest_cache

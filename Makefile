# Two commands do everything on a fresh machine (see README):
#   make demo   set up, generate the demo dataset, train + evaluate the demo detector
#   make test   set up, run the test suite
PY := .venv/bin/python
DEMO_CONFIG ?= configs/demo/faster_rcnn_clip_rn_jittor_fpn_demo.py
DEMO_WORK_DIR ?= work_dirs/demo
DEMO_CFG_OPTIONS ?=
DEMO_DATA_ARGS ?= --out-dir data/demo_shapes
PYTEST_ARGS ?=
# tmp_path_retention_policy=failed: pytest keeps only failed tests' temporary folders (checkpoints
# and work dirs of passed tests would otherwise pile up, ~1.5 GB per run, in the last 3 runs' folders).
# OpenMP threads spinning at barriers cost 6-8x on a shared CPU (torch and Jittor alike); no cost idle.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: setup demo test

setup:
	bash scripts/setup.sh

demo: setup
	DEMO_CONFIG=$(DEMO_CONFIG) DEMO_WORK_DIR=$(DEMO_WORK_DIR) DEMO_CFG_OPTIONS="$(DEMO_CFG_OPTIONS)" \
		DEMO_DATA_ARGS="$(DEMO_DATA_ARGS)" bash scripts/demo.sh

test: setup
	$(PY) -m pytest tests -q -p no:cacheprovider -o tmp_path_retention_policy=failed $(PYTEST_ARGS)

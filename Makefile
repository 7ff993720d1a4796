# mdeq_mm developer entry points. Everything installs into the active Python.
PYTHON ?= python3

.PHONY: setup test demo check lint wheelhouse gpu-check

setup:  ## install torch, mmcv (built once, cached), OpenMMLab, mdeq_mm
	$(PYTHON) tools/setup_env.py

check:  ## print versions and check every requirement
	$(PYTHON) tools/check_env.py

test:   ## run the test suite (CPU)
	$(PYTHON) -m pytest tests -q -p no:randomly

demo:   ## pretrain on demo ImageNet-layout data, fine-tune on Cityscapes-layout data
	$(PYTHON) tools/demo.py

# Offline GPU hosts: fill .wheelhouse here (network, the host's Python
# version), carry it there, then `make gpu-check` installs from it and runs
# the GPU check (reports in $(OUT)).
PY_VERSION ?= 3.12
OUT ?= gpu_check_out

wheelhouse:  ## download what an offline install needs into .wheelhouse
	$(PYTHON) tools/setup_env.py --fill-wheelhouse .wheelhouse --python-version $(PY_VERSION)

gpu-check:  ## install from .wheelhouse (offline), then tools/gpu_check.py
	$(PYTHON) tools/setup_env.py --wheelhouse .wheelhouse
	$(PYTHON) tools/gpu_check.py --out $(OUT)

lint:
	$(PYTHON) -m flake8 mdeq_mm tools tests configs

# mdeq_mm developer entry points. Everything installs into the active Python.
PYTHON ?= python3

.PHONY: setup test demo check lint

setup:  ## install torch, mmcv (built once, cached), OpenMMLab, mdeq_mm
	$(PYTHON) tools/setup_env.py

check:  ## print versions and check every requirement
	$(PYTHON) tools/check_env.py

test:   ## run the test suite (CPU)
	$(PYTHON) -m pytest tests -q -p no:randomly

demo:   ## pretrain on demo ImageNet-layout data, fine-tune on Cityscapes-layout data
	$(PYTHON) tools/demo.py

lint:
	$(PYTHON) -m flake8 mdeq_mm tools tests configs

# The two commands the README promises:
#   make demo   install, get the flowers photos if needed, fine-tune on defaults, export, evaluate,
#               print where results are
#   make test   install, run the test suite
VENV   ?= .venv
SHARED ?= ../shared
EDGECAM = $(VENV)/bin/edgecam
# Offline machines (like CI) use the weights in ../shared; with a network Keras downloads them.
WEIGHTS = $(if $(wildcard $(SHARED)/weights/*.h5),model.weights=$(SHARED)/weights)
# The flowers photos: ../shared's copy when it is there, else `edgecam datasets get flowers`
# downloads them once (into ~/.cache/edgecam/datasets) and prints where they are.
FLOWERS = $(if $(wildcard $(SHARED)/datasets/flowers/train),$(SHARED)/datasets/flowers)
# More finetune overrides, e.g. make demo DEMO_ARGS="train.epochs=20"
DEMO_ARGS ?=

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

demo: install
	@data="$(FLOWERS)"; [ -n "$$data" ] || data=$$($(EDGECAM) datasets get flowers) || exit 1; \
	set -x; \
	$(EDGECAM) finetune configs/flowers.yaml data.path="$$data" $(WEIGHTS) $(DEMO_ARGS) && \
	$(EDGECAM) evaluate runs/flowers/last/model.tflite "$$data/test" --out runs/flowers/last/evaluate
	@echo "results: runs/flowers/last/ (report.md, model.tflite, confusion_matrix.png)"

test: install
	$(VENV)/bin/python -m pytest

clean:
	rm -rf runs .pytest_cache

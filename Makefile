# The two commands the README promises:
#   make demo   install, fine-tune flowers on defaults, export, evaluate, print where results are
#   make test   install, run the test suite
VENV   ?= .venv
SHARED ?= ../shared
EDGECAM = $(VENV)/bin/edgecam
# Offline machines (like CI) use the weights in ../shared; with a network Keras downloads them.
WEIGHTS = $(if $(wildcard $(SHARED)/weights/*.h5),model.weights=$(SHARED)/weights)

.PHONY: install demo test clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

demo: install
	$(EDGECAM) finetune configs/flowers.yaml $(WEIGHTS)
	$(EDGECAM) evaluate runs/flowers/last/model.tflite $(SHARED)/datasets/flowers/test --out runs/flowers/last/evaluate
	@echo "results: runs/flowers/last/ (report.md, model.tflite, confusion_matrix.png)"

test: install
	$(VENV)/bin/python -m pytest

clean:
	rm -rf runs .pytest_cache

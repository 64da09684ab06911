# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv and install the package with its CPU, export, examples and test extras.
VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[cpu,export,examples,test]"
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	$(PY) examples/demo.py

# A real Triton Inference Server for tests/test_export_triton.py: the
# tritonserver bundled in nvidia-pytriton (Linux x86_64; Python backend
# only; its Python needs numpy < 2, so it lives in its own venv). Where it
# cannot be installed, the test says so and is skipped.
TRITON_VENV ?= .triton-venv
$(TRITON_VENV)/.installed:
	python3 -m venv $(TRITON_VENV) && \
	$(TRITON_VENV)/bin/pip install --quiet "nvidia-pytriton==0.7.0" \
		"onnxruntime>=1.18" "numpy<2" && touch $@ || \
	echo "nvidia-pytriton could not be installed: no real-Triton test"

test: $(VENV)/.installed $(TRITON_VENV)/.installed
	KERASRNN_TRITON_PYTHON=$(abspath $(TRITON_VENV))/bin/python \
		$(PY) -m pytest -n 2 -q
	# The backend-parity subset on Keras' JAX and torch backends: every
	# layer and fast path against the NumPy equations and the generic loop,
	# the TBPTT trainer against TensorFlow and finite differences, Seq2Seq,
	# the decoders and the captioner against TensorFlow
	# (on torch also the whole NumPy-reference suite but its float64
	# central differences, which Keras computes in float32 off TensorFlow).
	KERAS_BACKEND=jax $(PY) -m pytest -n 2 -q tests/test_backends.py \
		tests/test_backends_lm.py tests/test_backends_seq2seq.py
	KERAS_BACKEND=torch $(PY) -m pytest -n 2 -q tests/test_backends.py \
		tests/test_backends_lm.py tests/test_backends_seq2seq.py \
		tests/test_numpy_reference.py \
		-k "not test_cell_gradient and not test_rnn_gradient"

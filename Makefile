# Quick start (each target is self-sufficient on a fresh machine):
#   make bench   -- install everything, build detseg, run `detseg bench`
#   make test    -- install everything, build detseg, run the whole test suite
PY ?= python3
PIP = $(PY) -m pip
BENCH_ARGS ?= --threads 1,2
PYTEST_ARGS ?=

.PHONY: deps install bench test cuda-check dev clean

deps:
	$(PIP) install torch==2.13.0
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12" ninja "cmake>=3.25"

# --no-build-isolation: an isolated build would resolve the newest CUDA torch (GBs).
install: deps
	$(PIP) install --no-build-isolation ".[test,triton,bench]"

bench: install
	detseg bench $(BENCH_ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Compiles every .cu file to sm_90 objects against torch's headers (no GPU needed).
cuda-check: deps
	CCACHE_BASEDIR=$(CURDIR) cmake -S . -B build/cuda-check -G Ninja -DDETSEG_CUDA=CHECK -DPython_EXECUTABLE=$$(command -v $(PY)) \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE) -DCMAKE_CUDA_COMPILER_LAUNCHER=$(CCACHE))
	CCACHE_BASEDIR=$(CURDIR) cmake --build build/cuda-check --target detseg_cuda_check

# Developer build: _C lands in python/detseg/, use with PYTHONPATH=python. ccache, when
# installed, is shared by every checkout (paths are rewritten relative to the checkout).
CCACHE := $(shell command -v ccache 2>/dev/null)
dev:
	CCACHE_BASEDIR=$(CURDIR) cmake -S . -B build/dev -G Ninja -DDETSEG_CUDA=OFF -DPython_EXECUTABLE=$$(command -v $(PY)) \
	  $(if $(CCACHE),-DCMAKE_CXX_COMPILER_LAUNCHER=$(CCACHE) -DCMAKE_CUDA_COMPILER_LAUNCHER=$(CCACHE))
	CCACHE_BASEDIR=$(CURDIR) cmake --build build/dev

clean:
	rm -rf build python/detseg/_C*.so

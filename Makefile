# Build for the GPT-2 / Llama trainers, their tests, kernel harnesses and benchmarks.
#   make                 train_gpt and train_llama for Hopper (sm_90a)
#   make test            compile every CUDA target with nvcc, run the CPU tests (CI)
#   make test-gpu        build and run the GPU tests (needs a GPU)
#   make bench           build and run the kernel benchmarks (needs a GPU)
# Overridable: CUDA_HOME, NVCC, GPU_ARCH (90a, 100a, ...), NCCL_HOME, USE_MPI (0/1), SHARED_DATA.

CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
CC ?= gcc
PYTHON ?= python3
GPU_ARCH ?= 90a
SHARED_DATA ?= ../shared/data
NPROC := $(shell nproc 2>/dev/null || echo 2)

# ---- NCCL: inside the CUDA toolkit (/usr/local/cuda) or from the system packages (/usr/include)
NCCL_HOME ?=
ifneq ($(NCCL_HOME),)
  NCCL_INC_DIR := $(NCCL_HOME)/include
  NCCL_LIB_DIR := $(NCCL_HOME)/lib
else
  NCCL_INC_DIR := $(patsubst %/,%,$(dir $(firstword $(wildcard $(CUDA_HOME)/include/nccl.h /usr/include/nccl.h /usr/local/include/nccl.h))))
  NCCL_LIB_DIR := $(patsubst %/,%,$(dir $(firstword $(wildcard $(CUDA_HOME)/lib64/libnccl.so* /usr/lib/x86_64-linux-gnu/libnccl.so* /usr/lib64/libnccl.so* /usr/local/lib/libnccl.so*))))
endif

# ---- MPI (optional): found through mpicc, or OpenMPI's Debian header folder when mpicc is absent
MPICC := $(shell command -v mpicc 2>/dev/null)
OMPI_DEB_INC := /usr/lib/x86_64-linux-gnu/openmpi/include
ifneq ($(MPICC),)
  USE_MPI ?= 1
  MPI_CFLAGS := $(shell $(MPICC) --showme:compile 2>/dev/null)
  MPI_LIBS := $(shell $(MPICC) --showme:link 2>/dev/null)
else ifneq ($(wildcard $(OMPI_DEB_INC)/mpi.h),)
  USE_MPI ?= 1
  MPI_CFLAGS := -I$(OMPI_DEB_INC) -I$(OMPI_DEB_INC)/openmpi
  MPI_LIBS := -L/usr/lib/x86_64-linux-gnu/openmpi/lib -lmpi
else
  USE_MPI ?= 0
endif

# ---- flags. No --use_fast_math: the format codecs need IEEE division and denormals.
CFLAGS := -O2 -std=gnu11 -fopenmp -Wall -Wextra -Wno-unused-function -I.
CPU_LIBS := -lm
NVCC_GENCODE = -gencode=arch=compute_$(1),code=sm_$(1)
NVCC_FLAGS := -O3 -std=c++17 -lineinfo --expt-relaxed-constexpr -I. -Xcompiler -fopenmp -Xcompiler -Wall -Xcompiler -Wno-unused-function
NVCC_LIBS := -lcublasLt -lcublas -lgomp
ifneq ($(NCCL_INC_DIR),)
  NVCC_FLAGS += -I$(NCCL_INC_DIR)
endif
ifneq ($(NCCL_LIB_DIR),)
  NVCC_LIBS += -L$(NCCL_LIB_DIR) -Xlinker -rpath=$(NCCL_LIB_DIR)
endif
NVCC_LIBS += -lnccl
ifeq ($(USE_MPI),1)
  NVCC_FLAGS += -DUSE_MPI $(MPI_CFLAGS)
  NVCC_LIBS += $(MPI_LIBS)
endif

# ---- what gets built
TRAINERS := train_gpt train_llama
CPU_TEST_BINS := $(patsubst test/%.c,build/test/%,$(wildcard test/test_*.c))
PY_TESTS := $(wildcard test/test_*.py)
GPU_TEST_BINS := $(patsubst test/gpu/%.cu,build/gpu/%,$(wildcard test/gpu/test_*.cu))
DEV_CUDA_BINS := $(patsubst dev/cuda/%.cu,build/dev/%,$(wildcard dev/cuda/*.cu))
# Sources with Blackwell (sm_100a) paths are also compiled and linked for sm_100a.
SM100_SRCS := train_gpt.cu test/gpu/test_gemm_mx_nvfp4.cu dev/cuda/gemm_mx_nvfp4.cu
SM100_BINS := $(addprefix build/sm100a/,$(basename $(notdir $(SM100_SRCS))))
CUDA_TARGETS := $(TRAINERS) $(GPU_TEST_BINS) $(DEV_CUDA_BINS) $(SM100_BINS)

.PHONY: all test test-gpu bench clean test-data cuda-targets config
all: $(TRAINERS)

$(TRAINERS): %: %.cu
	$(NVCC) $(NVCC_FLAGS) $(call NVCC_GENCODE,$(GPU_ARCH)) -MMD -MP $< -o $@ $(NVCC_LIBS)

build/gpu/%: test/gpu/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) $(call NVCC_GENCODE,$(GPU_ARCH)) -MMD -MP $< -o $@ $(NVCC_LIBS)

build/dev/%: dev/cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) $(call NVCC_GENCODE,$(GPU_ARCH)) -MMD -MP $< -o $@ $(NVCC_LIBS)

define SM100_RULE
build/sm100a/$(basename $(notdir $(1))): $(1)
	@mkdir -p build/sm100a
	$$(NVCC) $$(NVCC_FLAGS) $$(call NVCC_GENCODE,100a) -MMD -MP $$< -o $$@ $$(NVCC_LIBS)
endef
$(foreach s,$(SM100_SRCS),$(eval $(call SM100_RULE,$(s))))

build/test/%: test/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP $< -o $@ $(CPU_LIBS)

cuda-targets: $(CUDA_TARGETS)

# Token shards of tinyshakespeare for the tests, from the local copy in $(SHARED_DATA) (skipped when absent).
TEST_DATA_DIR := build/data/tinyshakespeare
test-data:
	@if [ -f $(SHARED_DATA)/tinyshakespeare/input.txt ]; then \
	  $(PYTHON) dev/data/prepare.py --input $(SHARED_DATA)/tinyshakespeare/input.txt --name tiny_shakespeare \
	    --tokenizer $(SHARED_DATA)/gpt2 --out $(TEST_DATA_DIR) --quiet; \
	else echo "skip test-data: $(SHARED_DATA) not found, tests on real text will be skipped"; fi

# CI: every build counts as a test (so a compile error is reported and counted), then the CPU tests.
# The first, parallel make only warms the builds; the runner re-runs each target and records its result.
test:
	@-$(MAKE) --no-print-directory -k -j$(NPROC) $(CUDA_TARGETS) $(CPU_TEST_BINS) >/dev/null 2>&1
	@bash test/run_tests.sh $(foreach t,$(CUDA_TARGETS) $(CPU_TEST_BINS) test-data,-c $(t)) \
	  $(foreach t,$(CPU_TEST_BINS),-t $(t)) $(foreach t,$(PY_TESTS),-t "$(PYTHON) $(t)")

# GPU tests, plus the float64 PyTorch checks of the CPU references, GPT-2 and Llama (PyTorch is on GPU
# machines, not in CI).
test-gpu:
	@bash test/run_tests.sh $(foreach t,$(GPU_TEST_BINS) test-data,-c $(t)) $(foreach t,$(GPU_TEST_BINS),-t $(t)) \
	  -t "$(PYTHON) dev/torch_reference_check.py" -t "$(PYTHON) dev/torch_llama_reference_check.py"

# model_logits is a tool (it needs a model file), not a benchmark
BENCH_BINS := $(filter-out build/dev/model_logits,$(DEV_CUDA_BINS))
bench: $(BENCH_BINS)
	@set -e; for b in $(BENCH_BINS); do echo "== $$b"; $$b; done

config:
	@echo "CUDA_HOME=$(CUDA_HOME) GPU_ARCH=$(GPU_ARCH) NCCL_INC_DIR=$(NCCL_INC_DIR) NCCL_LIB_DIR=$(NCCL_LIB_DIR) USE_MPI=$(USE_MPI)"
	@echo "CUDA targets: $(CUDA_TARGETS)"
	@echo "CPU tests: $(CPU_TEST_BINS) $(PY_TESTS)"

clean:
	rm -rf build $(TRAINERS) *.d

-include $(wildcard build/*/*.d build/*/*/*.d *.d)

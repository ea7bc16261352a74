# Builds libfastbert_ops.so against the installed TensorFlow (CPU always, CUDA when nvcc is found),
# and sets up the virtualenv the README's commands use.
#   make lib                 the op library (into build/ and fastbert_tf/)
#   make run                 venv + lib + the example (the README's main job)
#   make test                venv + lib + the tests
#   make bench               venv + lib + the benchmark
# Overrides: CUDA=0 (no GPU code), CUDA_ARCHS="90 80 86 89", NVCC=..., CPU_FLAGS=..., PYTHON=...

VENV      ?= .venv
PYTHON    ?= $(VENV)/bin/python
BASE_PY   ?= python3
BUILD     := build
LIB       := $(BUILD)/libfastbert_ops.so
PKG_LIB   := fastbert_tf/libfastbert_ops.so

NVCC       ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA       ?= $(if $(NVCC),1,0)
CUDA_ARCHS ?= 90
# AVX2/FMA/F16C: the Eigen GEMMs are ~2x faster with them; fastbert_tf checks the CPU before loading.
CPU_FLAGS  ?= -march=x86-64-v3 -mtune=generic

CXX_SRCS  := tf_ops/ops.cc tf_ops/encoder_op.cc tf_ops/padding_ops.cc tf_ops/exports.cc $(wildcard tf_ops/cpu/*.cc)
CU_SRCS   := $(wildcard tf_ops/cuda/*.cu)
CUDA_GLUE := tf_ops/gpu_glue.cc
ifeq ($(CUDA),1)
CXX_SRCS  += $(CUDA_GLUE) $(wildcard tf_ops/cuda/*.cc)
endif
CXX_OBJS  := $(patsubst %.cc,$(BUILD)/%.o,$(CXX_SRCS))
CU_OBJS   := $(if $(filter 1,$(CUDA)),$(patsubst %.cu,$(BUILD)/%.o,$(CU_SRCS)))
HEADERS   := $(wildcard tf_ops/*.h tf_ops/*/*.h)

.PHONY: lib venv run test bench clean harness
lib: $(PKG_LIB)

# With the default PYTHON the flags come from the venv's TensorFlow, so `make lib` sets it up first.
$(BUILD)/flags.mk: Makefile $(if $(filter $(VENV)/bin/python,$(PYTHON)),$(VENV)/.installed,$(PYTHON))
	@mkdir -p $(BUILD)
	@$(PYTHON) tf_ops/tf_flags.py > $@.tmp 2> $@.err || { cat $@.err >&2; exit 1; }
	@mv $@.tmp $@
ifneq ($(filter lib harness build/% fastbert_tf/%,$(or $(MAKECMDGOALS),lib)),)
-include $(BUILD)/flags.mk
endif

CUDA_INC   := $(TF_INCLUDE)/third_party/gpus/cuda/include
CXXFLAGS   := $(TF_COMPILE_FLAGS) -I. -O3 -fPIC -fvisibility=hidden -fvisibility-inlines-hidden $(CPU_FLAGS) \
              -Wall -Wno-sign-compare -Wno-unused-but-set-variable -Wno-deprecated-declarations -Wno-interference-size --param=destructive-interference-size=64 -DNDEBUG -DFASTBERT_WITH_CUDA=$(CUDA)
ifeq ($(CUDA),1)
CXXFLAGS   += -I$(CUDA_INC) -I$(CUDA_INC)/../libcudacxx/include
endif
NVCC_GENCODE := $(foreach a,$(CUDA_ARCHS),-gencode=arch=compute_$(a),code=sm_$(a))
# .cu files hold kernels only (no TensorFlow, no cuBLAS headers) and use nvcc's own CUDA headers;
# the .cc runner calls cuBLASLt through the headers in the TF wheel, which match what TF loads.
NVCCFLAGS  := -std=c++17 -O3 -I. $(NVCC_GENCODE) -Xcompiler -fPIC -Xcompiler -fvisibility=hidden \
              -cudart none -lineinfo --expt-relaxed-constexpr -DNDEBUG
# TF's framework library exports the CUDA runtime, cuBLAS and cuBLASLt entry points and opens the
# real libraries at run time: link neither cudart nor cuBLAS.
LDFLAGS    := -shared $(TF_LINK_FLAGS) -Wl,-z,defs -Wl,-O1

$(BUILD)/%.o: %.cc $(HEADERS) $(BUILD)/flags.mk
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# The CUTLASS int8 GEMMs (sm90a_*.cu): wgmma exists only for the sm_90a target, and the CUTLASS 3.x
# headers come from the TF wheel. One tile shape per file (~50 s of nvcc each). TF exports the driver's
# cuTensorMapEncodeTiled (not the CUDA 12.5+ cudaGetDriverEntryPointByVersion CUTLASS asks for otherwise).
CUTLASS_INC := $(TF_INCLUDE)/external/cutlass_archive/include
NVCCFLAGS_SM90A := $(filter-out -gencode=%,$(NVCCFLAGS)) -gencode=arch=compute_90a,code=sm_90a -I$(CUTLASS_INC) \
              -DCUTLASS_ENABLE_DIRECT_CUDA_DRIVER_CALL \
              -Xcompiler -Wno-deprecated-declarations
$(BUILD)/tf_ops/cuda/sm90a_%.o: tf_ops/cuda/sm90a_%.cu tf_ops/cuda/sm90a_int8_gemm.cuh $(HEADERS) $(BUILD)/flags.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS_SM90A) -c $< -o $@

$(BUILD)/%.o: %.cu $(HEADERS) $(BUILD)/flags.mk
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(LIB): $(CXX_OBJS) $(CU_OBJS)
	$(CXX) -o $@ $^ $(LDFLAGS)

# What the library needs of the CPU, checked by fastbert_tf before loading it.
CPU_REQUIRES ?= $(if $(findstring x86-64-v3,$(CPU_FLAGS)),avx avx2 fma f16c bmi1 bmi2 movbe)
$(PKG_LIB): $(LIB)
	cp $(LIB) $(PKG_LIB)
	echo "$(CPU_REQUIRES)" > $(PKG_LIB).cpuflags

$(VENV)/bin/python:
	$(BASE_PY) -m venv $(VENV)

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt setup.py | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -r requirements.txt
	FASTBERT_SKIP_BUILD=1 $(VENV)/bin/pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $@

run: venv
	$(MAKE) -j2 lib
	$(PYTHON) examples/bert_example.py

test: venv
	$(MAKE) -j2 lib
	$(PYTHON) -m pytest -q -rs tests

# CPU: float32 (TF, XLA, the op, its int8 modes) and bfloat16 (TF, the op), B=8 S=128, JSON in
# $(BENCH_OUT); FASTBERT_CPU_ISA=avx2|avx512 caps the kernels (see README, Performance, CPU).
BENCH_OUT ?= out/bench
bench: venv
	$(MAKE) -j2 lib
	$(PYTHON) -m benchmarks.bench --variants tf,xla,op,op_rp,op_int8_1,op_int8_1_rp,op_int8_2,op_int8_2_rp \
	  --json $(BENCH_OUT)/cpu_float32.json
	$(PYTHON) -m benchmarks.bench --dtype bfloat16 --variants tf,op,op_rp --json $(BENCH_OUT)/cpu_bfloat16.json

clean:
	rm -rf $(BUILD) $(PKG_LIB) $(PKG_LIB).cpuflags

# TF-free harness around the CUDA runner (tests/cuda/check_runner.py runs it on a GPU machine with
# PyTorch): links the CUDA runtime; cuBLAS is resolved when the checker loads it first.
HARNESS := $(BUILD)/libfastbert_cuda_harness.so
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda) $(patsubst %/bin/nvcc,%,$(realpath $(NVCC))))
harness: $(HARNESS)
$(HARNESS): $(CU_OBJS) $(patsubst %.cc,$(BUILD)/%.o,$(wildcard tf_ops/cuda/*.cc)) $(BUILD)/tests/cuda/harness.o
	$(CXX) -shared -o $@ $^ -L$(CUDA_HOME)/lib64 -lcudart -Wl,-rpath,$(CUDA_HOME)/lib64

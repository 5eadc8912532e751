# colbert.c: one Makefile (llm.c style).
#   make            build the colbert CLI and libcolbert.a (release, -O3)
#                   (the library is src/*.c and src/cpu/*.c; the CLI, cli/*.c,
#                   is a client of it and not part of it)
#   make test       set up a fresh machine if needed, build, run every test
#                   (unit tests, the same under ASan/UBSan, PyTorch parity)
#   make demo       the main job end to end on the default dataset
#   make bench      the benchmarks of bench/ (long; not part of make test)
#   make test-cuda  build and run every CUDA test (needs a GPU; prints
#                   "N passed, N failed")
#   make gpu-bundle the prepared folder gpu/ for the GPU machine (see
#                   scripts/gpu_check.sh)
#   make fuzz       the libFuzzer targets of fuzz/, FUZZ_SECONDS each (clang)
#   make pylib      build-py/libcolbert.so, the shared library of the Python
#                   package (pip install . runs it): portable, see PYARCH
# Variables: CC, ARCH (default -march=native), OMP=0 to build without OpenMP,
# CAIRO=0 to build without cairo, MPI=0 to build without MPI, CUDA=0 to build
# without the CUDA backend (default: built when nvcc is found), CUDA_HOME,
# CUDA_ARCHS (default 80 90), PYARCH (default -march=x86-64-v2 -mtune=generic:
# any x86-64 CPU since 2009; the SIMD kernels are picked at run time, see
# src/cpu/attn.c and CB_SIMD_CLONES in src/cpu/cpu.h).
# -fno-trapping-math lets GCC vectorise the branch-free exp/erf of fastmath.h
# (results are IEEE-identical; only FP exception flags are not kept).

CC      ?= gcc
ARCH    ?= -march=native
WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wno-unused-parameter -Werror
STD     := -std=c11 -D_GNU_SOURCE
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-openmp)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
DEP_CFLAGS  := $(BLAS_CFLAGS) $(shell pkg-config --cflags jansson libutf8proc 2>/dev/null)
DEP_LIBS    := $(BLAS_LIBS) $(shell pkg-config --libs jansson libutf8proc 2>/dev/null || echo -ljansson -lutf8proc) -lm -lpthread
# cairo (Debian: libcairo2-dev) draws RUN/curve.png beside curve.svg; found
# with pkg-config, else (or with CAIRO=0) only the SVG is written.
ifneq ($(CAIRO),0)
ifeq ($(shell pkg-config --exists cairo 2>/dev/null && echo yes),yes)
DEP_CFLAGS  += -DCB_CAIRO $(shell pkg-config --cflags cairo)
DEP_LIBS    += $(shell pkg-config --libs cairo)
endif
endif
# MPI (Debian: libopenmpi-dev, openmpi-bin): found through Open MPI's
# `mpicc --showme` (another MPI's mpicc: a serial build), the release build runs data-parallel under mpirun (src/comm.h,
# docs/train.md); without it, or with MPI=0, the serial communicator only.
# The ASan/UBSan build never uses MPI (Open MPI's own allocations would
# drown the leak report): it tests the serial communicator.
ifneq ($(MPI),0)
MPI_INC := $(shell mpicc --showme:compile 2>/dev/null)
ifneq ($(MPI_INC),)
MPI_CFLAGS := -DCB_MPI $(patsubst -I%,-isystem %,$(MPI_INC))
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
endif
endif
OMPFLAG := -fopenmp
ifeq ($(OMP),0)
OMPFLAG :=
endif

CFLAGS_REL  := -O3 $(ARCH) -fno-trapping-math -g $(OMPFLAG) $(MPI_CFLAGS)
CFLAGS_SAN  := -O1 $(ARCH) -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined $(OMPFLAG)

SRC      := $(wildcard src/*.c src/cpu/*.c)
CLISRC   := $(wildcard cli/*.c)
TESTSRC  := $(wildcard tests/test_*.c)
HDR      := $(wildcard src/*.h src/cpu/*.h src/cuda/*.h) $(wildcard tests/*.h)
CLIHDR   := $(wildcard cli/*.h)

BUILD    ?= build
SAN      := build-san

# ---- CUDA (src/cuda/) ------------------------------------------------------
# Built when nvcc is found (CUDA=0: never). The runtime is linked statically
# (libcudart_static.a: the binary starts on a machine without driver or GPU,
# and cudaGetDeviceCount then reports "no usable GPU"); cuBLASLt is loaded
# with dlopen when a GPU is opened (src/cuda/matmul.cu), so no CUDA library
# is needed to start. The ASan build never has CUDA (CB_CUDA unset there).
NVCC_PATH  := $(shell command -v nvcc 2>/dev/null)
CUDA_HOME  ?= $(if $(NVCC_PATH),$(patsubst %/bin/nvcc,%,$(NVCC_PATH)),/usr/local/cuda)
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA       ?= $(if $(wildcard $(NVCC)),1,0)
CUDA_ARCHS ?= 80 90
CUSRC      := $(wildcard src/cuda/*.cu)
CUHDR      := $(wildcard src/cuda/*.cuh src/cuda/*.h src/*.h src/cpu/cpu.h)
CUOBJ_DIR  ?= build/cuda-obj
NVFLAGS    := -std=c++20 -O3 -lineinfo -DCCCL_DISABLE_NVTX -DNVTX_DISABLE -Werror all-warnings \
              -Xcompiler -Wall,-Wextra,-Wno-unused-parameter \
              $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
              -gencode arch=compute_$(lastword $(CUDA_ARCHS)),code=compute_$(lastword $(CUDA_ARCHS)) \
              -DCB_CUDA_ARCHS='"$(foreach a,$(CUDA_ARCHS),sm_$(a)) + PTX compute_$(lastword $(CUDA_ARCHS))"' \
              -DCB_CUDA_LIBDIR='"$(CUDA_HOME)/lib64"'
ifeq ($(CUDA),1)
CUOBJ      := $(CUSRC:src/cuda/%.cu=$(CUOBJ_DIR)/%.o)
CUDA_LIBS  := $(CUDA_HOME)/lib64/libcudart_static.a -ldl -lrt -lpthread -lstdc++
else
CUOBJ      :=
CUDA_LIBS  :=
endif
# ops.o and the library depend on the CUDA setting: a stamp that changes
# with it rebuilds them when one switches between CUDA=0 and CUDA=1.
CUDA_STAMP := $(BUILD)/.cuda-$(CUDA)
$(shell mkdir -p $(BUILD) && [ -f $(CUDA_STAMP) ] || { rm -f $(BUILD)/.cuda-*; touch $(CUDA_STAMP); })

.PHONY: print-libs print-cflags all test unit unit-san pytest setup demo bench clean test-cuda cuda-tests gpu-bundle pylib \
        test-after-setup demo-after-setup bench-after-setup
all: $(BUILD)/colbert $(BUILD)/libcolbert.a

# ---- release build -------------------------------------------------------
# src/x.c -> build/obj/x.o, src/cpu/x.c -> build/obj/cpu/x.o, cli/x.c -> build/cli/x.o
$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -c $< -o $@
ifeq ($(CUDA),1)
$(BUILD)/obj/ops.o: src/ops.c $(HDR) $(CUDA_STAMP)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -DCB_CUDA -c $< -o $@
else
$(BUILD)/obj/ops.o: src/ops.c $(HDR) $(CUDA_STAMP)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -c $< -o $@
endif
$(CUOBJ_DIR)/%.o: src/cuda/%.cu $(CUHDR)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/libcolbert.a: $(SRC:src/%.c=$(BUILD)/obj/%.o) $(CUOBJ) $(CUDA_STAMP)
	rm -f $@
	ar rcs $@ $(filter %.o,$^)
$(BUILD)/cli/%.o: cli/%.c $(HDR) $(CLIHDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc -c $< -o $@
$(BUILD)/colbert: $(CLISRC:cli/%.c=$(BUILD)/cli/%.o) $(BUILD)/libcolbert.a
	$(CC) $(CFLAGS_REL) $^ $(DEP_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -o $@
$(BUILD)/tests/%: tests/%.c $(BUILD)/libcolbert.a $(HDR) | $(BUILD)/tests
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc $< $(BUILD)/libcolbert.a $(DEP_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -o $@

# ---- sanitizer build (ASan + UBSan) --------------------------------------
$(SAN)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_SAN) $(DEP_CFLAGS) -c $< -o $@
$(SAN)/libcolbert.a: $(SRC:src/%.c=$(SAN)/obj/%.o)
	rm -f $@
	ar rcs $@ $^
$(SAN)/cli/%.o: cli/%.c $(HDR) $(CLIHDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_SAN) $(DEP_CFLAGS) -Isrc -c $< -o $@
$(SAN)/colbert: $(CLISRC:cli/%.c=$(SAN)/cli/%.o) $(SAN)/libcolbert.a
	$(CC) $(CFLAGS_SAN) $^ $(DEP_LIBS) -o $@
$(SAN)/tests/%: tests/%.c $(SAN)/libcolbert.a $(HDR) | $(SAN)/tests
	$(CC) $(STD) $(WARN) $(CFLAGS_SAN) $(DEP_CFLAGS) -Isrc $< $(SAN)/libcolbert.a $(DEP_LIBS) -o $@

$(BUILD)/tests $(SAN)/tests:
	mkdir -p $@

# tests/mpi_step.c runs under mpirun (tests/test_mpi.py), not from run.sh
$(BUILD)/tests/mpi_step: tests/mpi_step.c $(BUILD)/libcolbert.a $(HDR) | $(BUILD)/tests
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc $< $(BUILD)/libcolbert.a $(DEP_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -o $@

# ---- the Python package's shared library (portable) -----------------------
# The CPU backend only, serial (no MPI, no CUDA): what a notebook runs.
PYBUILD  ?= build-py
PYARCH   ?= -march=x86-64-v2 -mtune=generic
CFLAGS_PY := -O3 $(PYARCH) -fno-trapping-math -fPIC $(OMPFLAG)
$(PYBUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_PY) $(DEP_CFLAGS) -c $< -o $@
$(PYBUILD)/libcolbert.so: $(SRC:src/%.c=$(PYBUILD)/obj/%.o)
	$(CC) -shared -Wl,-soname,libcolbert.so -Wl,--no-undefined $(CFLAGS_PY) $^ $(DEP_LIBS) -o $@
pylib: $(PYBUILD)/libcolbert.so

TESTS_REL := $(TESTSRC:tests/%.c=$(BUILD)/tests/%)
TESTS_SAN := $(TESTSRC:tests/%.c=$(SAN)/tests/%)

setup:
	bash scripts/setup.sh

# test, demo and bench set the machine up first, then build in a sub-make:
# the flags above (MPI through mpicc, cairo and OpenBLAS through pkg-config)
# are detected when make starts, so a make that started before set-up had
# installed them would build without them. The sub-make detects again.
# `make -j2 test` works too: set-up is the only prerequisite, and the sub-make
# shares the job slots.
test: setup
	+$(MAKE) test-after-setup
test-after-setup: all $(TESTS_REL) $(TESTS_SAN) $(SAN)/colbert $(BUILD)/tests/mpi_step fuzz-build
	bash tests/run.sh

# ---- CUDA tests (need a GPU: not part of make test) -------------------------
# tests/cuda/test_cuda_*.c compare the CUDA backend with the CPU backend;
# tests/cuda/run.sh runs them and prints "N passed, N failed".
CUTESTSRC := $(wildcard tests/cuda/test_cuda_*.c)
CUTESTS   := $(CUTESTSRC:tests/cuda/%.c=$(BUILD)/tests-cuda/%)
$(BUILD)/tests-cuda/%: tests/cuda/%.c $(BUILD)/libcolbert.a $(HDR) $(wildcard tests/cuda/*.h)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc -Itests $< $(BUILD)/libcolbert.a $(DEP_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -o $@
cuda-tests: $(CUTESTS)
ifeq ($(CUDA),1)
test-cuda: all cuda-tests
	bash tests/cuda/run.sh $(BUILD)
else
test-cuda:
	@echo "make test-cuda: this build has no CUDA backend (CUDA=0, or nvcc not found)"; exit 1
endif

# The folder gpu/ that scripts/gpu_check.sh runs on the GPU machine: the CLI
# and the CUDA tests built for any x86-64 with AVX2 (ARCH=-march=x86-64-v3,
# in build-gpu/; the CUDA objects are shared), their libraries, an fp16
# copy of all-MiniLM-L6-v2 and NFCorpus, compressed (the device tool
# carries at most 64 MiB). Not part of make test.
gpu-bundle:
	$(MAKE) BUILD=build-gpu ARCH=-march=x86-64-v3 CUDA=1 MPI=0 CAIRO=0 build-gpu/colbert build-gpu/bench/bench_step cuda-tests
	bash scripts/gpu_bundle.sh build-gpu gpu

# bench_step reads its texts with the CLI's cli_read_lines (cli/common.c)
$(BUILD)/bench/bench_step: bench/bench_step.c $(BUILD)/cli/common.o $(BUILD)/libcolbert.a | $(BUILD)/bench
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc $^ $(DEP_LIBS) $(MPI_LIBS) $(CUDA_LIBS) -o $@
$(BUILD)/bench:
	mkdir -p $@

bench: setup
	+$(MAKE) bench-after-setup
bench-after-setup: all $(BUILD)/bench/bench_step
	bash bench/run.sh

demo: setup
	+$(MAKE) demo-after-setup
demo-after-setup: all
	bash scripts/demo.sh

print-libs:
	@echo $(DEP_LIBS) $(MPI_LIBS)
print-cflags:
	@echo $(DEP_CFLAGS)

# ---- fuzzing (libFuzzer; clang) -------------------------------------------
#   make fuzz-build           the targets of fuzz/ (fuzz/README.md)
#   make fuzz FUZZ_SECONDS=N  run each for N seconds (default 60) from its
#                             committed seed corpus; any crash fails
# The library is rebuilt with clang, ASan, UBSan and coverage
# instrumentation into build-fuzz/ (no OpenMP: one thread per target).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ         := build-fuzz
FUZZ_CFLAGS  := -O1 $(ARCH) -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                -fno-sanitize-recover=undefined
FUZZSRC      := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS    := $(FUZZSRC:fuzz/%.c=$(FUZZ)/%)

$(FUZZ)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(STD) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(DEP_CFLAGS) -c $< -o $@
$(FUZZ)/libcolbert.a: $(SRC:src/%.c=$(FUZZ)/obj/%.o)
	rm -f $@
	ar rcs $@ $^
$(FUZZ)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ)/libcolbert.a $(HDR)
	$(FUZZ_CC) $(STD) $(WARN) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DCB_FUZZ_DATA='"$(CURDIR)/fuzz/data"' \
	    $(DEP_CFLAGS) -Isrc $< $(FUZZ)/libcolbert.a $(DEP_LIBS) -o $@

.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_BINS)
fuzz: fuzz-build
	bash fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) $(SAN) $(FUZZ) build-gpu gpu $(PYBUILD)

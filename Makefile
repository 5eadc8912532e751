# colbert.c: one Makefile (llm.c style).
#   make            build the colbert CLI and libcolbert.a (release, -O3)
#                   (the library is src/*.c and src/cpu/*.c; the CLI, cli/*.c,
#                   is a client of it and not part of it)
#   make test       set up a fresh machine if needed, build, run every test
#                   (unit tests, the same under ASan/UBSan, PyTorch parity)
#   make demo       the main job end to end on the default dataset
#   make bench      the benchmarks of bench/ (long; not part of make test)
#   make pylib      build-py/libcolbert.so, the shared library of the Python
#                   package (pip install . runs it): portable, see PYARCH
# Variables: CC, ARCH (default -march=native), OMP=0 to build without OpenMP,
# CAIRO=0 to build without cairo, PYARCH (default -march=x86-64-v2
# -mtune=generic: any x86-64 CPU since 2009; the SIMD kernels are picked at
# run time, see src/cpu/attn.c and CB_SIMD_CLONES in src/cpu/cpu.h).
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
OMPFLAG := -fopenmp
ifeq ($(OMP),0)
OMPFLAG :=
endif

CFLAGS_REL  := -O3 $(ARCH) -fno-trapping-math -g $(OMPFLAG)
CFLAGS_SAN  := -O1 $(ARCH) -g -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined $(OMPFLAG)

SRC      := $(wildcard src/*.c src/cpu/*.c)
CLISRC   := $(wildcard cli/*.c)
TESTSRC  := $(wildcard tests/test_*.c)
HDR      := $(wildcard src/*.h src/cpu/*.h) $(wildcard tests/*.h)
CLIHDR   := $(wildcard cli/*.h)

BUILD    := build
SAN      := build-san

.PHONY: print-libs print-cflags all test unit unit-san pytest setup demo bench clean pylib
all: $(BUILD)/colbert $(BUILD)/libcolbert.a

# ---- release build -------------------------------------------------------
# src/x.c -> build/obj/x.o, src/cpu/x.c -> build/obj/cpu/x.o, cli/x.c -> build/cli/x.o
$(BUILD)/obj/%.o: src/%.c $(HDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -c $< -o $@
$(BUILD)/libcolbert.a: $(SRC:src/%.c=$(BUILD)/obj/%.o)
	rm -f $@
	ar rcs $@ $^
$(BUILD)/cli/%.o: cli/%.c $(HDR) $(CLIHDR)
	@mkdir -p $(@D)
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc -c $< -o $@
$(BUILD)/colbert: $(CLISRC:cli/%.c=$(BUILD)/cli/%.o) $(BUILD)/libcolbert.a
	$(CC) $(CFLAGS_REL) $^ $(DEP_LIBS) -o $@
$(BUILD)/tests/%: tests/%.c $(BUILD)/libcolbert.a $(HDR) | $(BUILD)/tests
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc $< $(BUILD)/libcolbert.a $(DEP_LIBS) -o $@

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

# ---- the Python package's shared library (portable) -----------------------
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

test: setup all $(TESTS_REL) $(TESTS_SAN) $(SAN)/colbert
	bash tests/run.sh

# bench_step reads its texts with the CLI's cli_read_lines (cli/common.c)
$(BUILD)/bench/bench_step: bench/bench_step.c $(BUILD)/cli/common.o $(BUILD)/libcolbert.a | $(BUILD)/bench
	$(CC) $(STD) $(WARN) $(CFLAGS_REL) $(DEP_CFLAGS) -Isrc $^ $(DEP_LIBS) -o $@
$(BUILD)/bench:
	mkdir -p $@

bench: setup all $(BUILD)/bench/bench_step
	bash bench/run.sh

demo: setup all
	bash scripts/demo.sh

print-libs:
	@echo $(DEP_LIBS)
print-cflags:
	@echo $(DEP_CFLAGS)

clean:
	rm -rf $(BUILD) $(SAN) $(PYBUILD)

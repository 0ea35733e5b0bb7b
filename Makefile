# moe.c — build with `make`; `make test` runs the suite; `make help` lists targets.
#
# Every .c under src/ goes into libmoe, except src/cli/ which makes the `moe` command.
# New source files need no Makefile edit.

PREFIX  ?= /usr/local
CC      ?= cc
# Native code by default: the kernels use AVX2/FMA/F16C where the compiler may.
# `make ARCH=` builds a portable binary (scalar kernels only).
ARCH    ?= -march=native
OPT     ?= -O2
CFLAGS  ?=
WERROR  ?= -Werror
BASEFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -Wshadow -Wno-unused-parameter \
            -fPIC -pthread -Iinclude -Isrc $(ARCH) $(OPT) -g
LDLIBS  = -lopenblas -lm -lpthread
BUILD  ?= build

# Sanitizer build: `make SAN=1 test` (ASan + UBSan, separate build dir).
ifeq ($(SAN),1)
BUILD := build-san
BASEFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS  += -fsanitize=address,undefined
OPT := -O1
endif

ALL_CFLAGS = $(BASEFLAGS) $(CFLAGS)

LIB_SRC  := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC  := $(shell find src/cli -name '*.c' | sort)
TEST_SRC := $(shell find tests -maxdepth 1 -name '*.c' | sort)
BENCH_SRC:= $(shell find bench -maxdepth 1 -name '*.c' | sort)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_BIN:= $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# Every build tree has its own binary; the default one is also linked as ./moe.
MOE_BIN := $(BUILD)/moe

.PHONY: all lib test check bench install uninstall clean deps help fuzz print-deps
all: $(MOE_BIN) lib
ifeq ($(BUILD),build)
	@ln -sf $(BUILD)/moe moe
	@ln -sf $(BUILD)/libmoe.a libmoe.a
	@ln -sf $(BUILD)/libmoe.so libmoe.so
endif

lib: $(BUILD)/libmoe.a $(BUILD)/libmoe.so

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libmoe.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmoe.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(MOE_BIN): $(CLI_OBJ) $(BUILD)/libmoe.a
	$(CC) -o $@ $(CLI_OBJ) $(BUILD)/libmoe.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/run_tests: $(TEST_OBJ) $(BUILD)/libmoe.a
	$(CC) -o $@ $(TEST_OBJ) $(BUILD)/libmoe.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/bench/%: bench/%.c bench/bench_util.h $(BUILD)/libmoe.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/libmoe.a $(LDFLAGS) $(LDLIBS)

# The suite: one binary, tests named by file; `make test T=gguf` runs the tests whose
# name contains "gguf". The runner prints "N passed, N failed" last.
test: $(BUILD)/tests/run_tests $(MOE_BIN)
	MOE_BIN=$(abspath $(MOE_BIN)) $(BUILD)/tests/run_tests $(T)
check: test

bench: $(BENCH_BIN) $(MOE_BIN)

# Fuzz the GGUF reader with libFuzzer (clang). See docs/FUZZING.md.
fuzz:
	$(MAKE) -f tests/fuzz/Makefile

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(MOE_BIN) $(DESTDIR)$(PREFIX)/bin/moe
	install -m 644 include/moe.h $(DESTDIR)$(PREFIX)/include/moe.h
	install -m 644 $(BUILD)/libmoe.a $(DESTDIR)$(PREFIX)/lib/libmoe.a
	install -m 755 $(BUILD)/libmoe.so $(DESTDIR)$(PREFIX)/lib/libmoe.so
	sed -e 's|@PREFIX@|$(PREFIX)|g' moe.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/moe.pc
	if [ -f models/default.gguf ]; then install -d $(DESTDIR)$(PREFIX)/share/moe && \
	  install -m 644 models/default.gguf $(DESTDIR)$(PREFIX)/share/moe/default.gguf; fi

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/moe $(DESTDIR)$(PREFIX)/include/moe.h \
	      $(DESTDIR)$(PREFIX)/lib/libmoe.a $(DESTDIR)$(PREFIX)/lib/libmoe.so \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/moe.pc $(DESTDIR)$(PREFIX)/share/moe/default.gguf

# Debian 12 packages the build, the tests and the benchmarks need.
DEPS = build-essential pkg-config libopenblas-dev python3 python3-numpy python3-torch python3-jinja2 unicode-data
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	$$SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y $(DEPS)

print-deps:
	@echo $(DEPS)

clean:
	rm -rf build build-san moe libmoe.a libmoe.so

help:
	@echo "make            build ./moe, libmoe.a and libmoe.so"
	@echo "make deps       install the Debian packages the build and tests need (apt-get)"
	@echo "make test       run the test suite (T=substring selects tests)"
	@echo "make SAN=1 test the suite under AddressSanitizer + UndefinedBehaviorSanitizer"
	@echo "make bench      build the benchmarks in bench/ (see docs/BENCHMARKS.md)"
	@echo "make install    install to PREFIX (default /usr/local)"

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)

# volley — build, test, demo, bench.
#
#   make            build/volley and build/volley-sink
#   make test       install what is missing, build, run unit + integration tests
#   make asan       the same tests, built with ASan + UBSan
#   make demo       a small campaign against throwaway servers on loopback
#   make bench      comparative benchmarks (volley vs Postfix vs smtp-source)
#   make fuzz       build the libFuzzer targets (clang)
#   make install PREFIX=/usr/local

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
OPT     ?= -O2 -g
CFLAGS  ?=
CFLAGS  += $(OPT) -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
           -Wshadow -Wpointer-arith -Wformat=2 -fno-strict-aliasing \
           -D_GNU_SOURCE -Iinclude
LDLIBS  += -luring -lssl -lcrypto -lhiredis -lcares -lidn2 -lm

# Every engine/*.c but main.c is a library object shared by the engine,
# the sink and the unit tests.
ENGINE_SRC  := $(filter-out engine/main.c,$(wildcard engine/*.c))
ENGINE_OBJ  := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
SINK_SRC    := $(wildcard bench/sink*.c)
SINK_OBJ    := $(SINK_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)

.PHONY: all clean install deps test unit integration asan demo bench fuzz fuzz-smoke

all: $(BUILD)/volley $(BUILD)/volley-sink

$(BUILD)/%.o: %.c $(wildcard include/*.h) $(wildcard bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvolley.a: $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/volley: $(BUILD)/engine/main.o $(BUILD)/libvolley.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/volley-sink: $(SINK_OBJ) $(BUILD)/libvolley.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libvolley.a $(wildcard include/*.h) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libvolley.a $(LDLIBS) -lcmocka

# install: binaries, the shipped pools/ and sink profiles, and the systemd
# unit (its paths rewritten for PREFIX) under PREFIX/share/volley. Needs no
# root (DESTDIR/PREFIX only have to be writable), starts nothing, creates no
# user: docs/operations.md lists those steps.
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/volley/pools \
	    $(DESTDIR)$(PREFIX)/share/volley/profiles
	install -m 755 $(BUILD)/volley $(BUILD)/volley-sink $(DESTDIR)$(PREFIX)/bin/
	cp -r pools/. $(DESTDIR)$(PREFIX)/share/volley/pools/
	cp -r bench/profiles/. $(DESTDIR)$(PREFIX)/share/volley/profiles/
	sed 's|/usr/local/bin/|$(PREFIX)/bin/|g' docs/volley.service \
	    >$(DESTDIR)$(PREFIX)/share/volley/volley.service
	chmod 644 $(DESTDIR)$(PREFIX)/share/volley/volley.service

deps:
	@bash tests/deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: all
	@bash tests/integration/run.sh

test: deps
	$(MAKE) all unit
	$(MAKE) integration

# Sanitizer build in its own directory so it never mixes with -O2 objects.
asan: deps
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" all unit
	VOLLEY_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  bash tests/integration/run.sh

demo: deps all
	@bash tests/demo.sh

bench: deps all
	@bash bench/run.sh

fuzz:
	@mkdir -p $(BUILD)/fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "clang $$f"; \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
	    -o $(BUILD)/fuzz/$$n $$f $(ENGINE_SRC) $(LDLIBS) || exit 1; done

# Every fuzz target for FUZZ_SECONDS (default 10) each: a smoke run for CI.
# tests/fuzz/NAME.seeds, if there, lists directories of seed inputs (read only).
FUZZ_SECONDS ?= 10
fuzz-smoke: fuzz
	@set -e; for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  echo "== $$n ($(FUZZ_SECONDS) s)"; \
	  mkdir -p $(BUILD)/fuzz/corpus-$$n; \
	  seeds=$$(cat tests/fuzz/$$n.seeds 2>/dev/null || true); \
	  $(BUILD)/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD)/fuzz/$$n- $(BUILD)/fuzz/corpus-$$n $$seeds 2>&1 | \
	    grep -E "^stat::number_of_executed_units|ERROR|SUMMARY" || true; \
	  if ls $(BUILD)/fuzz/$$n-crash-* $(BUILD)/fuzz/$$n-leak-* >/dev/null 2>&1; then \
	    echo "fuzz: $$n found a crash"; exit 1; fi; done

clean:
	rm -rf build build-asan

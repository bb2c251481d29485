# shmring - plain Makefile.
#
#   make              library (static and shared), examples, tools
#   make demo         install packages if needed, build, run the SPSC demo
#   make check        install packages if needed, build, run the whole test suite
#   make SAN=asan     the same builds with AddressSanitizer + UBSan (in build-asan/)
#   make SAN=tsan     ThreadSanitizer build (in build-tsan/)
#   make SAN=broken-wake   the broken wait protocol, for the torture test's negative control
#   make SAN=killpoints    kill points for fault injection (build-kp/)
#   make install      PREFIX=/usr/local DESTDIR= (library, headers, shmring.pc)

# One version source: the public header.
VERSION_MAJOR := $(shell sed -n 's/^\#define SHMRING_VERSION_MAJOR //p' include/shmring.h)
VERSION_MINOR := $(shell sed -n 's/^\#define SHMRING_VERSION_MINOR //p' include/shmring.h)
VERSION_PATCH := $(shell sed -n 's/^\#define SHMRING_VERSION_PATCH //p' include/shmring.h)
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX ?= /usr/local
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
LIBEXECDIR ?= $(PREFIX)/libexec
DESTDIR ?=

CC ?= cc
CXX ?= g++
SAN ?=
OPT ?= -O2

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(OPT) -g $(WARN) -fPIC \
	-Iinclude -Isrc -MMD -MP
BASE_LDLIBS := -lhugetlbfs -lpthread

ifeq ($(SAN),asan)
BUILD ?= build-asan
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
else ifeq ($(SAN),tsan)
BUILD ?= build-tsan
# TSan does not model standalone fences (gcc warns with -Wtsan). The only ones are the
# seq_cst fences of the blocking wait protocol (src/wait.c), which the thread tests
# do not use; that protocol is checked by the Spin model instead.
SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer -Wno-tsan
else ifeq ($(SAN),broken-wake)
# Negative control for the lost-wake-up torture test: the waiter announces
# itself after its last look at the ring (src/wait.c). Never install this.
BUILD ?= build-broken
SANFLAGS := -DSHMRING_BROKEN_WAKE
else ifeq ($(SAN),killpoints)
# Fault injection: named points where the library kills its own process when
# SHMRING_KILL_AT says so (src/killpoint.c). Never install this.
BUILD ?= build-kp
SANFLAGS := -DSHMRING_KILL_POINTS
else ifeq ($(SAN),)
BUILD ?= build
SANFLAGS :=
else
$(error SAN must be empty, asan, tsan, broken-wake or killpoints)
endif

ALL_CFLAGS := $(BASE_CFLAGS) $(SANFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(SANFLAGS) $(LDFLAGS)

LIB_SRCS := $(wildcard src/*.c)
LIB_OBJS := $(LIB_SRCS:src/%.c=$(BUILD)/obj/%.o)
STATIC := $(BUILD)/libshmring.a
SONAME := libshmring.so.$(VERSION_MAJOR)
SHARED := $(BUILD)/libshmring.so.$(VERSION)

EXAMPLE_SRCS := $(wildcard examples/*.c)
EXAMPLES := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

CLI_SRCS := $(wildcard tools/*.c)
CLI := $(BUILD)/shmring

TEST_SRCS := $(wildcard tests/test_*.c)
TESTS := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(BUILD)/tests/ringpeer $(BUILD)/tests/cli_holder $(if $(wildcard tests/notify_peer.c),$(BUILD)/tests/notify_peer)

.PHONY: all lib cli examples tests check check-quick demo deps install uninstall clean lint
all: lib cli examples tests

# The shmring command (tools/*.c); it reads ring headers, so it builds with src/.
cli: $(CLI)
$(CLI): $(CLI_SRCS) $(wildcard tools/*.h) $(STATIC) $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(CLI_SRCS) -o $@ $(STATIC) $(BASE_LDLIBS)

lib: $(STATIC) $(SHARED) $(BUILD)/shmring.pc

$(BUILD)/obj/%.o: src/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(STATIC): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJS) src/libshmring.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libshmring.map \
		-Wl,-z,defs $(ALL_LDFLAGS) -o $@ $(LIB_OBJS) $(BASE_LDLIBS)
	ln -sf libshmring.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libshmring.so

$(BUILD)/shmring.pc: shmring.pc.in include/shmring.h
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

examples: $(EXAMPLES)
$(BUILD)/examples/%: examples/%.c $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $< -o $@ $(STATIC) -luring $(BASE_LDLIBS)

tests: $(TESTS) $(TEST_HELPERS)
$(BUILD)/tests/%: tests/%.c tests/testutil.h $(STATIC) $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $< -o $@ $(STATIC) -lcmocka -luring $(BASE_LDLIBS)

# Benchmarks: shmring against the physical limit and kernel IPC in one run
# (bench/run.sh; about 3 minutes; bench-smoke is the CI form).
BENCH := $(BUILD)/bench/shmring-bench
$(BENCH): $(wildcard bench/*.c) $(wildcard bench/*.h) $(STATIC)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) $(wildcard bench/*.c) -o $@ $(STATIC) $(BASE_LDLIBS) -lrt -lm
bench: deps lib $(BENCH)
	bench/run.sh
bench-smoke: lib $(BENCH)
	bench/run.sh --quick

# Soak: producers and consumers under stress-ng with kills (soak/run.sh;
# DURATION= seconds, default 600), then the long leak check (10^4
# create/attach/close/unlink cycles with kills, tests/test_leaks.sh --long).
soak: deps all
	$(MAKE) SAN=killpoints lib
	soak/build.sh
	soak/run.sh $(if $(DURATION),--duration $(DURATION))
	tests/test_leaks.sh --long

# Fuzz the attach path (fuzz/run.sh; SECONDS= default 60).
fuzz: deps
	fuzz/run.sh $(if $(FUZZ_SECONDS),--seconds $(FUZZ_SECONDS))

.PHONY: bench bench-smoke soak fuzz

# Installs the Debian packages the build and the tests need (root only; no-op when present).
deps:
	@scripts/install-deps.sh

demo: deps
	$(MAKE) lib examples
	BUILD=$(BUILD) examples/demo.sh

# The whole suite: normal build, ASan+UBSan build, TSan on the thread tests, linters,
# scripts, model check. tests/run-suite.sh prints what it runs and a closing count.
check: deps
	tests/run-suite.sh

# Just the cmocka tests of one build (SAN= selects the build).
check-quick: tests
	tests/run-suite.sh --only-unit --build $(BUILD)

lint:
	tests/lint.sh

# Library, headers, shmring.pc, the shmring command, man pages, and the host
# scripts (doctor, hugepage/, sysctl/) under $(LIBEXECDIR)/shmring.
SCRIPTS_DIR := $(LIBEXECDIR)/shmring
install: lib cli
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man7 \
		$(DESTDIR)$(SCRIPTS_DIR)/hugepage $(DESTDIR)$(SCRIPTS_DIR)/sysctl
	install -m 0644 $(STATIC) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(SHARED) $(DESTDIR)$(LIBDIR)/
	ln -sf libshmring.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libshmring.so
	install -m 0644 include/shmring.h include/shmring.hpp $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' shmring.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/shmring.pc
	install -m 0755 $(CLI) $(DESTDIR)$(BINDIR)/
	$(if $(wildcard man/*.1),install -m 0644 $(wildcard man/*.1) $(DESTDIR)$(MANDIR)/man1/)
	$(if $(wildcard man/man3/*.3),install -m 0644 $(wildcard man/man3/*.3) $(DESTDIR)$(MANDIR)/man3/)
	$(if $(wildcard man/man7/*.7),install -m 0644 $(wildcard man/man7/*.7) $(DESTDIR)$(MANDIR)/man7/)
	install -m 0755 tools/shmring-doctor $(DESTDIR)$(SCRIPTS_DIR)/
	install -m 0755 hugepage/*.sh $(DESTDIR)$(SCRIPTS_DIR)/hugepage/
	install -m 0755 sysctl/*.sh $(DESTDIR)$(SCRIPTS_DIR)/sysctl/
	install -m 0644 sysctl/shmring.conf $(DESTDIR)$(SCRIPTS_DIR)/sysctl/

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libshmring.a $(DESTDIR)$(LIBDIR)/libshmring.so \
	      $(DESTDIR)$(LIBDIR)/$(SONAME) $(DESTDIR)$(LIBDIR)/libshmring.so.$(VERSION) \
	      $(DESTDIR)$(INCLUDEDIR)/shmring.h $(DESTDIR)$(INCLUDEDIR)/shmring.hpp \
	      $(DESTDIR)$(LIBDIR)/pkgconfig/shmring.pc $(DESTDIR)$(BINDIR)/shmring \
	      $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(wildcard man/*.1))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man3/,$(notdir $(wildcard man/man3/*.3))) \
	      $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(wildcard man/man7/*.7)))
	rm -rf $(DESTDIR)$(SCRIPTS_DIR)

clean:
	rm -rf build build-asan build-tsan build-broken build-kp

-include $(LIB_OBJS:.o=.d)

#!/usr/bin/env bash
# test_install.sh - make install into a temporary prefix (and a DESTDIR stage),
# then build outside programs against it with pkg-config, once with the C API
# and once with the C++ wrapper, shared and static, run them, and check that
# make uninstall removes everything it installed.
# Prints PASS/FAIL per case and "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
ok() { echo "PASS $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

prefix=$work/prefix
if make -s install PREFIX="$prefix" >"$work/install.log" 2>&1; then
	ok install_into_prefix
else
	cat "$work/install.log"
	bad install_into_prefix "make install failed"
	echo "$passed passed, $failed failed"
	exit 1
fi

for f in lib/libshmring.a lib/libshmring.so lib/pkgconfig/shmring.pc include/shmring.h \
	include/shmring.hpp bin/shmring share/man/man3/shmring_create.3 \
	libexec/shmring/shmring-doctor libexec/shmring/hugepage/setup.sh; do
	[ -e "$prefix/$f" ] || bad "installed_files" "$f missing"
done
[ "$failed" = 0 ] && ok installed_files
soname=$(readelf -d "$prefix/lib/libshmring.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libshmring.so.$(sed -n 's/^#define SHMRING_VERSION_MAJOR //p' include/shmring.h)" ] &&
	ok soname_on_major || bad soname_on_major "soname is '$soname'"
exported=$(nm -D --defined-only "$prefix/lib/libshmring.so" | awk '$3 ~ /^shmring_/ {print $3}' | sed 's/@.*//' | sort)
declared=$(sed -n 's/^[A-Za-z_ ]*[ *]\(shmring_[a-z_0-9]*\)(.*/\1/p' include/shmring.h | sort -u)
if [ "$exported" = "$declared" ] && ! nm -D --defined-only "$prefix/lib/libshmring.so" |
	awk '{print $3}' | grep -v -E '^(shmring_|SHMRING_)' | grep -q .; then
	ok exports_only_the_public_api
else
	bad exports_only_the_public_api "$(diff <(echo "$exported") <(echo "$declared") | head -5)"
fi

export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cat >"$work/app.c" <<'C'
#include <shmring.h>
#include <stdio.h>
#include <string.h>
int main(void)
{
	struct shmring_config cfg = {.kind = SHMRING_SPSC, .msg_size = 8, .capacity = 4,
				     .flags = SHMRING_F_NO_HUGEPAGE};
	struct shmring *r;
	char name[64];
	snprintf(name, sizeof(name), "/shmring-t-install-%d", (int)getpid());
	if (shmring_create(name, &cfg, &r)) { puts(shmring_last_error()); return 1; }
	long v = 42, w = 0;
	int ok = shmring_try_push(r, &v) == 0 && shmring_try_pop(r, &w) == 0 && w == 42;
	shmring_close(r);
	puts(ok ? "app: ok" : "app: wrong");
	return !ok;
}
C
sed -i 's/#include <string.h>/#include <string.h>\n#include <unistd.h>/' "$work/app.c"
cat >"$work/app.cpp" <<'CPP'
#include <shmring.hpp>
#include <iostream>
#include <string>
#include <unistd.h>
struct Tick { long seq; double px; };
int main()
{
	std::string name = "/shmring-t-installpp-" + std::to_string(getpid());
	MPSCSharedRingBuffer<Tick, 8> q(name.c_str(), SHMRING_F_NO_HUGEPAGE);
	auto r = MPSCSharedRingBuffer<Tick, 8>::attach(name);
	q.push_wait(Tick{7, 1.5});
	Tick t{};
	bool ok = r.try_pop(t) && t.seq == 7;
	std::cout << (ok ? "app++: ok" : "app++: wrong") << std::endl;
	return ok ? 0 : 1;
}
CPP
# shellcheck disable=SC2046 # pkg-config prints a list of flags
if cc -std=c11 -Wall -Wextra -Werror "$work/app.c" -o "$work/app" $(pkg-config --cflags --libs shmring) &&
	LD_LIBRARY_PATH=$prefix/lib "$work/app"; then ok c_program_with_pkg_config
else bad c_program_with_pkg_config "build or run failed"; fi
# shellcheck disable=SC2046
if cc -std=c11 "$work/app.c" -o "$work/app-static" $(pkg-config --cflags shmring) \
	"$prefix/lib/libshmring.a" $(pkg-config --libs-only-l --static shmring | sed 's/-lshmring//') &&
	"$work/app-static"; then ok c_program_static
else bad c_program_static "build or run failed"; fi
# shellcheck disable=SC2046
if g++ -std=c++17 -Wall -Wextra -Werror "$work/app.cpp" -o "$work/app++" $(pkg-config --cflags --libs shmring) &&
	LD_LIBRARY_PATH=$prefix/lib "$work/app++"; then ok cxx_program_with_pkg_config
else bad cxx_program_with_pkg_config "build or run failed"; fi
if "$prefix/bin/shmring" --version >/dev/null 2>&1; then ok installed_command_runs
else bad installed_command_runs "shmring --version failed"; fi

# A staged install (DESTDIR) puts every path under the stage.
if make -s install DESTDIR="$work/stage" PREFIX=/usr >/dev/null 2>&1 &&
	[ -f "$work/stage/usr/lib/libshmring.so.$(make -s -f /dev/stdin <<<'include Makefile
print: ; @echo $(VERSION)' print)" ] && [ -f "$work/stage/usr/bin/shmring" ]; then
	ok destdir_stage
else bad destdir_stage "files not under the stage"; fi

if make -s uninstall PREFIX="$prefix" >/dev/null 2>&1 &&
	[ -z "$(find "$prefix" -type f -o -type l)" ]; then ok uninstall_removes_everything
else bad uninstall_removes_everything "left: $(find "$prefix" -type f -o -type l | head -5 | tr '\n' ' ')"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

#!/usr/bin/env bash
# soak/build.sh - build what the soak and fault-injection runs need.
#
# The library twice (make lib: build/libshmring.a; make SAN=killpoints lib:
# build-kp/libshmring.a), then, into $SOAK_BUILD (default build/soak):
#   supervise    the case supervisor and checker       (normal library)
#   soakpeer     producer/consumer process              (normal library)
#   soakpeer-kp  the same, with the library's kill points (kill-point library)
#   leakpeer     create/attach/close cycles with kills  (normal library)
# A program is rebuilt only when it is older than its sources or its library,
# into a new file renamed over the old one. Prints the directory it built into
# on its last line. The runs (run.sh, tests/test_faults.sh) copy the programs
# into their own temporary directory, so a rebuild never changes a run midway.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: soak/build.sh [--quiet]
Builds the normal and kill-point libraries (through make) and the soak
programs into $SOAK_BUILD (default build/soak). Prints that directory last.
EOF
}

quiet=0
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--quiet) quiet=1 ;;
	*) echo "soak/build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
out=${SOAK_BUILD:-build/soak}
mkdir -p "$out"
jobs=$(nproc 2>/dev/null || echo 2)

# Other people may be building in the same tree: one retry if make trips over them.
make_lib() {
	make -s -j"$jobs" "$@" lib >/dev/null || { sleep 2; make -s -j"$jobs" "$@" lib >/dev/null; }
}
make_lib
make_lib SAN=killpoints

CC=${CC:-cc}
CFLAGS=(-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
	-Wmissing-prototypes -Iinclude)
LIBS=(-lhugetlbfs -lpthread)

# build OUTPUT LIBRARY SOURCE [EXTRA_LIBS...]
build() {
	local target=$out/$1 lib=$2 src=$3
	shift 3
	if [[ -x $target && $target -nt $src && $target -nt soak/soak.h && $target -nt $lib &&
		$target -nt include/shmring.h ]]; then
		return 0
	fi
	((quiet)) || echo "soak/build.sh: building $target"
	# Into a new file, renamed over the old one: a run using the old program keeps it.
	"$CC" "${CFLAGS[@]}" "$src" -o "$target.tmp.$$" "$lib" "${LIBS[@]}" "$@"
	mv -f "$target.tmp.$$" "$target"
}
build supervise build/libshmring.a soak/supervise.c -lm
build soakpeer build/libshmring.a soak/soakpeer.c
build soakpeer-kp build-kp/libshmring.a soak/soakpeer.c
build leakpeer build/libshmring.a soak/leakpeer.c
echo "$out"

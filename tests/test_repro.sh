#!/usr/bin/env bash
# test_repro.sh - the reproducers in soak/repro/, built and run as tests.
#   eos_dead_claim mpsc|mpmc   end of stream is reported only once no message
#                 is left, also behind a dead producer's claim (kill-point
#                 library; issue #10, defect 11)
#   create_crash_orphan        creators SIGKILLed at random moments inside a
#                 hugetlbfs create leave no file and no hugepage behind once
#                 the name is unlinked or created again (issue #10, defect
#                 12); needs root for the hugepages, so it is skipped, and
#                 counted as skipped, without them
# Each reproducer exits 0 when the bug is absent and 1 when it shows.
# The last line is "N passed, N failed, N skipped".
set -euo pipefail
case ${1:-} in
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
esac
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
make -s lib >/dev/null
make -s SAN=killpoints lib >/dev/null
bin=$(mktemp -d /tmp/shmring-repro.XXXXXX)
trap 'rm -rf "$bin"' EXIT
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude soak/repro/eos_dead_claim.c \
	build-kp/libshmring.a -lhugetlbfs -lpthread -o "$bin/eos_dead_claim"
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude soak/repro/create_crash_orphan.c \
	build/libshmring.a -lhugetlbfs -lpthread -o "$bin/create_crash_orphan"

passed=0 failed=0 skipped=0
run() { # run NAME CMD...: pass on exit 0, fail otherwise (watchdog 60 s)
	local name=$1 rc=0
	shift
	timeout -k 5 60 "$@" || rc=$?
	if [ "$rc" = 0 ]; then
		echo "PASS $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name (exit $rc)"
		failed=$((failed + 1))
	fi
}
run eos_dead_claim_mpsc "$bin/eos_dead_claim" mpsc
run eos_dead_claim_mpmc "$bin/eos_dead_claim" mpmc
if [ "$(id -u)" = 0 ] && [ -n "${SHMRING_HUGETLBFS_DIR:-}" ]; then
	run create_crash_orphan "$bin/create_crash_orphan"
elif [ "$(id -u)" = 0 ]; then
	run create_crash_orphan hugepage/ci-hugepages.sh --pages 16 -- "$bin/create_crash_orphan"
else
	echo "SKIP create_crash_orphan: needs root to reserve hugepages"
	skipped=$((skipped + 1))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]

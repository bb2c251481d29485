#!/usr/bin/env bash
# The whole test suite, as `make check` and .ci/run run it.
#
# Builds the library three ways (normal; AddressSanitizer+UBSan; ThreadSanitizer
# for the thread tests), runs every cmocka binary and test script with a time
# bound, and prints one closing line: "suite: N passed, N failed, N skipped".
# N counts test cases (cmocka tests and script cases); a binary that crashes,
# hangs past its bound or exits non-zero without a cmocka verdict counts as a
# failed case.
#
# As root it reserves hugepages and mounts hugetlbfs for the run through
# hugepage/ci-hugepages.sh, which restores the host's state afterwards.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: tests/run-suite.sh [--only-unit] [--build DIR] [--quick]
  --only-unit   run only the cmocka binaries of one build (default: everything)
  --build DIR   the build directory for --only-unit (default: build)
  --quick       skip the sanitizer builds, valgrind and the linters
USAGE
}

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
only_unit=0
quick=0
build=build
while [ $# -gt 0 ]; do
	case "$1" in
		-h|--help) usage; exit 0 ;;
		--only-unit) only_unit=1 ;;
		--quick) quick=1 ;;
		--build) build=$2; shift ;;
		--inner) inner=1 ;;
		*) usage >&2; exit 2 ;;
	esac
	shift
done

# Re-run ourselves inside the hugepage environment when root (once).
if [ "${inner:-0}" != 1 ] && [ "$only_unit" = 0 ] && [ "$(id -u)" = 0 ] &&
	[ -x hugepage/ci-hugepages.sh ]; then
	args=(--inner)
	[ "$quick" = 1 ] && args+=(--quick)
	exec hugepage/ci-hugepages.sh --pages 64 -- "$0" "${args[@]}"
fi

jobs=$(nproc 2>/dev/null || echo 2)
logdir=$top/build/suite-logs
mkdir -p "$logdir"
passed=0
failed=0
skipped=0
failures=()

# run_cmocka NAME TIMEOUT_S CMD...: run a cmocka binary, count its cases.
run_cmocka() {
	local name=$1 tmo=$2
	shift 2
	local log=$logdir/$name.log rc=0
	echo "=== $name: $*"
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1 || rc=$?
	cat "$log"
	local p f s
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	passed=$((passed + ${p:-0}))
	skipped=$((skipped + ${s:-0}))
	failed=$((failed + ${f:-0}))
	if [ "$rc" != 0 ] && [ -z "$f" ]; then
		echo "=== $name: exited with status $rc without a cmocka verdict (crash, watchdog or timeout)"
		failed=$((failed + 1))
	fi
	if [ "$rc" != 0 ] || [ -n "$f" ]; then
		failures+=("$name")
	fi
}

# run_script NAME TIMEOUT_S CMD...: a script that ends with "N passed, N failed[, N skipped]".
run_script() {
	local name=$1 tmo=$2
	shift 2
	local log=$logdir/$name.log rc=0
	echo "=== $name: $*"
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1 || rc=$?
	cat "$log"
	local line p f s
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1 || true)
	p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
	s=$(echo "$line" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
	passed=$((passed + ${p:-0}))
	failed=$((failed + ${f:-0}))
	skipped=$((skipped + ${s:-0}))
	if [ "$rc" != 0 ] && [ "${f:-0}" = 0 ]; then
		echo "=== $name: exited with status $rc"
		failed=$((failed + 1))
	fi
	if [ "$rc" != 0 ] || [ "${f:-0}" != 0 ]; then
		failures+=("$name")
	fi
}

# run_expect_fail NAME TIMEOUT_S PATTERN CMD...: passes when CMD fails and prints PATTERN
# (a test shown to catch the bug it is for).
run_expect_fail() {
	local name=$1 tmo=$2 pattern=$3
	shift 3
	local log=$logdir/$name.log rc=0
	echo "=== $name (must fail): $*"
	timeout -k 10 "$tmo" "$@" >"$log" 2>&1 || rc=$?
	cat "$log"
	if [ "$rc" != 0 ] && grep -q "$pattern" "$log"; then
		echo "=== $name: failed as it must (status $rc, '$pattern' found)"
		passed=$((passed + 1))
	else
		echo "=== $name: did NOT fail as it must (status $rc)"
		failed=$((failed + 1))
		failures+=("$name")
	fi
}

unit_tests() {
	local b=$1 tag=$2
	for t in test_ops test_attach test_threads test_mp test_blocking test_liveness test_hugepage; do
		[ -x "$b/tests/$t" ] || continue
		run_cmocka "$tag$t" 900 "$b/tests/$t"
	done
	for t in "$b"/tests/test_*; do
		case "$(basename "$t")" in
			test_ops|test_attach|test_threads|test_mp|test_blocking|test_liveness|test_hugepage|*.d|*.o) continue ;;
		esac
		[ -x "$t" ] && run_cmocka "$tag$(basename "$t")" 900 "$t"
	done
}

if [ "$only_unit" = 1 ]; then
	unit_tests "$build" ""
else
	shm_before=$(ls /dev/shm | grep -c -E '^(shmring-t-|shmring_demo_)' || true)

	echo "=== build (normal)"
	make -s -j"$jobs" all
	unit_tests build ""

	[ -x tests/test_seed_examples.sh ] &&
		run_script seed_examples 120 env SHMRING_LIB=build/libshmring.a tests/test_seed_examples.sh
	[ -x tests/test_examples.sh ] &&
		run_script examples 300 env EXAMPLES_DIR=build/examples tests/test_examples.sh
	[ -x tests/scripts/test_host_scripts.sh ] &&
		run_script host_scripts 300 tests/scripts/test_host_scripts.sh
	[ -x tests/model/run.sh ] && run_script spin_model 300 tests/model/run.sh
	run_script install 300 tests/test_install.sh
	[ -x tests/test_cli.sh ] && run_script cli 300 env BUILD=build tests/test_cli.sh
	[ -x tests/test_man.sh ] && run_script man_pages 120 tests/test_man.sh
	if [ -x soak/build.sh ]; then
		make -s -j"$jobs" SAN=killpoints lib
		soak/build.sh
		run_script fault_injection 600 tests/test_faults.sh
		run_script role_handover 120 tests/test_role_handover.sh
		run_script repro 180 tests/test_repro.sh
		run_script leaks 300 tests/test_leaks.sh
		run_script soak_short 600 soak/run.sh --duration 120
	fi
	[ -x fuzz/run.sh ] && run_script fuzz 300 fuzz/run.sh --seconds 60
	if [ -x bench/run.sh ]; then
		if make -s build/bench/shmring-bench; then
			run_script bench_smoke 300 bench/run.sh --quick
		else
			echo "=== bench_smoke: the benchmark does not build"
			failed=$((failed + 1))
			failures+=("bench_build")
		fi
	fi

	if [ "$quick" = 0 ]; then
		echo "=== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
		make -s -j"$jobs" SAN=asan tests
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
			unit_tests build-asan "asan:"

		echo "=== negative control: the torture test against a deliberately broken wait protocol"
		make -s -j"$jobs" SAN=broken-wake build-broken/tests/test_blocking \
			build-broken/tests/test_notify build-broken/tests/notify_peer
		run_expect_fail "broken_wake_torture" 120 "LOST WAKE-UP" \
			env SHMRING_TEST_ONLY=test_no_wakeup_is_lost_in_torture_cycles \
			build-broken/tests/test_blocking
		run_expect_fail "broken_wake_notify_torture" 120 "LOST WAKE-UP" \
			env SHMRING_TEST_ONLY=test_no_wakeup_is_lost_when_the_publish_races_the_arm \
			build-broken/tests/test_notify

		echo "=== build (ThreadSanitizer: thread tests)"
		make -s -j"$jobs" SAN=tsan build-tsan/tests/test_threads
		TSAN_OPTIONS=halt_on_error=1 run_cmocka "tsan:test_threads" 900 build-tsan/tests/test_threads

		echo "=== valgrind memcheck (single-process tests)"
		for t in test_ops test_attach; do
			run_cmocka "valgrind:$t" 900 valgrind -q --error-exitcode=99 --leak-check=full \
				--errors-for-leak-kinds=definite build/tests/$t
		done

		run_script lint 600 tests/lint.sh
	fi

	# Nothing may be left behind.
	shm_after=$(ls /dev/shm | grep -c -E '^(shmring-t-|shmring_demo_)' || true)
	if [ "$shm_after" -gt "$shm_before" ]; then
		echo "=== litter: rings left in /dev/shm:"
		ls /dev/shm | grep -E '^(shmring-t-|shmring_demo_)' || true
		failed=$((failed + 1))
		failures+=("litter")
	else
		passed=$((passed + 1))
		echo "=== litter: /dev/shm clean"
	fi
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
	echo "failed steps: ${failures[*]}"
fi
echo "suite: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]

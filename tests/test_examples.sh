#!/usr/bin/env bash
# test_examples.sh - the three example demos run end to end and leave no ring.
#
# Runs examples/demo.sh (SPSC), examples/orders_demo.sh (MPSC) and
# examples/workers_demo.sh (MPMC) with small counts, each bounded by its own
# --timeout and by timeout(1) around it. A case passes when its script exits 0
# and no /dev/shm/shmring_demo_* is left afterwards.
#
# Environment: EXAMPLES_DIR (default build/examples): where the example
# binaries are. Run from the repository root. Prints PASS/FAIL per case and
# a last line "N passed, N failed"; exits 1 if any case failed.
set -euo pipefail

bin_dir=${EXAMPLES_DIR:-build/examples}
case_timeout=40 # per demo script; each program inside has 30 s
passed=0
failed=0
out=$(mktemp "${TMPDIR:-/tmp}/shmring-examples.XXXXXX")
trap 'rm -f "$out"' EXIT

leftover_rings() {
	compgen -G '/dev/shm/shmring_demo_*' || true
}

# run_case NAME RING SCRIPT ARGS... : RING is the one ring the demo makes
run_case() {
	local name=$1 ring=/dev/shm/${2#/} rc=0 left=
	shift 2
	timeout -k 5 "$case_timeout" "$@" --bin-dir "$bin_dir" --timeout 30 >"$out" 2>&1 || rc=$?
	[[ -e $ring ]] && left=$ring
	if [[ $rc -eq 0 && -z $left ]]; then
		echo "PASS $name"
		passed=$((passed + 1))
		return
	fi
	if [[ $rc -ne 0 ]]; then
		echo "FAIL $name: exit status $rc$([[ $rc -eq 124 ]] && echo " (ran past ${case_timeout} s)")"
	else
		echo "FAIL $name: rings left behind: $left"
	fi
	sed 's/^/    /' "$out"
	failed=$((failed + 1))
}

left=$(leftover_rings)
if [[ -n $left ]]; then
	# The demo scripts remove rings that no process maps; the check after
	# each case then shows whether that worked.
	echo "note: rings there before the tests: ${left//$'\n'/ }"
fi

run_case spsc_demo_delivers_in_order_and_reports /shmring_demo_feed examples/demo.sh \
	--latency-msgs 20000 --msgs 1000000
run_case mpsc_orders_demo_keeps_each_strategys_order /shmring_demo_orders examples/orders_demo.sh \
	--strategies 3 --orders 50000 --capacity 64
run_case mpmc_workers_demo_loses_and_duplicates_nothing /shmring_demo_work examples/workers_demo.sh \
	--feeds 3 --workers 2 --msgs 50000 --capacity 64

left=$(leftover_rings)
if [[ -n $left ]]; then
	echo "FAIL no_demo_ring_left_behind: still there: ${left//$'\n'/ }"
	failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]

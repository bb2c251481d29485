#!/usr/bin/env bash
# test_faults.sh - fault injection across every ring kind and every named kill
# point, with exact accounting of every message (soak/supervise.c).
#
# Six cases, one supervisor run each, about 15 s of faults apiece:
#   <kind>-points  (spsc, mpsc, mpmc; blocking rings, so that wait_sleeping is
#                  reachable) every fault restarts a process from the
#                  kill-point build with SHMRING_KILL_AT=point:N, rotating
#                  through every point the kind and role reach. Every death is
#                  at a known point, so the account is exact: the messages
#                  lost, the ring's skipped and recovered counters must equal
#                  what those points imply.
#   <kind>-random  (spsc and mpsc spin rings, mpmc blocking) SIGKILL at random
#                  moments, in every API form (copy, batch, zero-copy); losses
#                  must stay within what the deaths can explain.
# and a seventh, coverage: together the cases killed at least 200 processes and
# hit all eleven named points (pop_before_head: the MPSC consumer between its
# EMPTY store and its head store; recover_locked: a push or pop inside a
# recovery, holding the dead claimant's byte).
#
# In each case: nothing lost beyond the in-flight messages of the dead,
# nothing duplicated, no reorder per producer, no checksum error, progress
# within 1 s of each death, no hang. Prints each case's report and the
# counts; the last line is "N passed, N failed". Bounded to about 3 minutes
# (each supervisor also has its own alarm, and timeout(1) is around it).
#
# Environment: SOAK_BUILD (default build/soak), FAULTS_SECONDS (default 15
# per case), FAULTS_MS (default 40: mean time between faults).
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}
case ${1:-} in
-h | --help) usage; exit 0 ;;
"") ;;
*) echo "test_faults.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
esac

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
secs=${FAULTS_SECONDS:-15}
fault_ms=${FAULTS_MS:-40}
work=
case_pid=
cleanup() {
	if [[ -n $case_pid ]]; then
		kill -TERM "$case_pid" 2>/dev/null || true
		wait "$case_pid" 2>/dev/null || true
	fi
	rm -f /dev/shm/shmring-faults-$$-* 2>/dev/null || true
	[[ -z $work ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
built=$(soak/build.sh --quiet | tail -1)
work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-faults.XXXXXX")
# The run's own copies: a rebuild meanwhile does not change the programs under it.
bin=$work/bin
mkdir -p "$bin"
cp "$built"/supervise "$built"/soakpeer "$built"/soakpeer-kp "$bin"/
summary=$work/summary.txt
: >"$summary"

passed=0
failed=0
failures=()

# run_case LABEL KIND FAULTS [supervise args...]
run_case() {
	local label=$1 kind=$2 faults=$3 rc=0
	shift 3
	local log=$work/$label.log
	timeout -k 10 $((secs + 120)) "$bin/supervise" --kind "$kind" --faults "$faults" \
		--duration "$secs" --fault-ms "$fault_ms" --min-kills 30 --recovery-ms 1000 \
		--hang-s 10 --peer "$bin/soakpeer" --peer-kp "$bin/soakpeer-kp" --label "$label" \
		--kp-max 2000 --arm-timeout-ms 2000 --log-gib 1 --summary "$summary" \
		--base "/shmring-faults-$$-$label" "$@" >"$log" 2>&1 &
	case_pid=$!
	wait "$case_pid" || rc=$?
	case_pid=
	grep -v '^supervise\[' "$log" || true
	if ((rc == 0)); then
		echo "PASS: $label"
		passed=$((passed + 1))
	else
		echo "FAIL: $label (exit status $rc)"
		grep '^supervise\[' "$log" | head -n 20 || true
		failed=$((failed + 1))
		failures+=("$label")
	fi
}

run_case spsc-points spsc points --blocking
run_case mpsc-points mpsc points --blocking
run_case mpmc-points mpmc points --blocking
run_case spsc-random spsc random
run_case mpsc-random mpsc random
run_case mpmc-random mpmc random --blocking

# Coverage over all cases: kills, and every named point hit at least once.
field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
kills=0 random=0 point=0 expl=0 unexpl=0 dup=0 redel=0 reorder=0 bad=0 moved=0 worst=0
declare -A pk=()
while read -r line; do
	kills=$((kills + $(field kills "$line")))
	random=$((random + $(field kills_random "$line")))
	point=$((point + $(field kills_point "$line")))
	expl=$((expl + $(field lost_explained "$line")))
	unexpl=$((unexpl + $(field lost_unexplained "$line")))
	dup=$((dup + $(field dup "$line")))
	redel=$((redel + $(field redelivered "$line")))
	reorder=$((reorder + $(field reorder "$line")))
	bad=$((bad + $(field bad "$line")))
	moved=$((moved + $(field moved "$line")))
	w=$(field worst_recovery_ns "$line")
	((w > worst)) && worst=$w
	for kv in $line; do
		if [[ $kv == pk_*=* ]]; then
			k=${kv%%=*}
			k=${k#pk_}
			pk[$k]=$((${pk[$k]:-0} + ${kv#*=}))
		fi
	done
done < <(grep '^SOAK-SUMMARY' "$summary")

echo
echo "=== fault injection totals"
echo "messages moved: $moved"
echo "kills: $kills (random SIGKILL $random, at named points $point)"
missing_points=()
line="named points:"
for p in push_claimed push_mid_copy push_before_publish push_after_publish pop_claimed \
	pop_mid_copy pop_before_release pop_after_release wait_sleeping pop_before_head \
	recover_locked; do
	line+=" $p=${pk[$p]:-0}"
	((${pk[$p]:-0} > 0)) || missing_points+=("$p")
done
echo "$line"
echo "lost: $expl explained (in-flight messages of killed processes), $unexpl unexplained"
echo "duplicated: $dup (re-delivered once to a successor after a consumer died before release: $redel)"
echo "reordered: $reorder; checksum errors: $bad"
echo "worst recovery after a death: $(awk "BEGIN{printf \"%.1f\", $worst/1e6}") ms (limit 1000 ms)"
if ((kills >= 200 && ${#missing_points[@]} == 0)); then
	echo "PASS: coverage ($kills kills >= 200, all 11 named points hit)"
	passed=$((passed + 1))
else
	echo "FAIL: coverage ($kills kills, need 200; points never hit: ${missing_points[*]:-none})"
	failed=$((failed + 1))
	failures+=(coverage)
fi
((${#failures[@]} == 0)) || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))

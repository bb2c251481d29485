#!/usr/bin/env bash
# soak/run.sh - the soak: every ring kind under every stress profile, with
# processes killed at random moments and at the library's named kill points
# throughout, and every message accounted for (soak/supervise.c).
#
# Cases: {spsc, mpsc, mpmc} x {sched, memory, aggressive}, run one after the
# other, each for an equal share of the duration. Each case passes or fails
# on its own; the last line is "N passed, N failed".
set -euo pipefail

PROG=soak/run.sh

usage() {
	cat <<'EOF'
Usage: soak/run.sh [--duration N] [options]     (make soak; DURATION=3600 make soak)

Runs the soak: SPSC (1 producer, 1 consumer), MPSC (3 producers, 1 consumer)
and MPMC (4 producers, 4 consumers, blocking mode) rings under three stress-ng
profiles, with fault injection all along, and checks every message.

  --duration N     total seconds, split evenly over the cases (default: $DURATION,
                   else 600). The CI form is --duration 120.
  --kinds LIST     ring kinds to run (default spsc,mpsc,mpmc)
  --profiles LIST  stress profiles to run (default sched,memory,aggressive):
                     sched       stress-ng --cpu 1 --switch 1 --futex 1
                     memory      stress-ng --vm 1 --vm-bytes 256M --cache 1 --tlb-shootdown 1
                     aggressive  stress-ng --cpu 1 --switch 1 --vm 1 --vm-bytes 128M --aggressive
                     none        no stress-ng
  --fault-ms N     mean time between fault events in each case (default 150)
  --min-messages N fail unless the cases move at least N messages in total
  --no-hugepages   do not reserve hugepages for the run (see below)
  --keep-logs DIR  keep each case's full report in DIR (default: a temp dir, removed)
  --report DIR     print the summary of a run kept with --keep-logs DIR, and exit
  -h, --help       this text

Faults: half of the events SIGKILL a random producer or consumer; the other
half restart one from the kill-point build (soakpeer-kp) with
SHMRING_KILL_AT=point:N, rotating through every named point the ring kind and
role can reach. Every dead process is restarted at once as a new instance.

Rings: spin-mode SPSC/MPSC under the sched profile, blocking-mode rings
otherwise (MPMC always). Under the memory and aggressive profiles the rings
are created with SHMRING_F_NO_HUGEPAGE: stress-ng's memory stressors may take
hugepages, and a ring must not depend on winning that race. Under the sched
profile the rings take hugepages when there are some: as root, without
--no-hugepages and outside hugepage/ci-hugepages.sh, the run wraps itself in
hugepage/ci-hugepages.sh --pages 16, which reserves them and puts the host's
hugepage state back afterwards.

Each case fails on: a lost message that no death explains, a duplicate, a
message out of order per producer, a checksum error, ring counters (skipped,
recovered, takeovers) outside what the deaths allow, no progress within 1 s
after a death within 10 s (stress-ng can stall the kernel's teardown of a
killed process for seconds; tests/test_faults.sh holds the 1 s bound), a
hang (no progress for 10 s, or a phase overrunning its
bound), a peer that crashed or failed, or stress-ng failing. Exit status: 0
when every case passed, 1 otherwise, 2 on bad usage.
EOF
}

note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

# The summary over all cases, from their SOAK-SUMMARY lines. Sets total_moved.
print_summary() { # SUMMARY_FILE
	field() { sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }
	total_moved=0 total_kills=0 total_random=0 total_point=0 total_expl=0 total_unexpl=0
	total_dup=0 total_redel=0 total_reorder=0 total_bad=0 total_skipped=0 total_recovered=0
	total_takeovers=0 max_lat=0 worst_rec=0
	declare -A pk=()
	echo
	printf '%-18s %-6s %12s %7s %9s %10s %5s %7s %5s %10s %10s\n' case result moved kills lost-expl \
		lost-unexpl dup reorder bad max-lat-ms recover-ms
	while read -r line; do
		[[ $line == SOAK-SUMMARY* ]] || continue
		lbl=$(field label "$line")
		res=$(field result "$line")
		moved=$(field moved "$line")
		kills=$(field kills "$line")
		expl=$(field lost_explained "$line")
		unexpl=$(field lost_unexplained "$line")
		dup=$(field dup "$line")
		reo=$(field reorder "$line")
		bad=$(field bad "$line")
		lat=$(field max_lat_ns "$line")
		rec=$(field worst_recovery_ns "$line")
		printf '%-18s %-6s %12s %7s %9s %10s %5s %7s %5s %10s %10s\n' "$lbl" "$res" "${moved:-0}" \
			"${kills:-0}" "${expl:--}" "${unexpl:--}" "${dup:--}" "${reo:--}" "${bad:--}" \
			"$(((${lat:-0}) / 1000000))" "$(awk "BEGIN{printf \"%.1f\", ${rec:-0}/1e6}")"
		total_moved=$((total_moved + ${moved:-0}))
		total_kills=$((total_kills + ${kills:-0}))
		total_random=$((total_random + $(field kills_random "$line" || echo 0) + 0))
		total_point=$((total_point + $(field kills_point "$line" || echo 0) + 0))
		total_expl=$((total_expl + ${expl:-0}))
		total_unexpl=$((total_unexpl + ${unexpl:-0}))
		total_dup=$((total_dup + ${dup:-0}))
		total_redel=$((total_redel + $(field redelivered "$line") + 0))
		total_reorder=$((total_reorder + ${reo:-0}))
		total_bad=$((total_bad + ${bad:-0}))
		total_skipped=$((total_skipped + $(field skipped "$line") + 0))
		total_recovered=$((total_recovered + $(field recovered "$line") + 0))
		total_takeovers=$((total_takeovers + $(field takeovers "$line") + 0))
		((${lat:-0} > max_lat)) && max_lat=${lat:-0}
		((${rec:-0} > worst_rec)) && worst_rec=${rec:-0}
		for kv in $line; do
			if [[ $kv == pk_*=* ]]; then
				key=${kv%%=*}
				pk[${key#pk_}]=$((${pk[${key#pk_}]:-0} + ${kv#*=}))
			fi
		done
	done <"$1"
	echo "messages moved:   $total_moved"
	echo "kills:            $total_kills (random SIGKILL $total_random, at named points $total_point)"
	points_line=
	for p in push_claimed push_mid_copy push_before_publish push_after_publish pop_claimed \
		pop_mid_copy pop_before_release pop_after_release wait_sleeping; do
		points_line+=" $p=${pk[$p]:-0}"
	done
	echo "named points:    $points_line"
	echo "ring counters:    skipped $total_skipped, recovered $total_recovered, takeovers $total_takeovers"
	echo "lost:             $total_expl explained, $total_unexpl unexplained"
	echo "duplicated:       $total_dup (re-delivered once after a consumer died before release: $total_redel)"
	echo "reordered:        $total_reorder; checksum errors $total_bad"
	echo "max latency:      $((max_lat / 1000000)) ms (end to end, includes waits for restarted peers)"
	echo "worst recovery:   $(awk "BEGIN{printf \"%.1f\", $worst_rec/1e6}") ms (limit 10000 ms under stress; tests/test_faults.sh holds 1000 ms)"
}

duration=${DURATION:-600}
kinds=spsc,mpsc,mpmc
profiles=sched,memory,aggressive
fault_ms=150
min_messages=0
hugepages=1
keep_logs=
report=
orig_args=("$@")
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--duration) (($# >= 2)) || usage_error "--duration needs a value"; duration=$2; shift ;;
	--duration=*) duration=${1#*=} ;;
	--kinds) (($# >= 2)) || usage_error "--kinds needs a value"; kinds=$2; shift ;;
	--profiles) (($# >= 2)) || usage_error "--profiles needs a value"; profiles=$2; shift ;;
	--fault-ms) (($# >= 2)) || usage_error "--fault-ms needs a value"; fault_ms=$2; shift ;;
	--min-messages) (($# >= 2)) || usage_error "--min-messages needs a value"; min_messages=$2; shift ;;
	--no-hugepages) hugepages=0 ;;
	--keep-logs) (($# >= 2)) || usage_error "--keep-logs needs a value"; keep_logs=$2; shift ;;
	--report) (($# >= 2)) || usage_error "--report needs a value"; report=$2; shift ;;
	*) usage_error "unknown argument '$1'" ;;
	esac
	shift
done
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 10)); then
	usage_error "--duration must be a whole number of seconds >= 10"
fi
if ! [[ $fault_ms =~ ^[0-9]+$ ]] || ((fault_ms == 0)); then
	usage_error "--fault-ms must be a positive number"
fi
[[ $min_messages =~ ^[0-9]+$ ]] || usage_error "--min-messages must be a number"

# --report DIR: the summary of a run kept with --keep-logs DIR, without running anything.
if [[ -n $report ]]; then
	[[ -f $report/summary.txt ]] || usage_error "no $report/summary.txt (a run kept with --keep-logs)"
	echo "=== soak summary of $report"
	print_summary "$report/summary.txt"
	p=$(grep -c ' result=PASS' "$report/summary.txt" || true)
	f=$(grep -c ' result=FAIL' "$report/summary.txt" || true)
	grep ' result=FAIL' "$report/summary.txt" | sed 's/^SOAK-SUMMARY label=\([^ ]*\).*/failed case: \1/' || true
	echo "$p passed, $f failed"
	((f == 0))
	exit
fi

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
start_s=$SECONDS

# Hugepages for the rings that may use them, restored afterwards (as root only).
if ((hugepages)) && [[ $(id -u) == 0 && -z ${SHMRING_CI_HUGEPAGES:-} && -x hugepage/ci-hugepages.sh ]] &&
	! grep -qs hugetlbfs /proc/mounts; then
	note "reserving hugepages for the run through hugepage/ci-hugepages.sh"
	exec scripts/with-hugepages.sh "$top/soak/run.sh" "${orig_args[@]}"
fi

bin=
logdir=
case_pid=
cleanup() {
	# The running case (timeout(1) passes TERM on; the supervisor kills its peers).
	if [[ -n $case_pid ]]; then
		kill -TERM "$case_pid" 2>/dev/null || true
		wait "$case_pid" 2>/dev/null || true
	fi
	# A supervisor removes its objects itself; these are what a SIGKILL left behind.
	rm -f /dev/shm/shmring-soak-$$-* 2>/dev/null || true
	local d
	for d in ${SHMRING_HUGETLBFS_DIR:-} $(awk '$3 == "hugetlbfs" {print $2}' /proc/mounts); do
		rm -f "$d"/shmring.shmring-soak-$$-* 2>/dev/null || true
	done
	[[ -n $keep_logs || -z $logdir ]] || rm -rf "$logdir"
	[[ -z $bin ]] || rm -rf "$bin"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

command -v stress-ng >/dev/null || { note "stress-ng is not installed (apt-get install stress-ng)"; exit 2; }
built=$(soak/build.sh --quiet | tail -1)
logdir=${keep_logs:-$(mktemp -d "${TMPDIR:-/tmp}/shmring-soak.XXXXXX")}
mkdir -p "$logdir"
# The run's own copies: a rebuild meanwhile does not change the programs under it.
bin=$(mktemp -d "${TMPDIR:-/tmp}/shmring-soak-bin.XXXXXX")
cp "$built"/supervise "$built"/soakpeer "$built"/soakpeer-kp "$bin"/
summary=$logdir/summary.txt
: >"$summary"

stress_args() {
	case $1 in
	sched) echo "--cpu 1 --switch 1 --futex 1" ;;
	memory) echo "--vm 1 --vm-bytes 256M --cache 1 --tlb-shootdown 1" ;;
	aggressive) echo "--cpu 1 --switch 1 --vm 1 --vm-bytes 128M --aggressive" ;;
	none) echo "" ;;
	*) usage_error "unknown profile '$1'" ;;
	esac
}

IFS=, read -r -a kind_list <<<"$kinds"
IFS=, read -r -a profile_list <<<"$profiles"
for k in "${kind_list[@]}"; do
	[[ $k == spsc || $k == mpsc || $k == mpmc ]] || usage_error "unknown kind '$k'"
done
for p in "${profile_list[@]}"; do stress_args "$p" >/dev/null; done
ncases=$((${#kind_list[@]} * ${#profile_list[@]}))
# Each case spends about 2 s outside its run (start, stop, drain, check); the share of
# each case is worked out again before it starts, from the time really left.
overhead=2
case_seconds() { # CASES_LEFT
	local s=$(((duration - (SECONDS - start_s)) / $1 - overhead))
	((s >= 5)) || s=5
	echo "$s"
}
note "$ncases cases of about $(case_seconds "$ncases") s each (duration ${duration} s; build took $((SECONDS - start_s)) s); reports in $logdir"
cases_left=$ncases

passed=0
failed=0
failures=()
for profile in "${profile_list[@]}"; do
	for kind in "${kind_list[@]}"; do
		label=$kind-$profile
		per_case=$(case_seconds "$cases_left")
		cases_left=$((cases_left - 1))
		args=(--kind "$kind" --duration "$per_case" --faults mixed --fault-ms "$fault_ms"
			--peer "$bin/soakpeer" --peer-kp "$bin/soakpeer-kp" --label "$label"
			--summary "$summary" --base "/shmring-soak-$$-$label")
		if [[ $kind == mpmc || $profile != sched ]]; then
			args+=(--blocking)
		fi
		if [[ $profile == memory || $profile == aggressive ]]; then
			args+=(--no-hugepage)
		fi
		# Under stress-ng on 2 cores the kernel's teardown of a killed process
		# can stall it and its peers in D state for over a second (seen:
		# unlink_file_vma_batch_process; 1.5 s under the sched profile, 4.2 s
		# under memory stress), and it keeps its liveness lock until that
		# teardown ends: the ring can only wait. The soak measures and reports
		# recovery and fails only a 10 s stall (a hang); the 1 s bound is held
		# by tests/test_faults.sh, which kills without stress-ng.
		args+=(--recovery-ms 10000)
		stress=$(stress_args "$profile")
		[[ -z $stress ]] || args+=(--stress "$stress")
		log=$logdir/$label.log
		rc=0
		timeout -k 10 $((per_case + 240)) "$bin/supervise" "${args[@]}" >"$log" 2>&1 &
		case_pid=$!
		wait "$case_pid" || rc=$?
		case_pid=
		grep -v '^supervise\[' "$log" || true
		if ((rc == 0)); then
			passed=$((passed + 1))
		else
			echo "--- $label: exit status $rc; what it said on stderr:"
			grep '^supervise\[' "$log" | head -n 20 || true
			failed=$((failed + 1))
			failures+=("$label")
			grep -q "SOAK-SUMMARY label=$label " "$summary" ||
				echo "SOAK-SUMMARY label=$label kind=$kind result=FAIL moved=0 kills=0" >>"$summary"
		fi
	done
done

echo
echo "=== soak summary (${duration} s requested, $((SECONDS - start_s)) s taken)"
print_summary "$summary"
if ((min_messages > 0 && total_moved < min_messages)); then
	echo "FAIL: $total_moved messages moved, fewer than the $min_messages asked for"
	failed=$((failed + 1))
	failures+=(min-messages)
fi
((${#failures[@]} == 0)) || echo "failed cases: ${failures[*]}"
echo "$passed passed, $failed failed"
((failed == 0))

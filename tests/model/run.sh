#!/usr/bin/env bash
# Model-check the futex wait/wake protocol (tests/model/futex_wait.pml) with Spin.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: tests/model/run.sh [--extended] [--verbose]
  Model-checks tests/model/futex_wait.pml with Spin: the correct protocol in
  several configurations must verify exhaustively with 0 errors, and each
  deliberately broken variant must yield a counterexample (errors >= 1, a
  trail that replays to an assertion violation). Prints PASS/FAIL per variant
  and, last, "N passed, M failed". Exit status 1 on any failure, 2 on bad use.

  --extended  also run bigger configurations (3 consumers; no partial-order
              reduction): about 40 s more CPU time, under 1 GiB of memory.
  --verbose   print pan's full output for every variant.
  -h, --help  this text.

  Environment: SPIN (default spin), CC (default gcc), PAN_MEMLIM (MiB, 4096).
  Work happens in a temporary directory that is removed on exit; to replay a
  counterexample by hand, see tests/model/README.md.
USAGE
}

extended=0
verbose=0
for arg in "$@"; do
	case "$arg" in
	-h|--help) usage; exit 0 ;;
	--extended) extended=1 ;;
	--verbose) verbose=1 ;;
	*) usage >&2; exit 2 ;;
	esac
done

SPIN=${SPIN:-spin}
CC=${CC:-gcc}
PAN_MEMLIM=${PAN_MEMLIM:-4096}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
model="$here/futex_wait.pml"

for tool in "$SPIN" "$CC"; do
	command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: '$tool' not found (apt-get install spin gcc)" >&2; exit 1; }
done
[[ -r "$model" ]] || { echo "run.sh: cannot read $model" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-model.XXXXXX")
cleanup() {
	local pids
	pids=$(jobs -p)
	# shellcheck disable=SC2086  # our own background checks, by pid
	[[ -z "$pids" ]] || kill $pids 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# name | expectation | spin -D flags | pan cc flags | for "cex": text the
# violated assertion must contain (csleep: a consumer asleep with a message
# available; psleep: a producer asleep with a free slot; reached: a vacuity
# monitor fired). "verify" = 0 errors over a complete state-space search.
variants=(
	"correct_2p2c_cap4|verify|-DNP=2 -DNC=2 -DNMSG=3 -DCAP=4||"
	"correct_1p2c_cap4|verify|-DNP=1 -DNC=2 -DNMSG=3 -DCAP=4||"
	"correct_2p2c_cap1_mirror|verify|-DNP=2 -DNC=2 -DNMSG=3 -DCAP=1||"
	"reach_two_sleeping_consumers|cex|-DREACH_TWO_SLEEPERS||reached"
	"reach_sleeping_producer|cex|-DCAP=1 -DREACH_PRODUCER_SLEEPS||reached"
	"BROKEN_ANNOUNCE_LATE|cex|-DBROKEN_ANNOUNCE_LATE||csleep"
	"BROKEN_PRODUCER_EARLY_CHECK|cex|-DBROKEN_PRODUCER_EARLY_CHECK||csleep"
	"BROKEN_PUSH_ANNOUNCE_LATE|cex|-DCAP=1 -DBROKEN_PUSH_ANNOUNCE_LATE||psleep"
	"BROKEN_CONSUMER_EARLY_CHECK|cex|-DCAP=1 -DBROKEN_CONSUMER_EARLY_CHECK||psleep"
	"BROKEN_WAKE_ONE|cex|-DBROKEN_WAKE_ONE||csleep"
	"no_epoch_waiters_bit_only|cex|-DEPOCH_MOD=1||csleep"
	"epoch_wrap_aba_epoch_mod_2|cex|-DEPOCH_MOD=2||csleep"
)
if ((extended)); then
	variants+=(
		"correct_1p3c_cap4|verify|-DNP=1 -DNC=3 -DNMSG=3 -DCAP=4||"
		"correct_1p2c_cap2_nmsg4|verify|-DNP=1 -DNC=2 -DNMSG=4 -DCAP=2||"
		"correct_2p2c_cap4_noreduce|verify|-DNP=2 -DNC=2 -DNMSG=3 -DCAP=4|-DNOREDUCE|"
		"correct_2p2c_cap2_mirror|verify|-DNP=2 -DNC=2 -DNMSG=3 -DCAP=2||"
	)
fi

# check_variant N NAME EXPECT DEFS CCFLAGS ASSERTION: runs one variant in $work/N and
# writes its verdict line to $work/N/result (first word PASS or FAIL).
check_variant() {
	local n=$1 name=$2 expect=$3 defs=$4 ccflags=$5 assertion=$6
	local dir="$work/$n" why="" errors="?" states="?" detail="" opt=-O1 hash=-w22
	local out="$dir/pan.out"
	mkdir -p "$dir"
	cp "$model" "$dir/futex_wait.pml"
	# Counterexample searches are tiny: save the compile time and the
	# hash table (its size changes speed only, never what is explored).
	if [[ "$expect" == cex ]]; then opt=-O0 hash=-w16; fi
	# shellcheck disable=SC2086  # defs/ccflags are deliberately word-split
	if ! (cd "$dir" && "$SPIN" -a $defs futex_wait.pml >spin.out 2>&1); then
		why="spin -a failed: $(tail -n 3 "$dir/spin.out" | tr '\n' ' ')"
	elif ! (cd "$dir" && "$CC" $opt -w -DSAFETY -DCOLLAPSE -DMEMLIM="$PAN_MEMLIM" $ccflags \
			-o pan pan.c >cc.out 2>&1); then
		why="gcc failed: $(tail -n 3 "$dir/cc.out" | tr '\n' ' ')"
	else
		# -m: depth bound far above the ~200 steps the model needs; -c1: stop
		# at the first error. pan's exit status says nothing useful: parse.
		(cd "$dir" && ./pan -m100000 -c1 "$hash" >"$out" 2>&1) || true
	fi

	if [[ -z "$why" ]]; then
		errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' "$out" | tail -n 1)
		states=$(sed -n 's/^ *\([0-9][0-9]*\) states, stored.*/\1/p' "$out" | tail -n 1)
		errors=${errors:-?}
		states=${states:-?}
		if [[ "$errors" == "?" ]]; then
			why="no 'errors:' line in pan output"
		elif grep -qiE 'max search depth too small|depth limit reached' "$out"; then
			why="search cut short by the depth limit (-m)"
		elif grep -qiE 'out of memory|MEMLIM|hash table is full' "$out"; then
			why="search cut short by memory"
		elif [[ "$expect" == verify ]]; then
			if ((errors != 0)); then
				why="expected 0 errors: $(grep -m1 -E '^pan:' "$out" || true)"
			elif grep -q 'Search not completed' "$out"; then
				why="search not completed"
			elif ! grep -q 'Full statespace search' "$out"; then
				why="not a full state-space search"
			fi
		else
			if ((errors < 1)); then
				why="expected a counterexample, got none"
			elif ! grep -m1 'assertion violated' "$out" | grep -qF "$assertion"; then
				why="wrong counterexample (expected an assertion on '$assertion'): $(grep -m1 'assertion violated' "$out" || true)"
			elif [[ ! -f "$dir/futex_wait.pml.trail" ]]; then
				why="no trail file written"
			else
				# shellcheck disable=SC2086
				(cd "$dir" && "$SPIN" -t $defs futex_wait.pml >replay.out 2>&1) || true
				if grep -q 'assertion violated' "$dir/replay.out"; then
					detail=" ($(grep -m1 -oE 'assertion violated.*' "$out" | sed 's/ (at depth.*//' || true))"
				else
					why="trail does not replay to an assertion violation"
				fi
			fi
		fi
	fi

	if [[ -z "$why" ]]; then
		printf 'PASS %-30s expect=%-6s errors: %s, states stored: %s%s\n' \
			"$name" "$expect" "$errors" "$states" "$detail" >"$dir/result"
	else
		printf 'FAIL %-30s expect=%-6s errors: %s, states stored: %s: %s\n' \
			"$name" "$expect" "$errors" "$states" "$why" >"$dir/result"
	fi
}

jobs_max=$(nproc 2>/dev/null || echo 2)
if ((jobs_max > 4)); then jobs_max=4; fi
n=0
for v in "${variants[@]}"; do
	IFS='|' read -r name expect defs ccflags assertion <<<"$v"
	n=$((n + 1))
	while (($(jobs -rp | wc -l) >= jobs_max)); do wait -n || true; done
	check_variant "$n" "$name" "$expect" "$defs" "$ccflags" "$assertion" &
done
wait

passed=0
failed=0
for ((i = 1; i <= n; i++)); do
	dir="$work/$i"
	if [[ -f "$dir/result" ]]; then
		line=$(cat "$dir/result")
	else
		line="FAIL variant #$i: no result (the check itself crashed)"
	fi
	echo "$line"
	if [[ "$line" == PASS* ]]; then
		passed=$((passed + 1))
		((verbose)) && [[ -f "$dir/pan.out" ]] && sed 's/^/    | /' "$dir/pan.out"
	else
		failed=$((failed + 1))
		if [[ -f "$dir/pan.out" ]]; then
			if ((verbose)); then sed 's/^/    | /' "$dir/pan.out"; else tail -n 25 "$dir/pan.out" | sed 's/^/    | /'; fi
		fi
	fi
done

echo "$passed passed, $failed failed"
((failed == 0)) || exit 1

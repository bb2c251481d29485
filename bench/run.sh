#!/usr/bin/env bash
# bench/run.sh - build and run shmring-bench with the project's default sizes,
# then check that its results are complete.
#
# Writes build/bench-results/table.txt (the table), bench.json and latency.png.
# The check does not judge the numbers: it asks that every row was measured
# (non-zero ping-pong p50 and throughput, and streaming p50 where the row
# streams) or skipped with a reason, that every row group is present, that the
# plot exists, and that no ring or queue name was left behind. It prints
# "PASS bench_smoke" or "FAIL bench_smoke: ..." and then one count line.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: bench/run.sh [--quick] [-- extra shmring-bench options]

  (default)  the full run: 100000 samples per row and phase, ring sizes
             8,64,256,1024, kernel IPC at 64 B; 1-3 minutes on a 2-vCPU VM
             (most of it in the kernel IPC ping-pong rows). --time-limit 165
             keeps it under 3 minutes when the machine is loaded: phases then
             stop early and their rows say how many samples they got
  --quick    the CI smoke form, well under a minute: 20000 samples, sizes 8,64,
             shorter throughput phases, --time-limit 40; still every row
  -h, --help this text

Anything after "--" goes to shmring-bench (see build/bench/shmring-bench --help),
after the defaults, so it overrides them: bench/run.sh -- --cpus 2,3

Builds build/bench/shmring-bench first when it is missing or older than its
sources. Results go to build/bench-results/: table.txt, bench.json, latency.png.
Exit status: 0 when the check passed, 1 when it failed, 2 on a usage error.
USAGE
}

quick=0
extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) quick=1; shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "bench/run.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
done

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=build/bench-results
bin=build/bench/shmring-bench
mkdir -p "$out" build/bench

# Build (the same command as the Makefile's) when the binary is missing or stale.
if [ ! -x "$bin" ] || [ -n "$(find bench src include -newer "$bin" \( -name '*.c' -o -name '*.h' \) -print -quit)" ]; then
	echo "run.sh: building $bin"
	if ! { make -s lib &&
	       gcc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude -Isrc bench/*.c \
		   build/libshmring.a -lhugetlbfs -lpthread -lrt -lm -o "$bin"; }; then
		echo "FAIL bench_smoke: the build failed"
		echo "0 passed, 1 failed"
		exit 1
	fi
fi

if [ "$quick" -eq 1 ]; then
	args=(--samples 20000 --msgs 500000 --ipc-msgs 20000 --sizes "8,64" --probe-rt 5000
	      --time-limit 40 --row-timeout 30)
else
	args=(--samples 100000 --msgs 5000000 --ipc-msgs 100000 --sizes "8,64,256,1024"
	      --time-limit 165)
fi
json="$out/bench.json"
png="$out/latency.png"
rm -f "$json" "$png" "$out/table.txt"

start=$(date +%s)
rc=0
"$bin" "${args[@]}" --json "$json" --plot "$png" --table "$out/table.txt" \
	${extra[@]+"${extra[@]}"} || rc=$?
echo "run.sh: shmring-bench exited with $rc after $(( $(date +%s) - start )) s"
if [ "$rc" -eq 130 ]; then
	echo "FAIL bench_smoke: interrupted"
	echo "0 passed, 1 failed"
	exit 1
fi

# ------------------------------------------------------------ the check
problems=()
if [ ! -s "$json" ]; then
	problems+=("no JSON at $json")
else
	# shmring-bench writes one row per line: {"mechanism": ..., "group": ..., ...}
	nrows=0
	groups=" "
	while IFS= read -r line; do
		nrows=$((nrows + 1))
		mech=$(sed -n 's/.*"mechanism": "\([^"]*\)".*/\1/p' <<<"$line")
		size=$(sed -n 's/.*"size": \([0-9]*\),.*/\1/p' <<<"$line")
		group=$(sed -n 's/.*"group": "\([^"]*\)".*/\1/p' <<<"$line")
		status=$(sed -n 's/.*"status": "\([a-z]*\)".*/\1/p' <<<"$line")
		reason=$(sed -n 's/.*"reason": "\(\([^"\\]\|\\.\)*\)".*/\1/p' <<<"$line")
		groups+="$group "
		case "$status" in
		ok)
			pp=$(sed -n 's/.*"pingpong": {"p50": \([0-9.]*\),.*/\1/p' <<<"$line")
			tput=$(sed -n 's/.*"throughput_msgs_per_s": \([0-9.]*\),.*/\1/p' <<<"$line")
			if grep -q '"streaming": null' <<<"$line"; then
				st=1
			else
				st=$(sed -n 's/.*"streaming": {"p50": \([0-9.]*\),.*/\1/p' <<<"$line")
			fi
			for v in "pingpong p50=$pp" "throughput=$tput" "streaming p50=$st"; do
				if ! awk -v x="${v#*=}" 'BEGIN { exit !(x + 0 > 0) }'; then
					problems+=("$mech $size: ${v%%=*} is '${v#*=}'")
				fi
			done
			;;
		skipped)
			[ -n "$reason" ] || problems+=("$mech $size: skipped without a reason")
			;;
		*)
			problems+=("$mech $size: $status${reason:+: $reason}")
			;;
		esac
	done < <(grep '^ *{"mechanism": ' "$json")
	[ "$nrows" -gt 0 ] || problems+=("no rows in $json")
	# Every group must have run, unless the caller chose groups with --rows.
	case " ${extra[*]+"${extra[*]}"} " in
	*" --rows"*) ;;
	*)
		for g in phys textbook spsc mpsc mpmc batch zerocopy hugepage blocking \
			 pipe unix tcp mq eventfd futex; do
			case "$groups" in
			*" $g "*) ;;
			*) problems+=("no $g row in $json") ;;
			esac
		done
		;;
	esac
fi
if [ ! -s "$png" ]; then
	problems+=("no plot at $png")
elif [ "$(head -c 4 "$png" | od -An -c | tr -d ' ')" != "211PNG" ]; then
	problems+=("$png is not a PNG")
fi
[ "$rc" -eq 0 ] || problems+=("shmring-bench exited with $rc")
left=$(find /dev/shm -maxdepth 1 -name 'shmring-bench-*' 2>/dev/null | head -5)
[ -z "$left" ] || problems+=("left behind in /dev/shm: $left")

echo "results: $out/table.txt $json $png"
if [ ${#problems[@]} -eq 0 ]; then
	echo "PASS bench_smoke"
	echo "1 passed, 0 failed"
	exit 0
fi
for p in "${problems[@]}"; do
	echo "  problem: $p"
done
echo "FAIL bench_smoke: ${#problems[@]} problem(s), the first: ${problems[0]}"
echo "0 passed, 1 failed"
exit 1

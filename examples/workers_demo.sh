#!/usr/bin/env bash
# workers_demo.sh - run the MPMC demo: several feeds, several workers, one ring.
#
#   1. worker 0 creates /shmring_demo_work (--create); workers 1.. attach.
#   2. the feeds attach and send their items; each prints what it sent
#      (count, sum of seq, sum of a hash of each item).
#   3. once every feed has finished, "feed --stop-workers W" queues one STOP
#      per worker behind all the data; each worker takes one, prints what it
#      received from each feed, and exits.
#   4. the script sums the workers' lines per feed and compares them with the
#      feeds' lines: equal counts and sums mean nothing was lost or duplicated
#      (each worker also checks payloads and per-feed order itself).
#
# Exits non-zero if any program failed, overran --timeout, or the tally
# differs. Binaries come from --bin-dir, else $EXAMPLES_DIR, else
# ${BUILD:-build}/examples.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [options]
  --feeds N           feed processes (default 3)
  --workers N         worker processes (default 2)
  --msgs N            items per feed (default 200000)
  --capacity N        ring capacity, a power of two (default 1024)
  --name NAME         ring name (default /shmring_demo_work)
  --bin-dir DIR       where feed and worker are
                      (default \$EXAMPLES_DIR or \${BUILD:-build}/examples)
  --timeout S         the most any program may run (default 60)
  -h, --help          this text
EOF
}

feeds=3
workers=2
msgs=200000
capacity=1024
name=/shmring_demo_work
bin_dir=${EXAMPLES_DIR:-${BUILD:-build}/examples}
timeout_s=60

while [[ $# -gt 0 ]]; do
	case $1 in
	--feeds) feeds=$2; shift 2 ;;
	--workers) workers=$2; shift 2 ;;
	--msgs) msgs=$2; shift 2 ;;
	--capacity) capacity=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--bin-dir) bin_dir=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

for b in feed worker; do
	if [[ ! -x $bin_dir/$b ]]; then
		echo "$0: $bin_dir/$b not found: build with 'make examples' or pass --bin-dir" >&2
		exit 2
	fi
done
if ((feeds < 1 || workers < 1)); then
	echo "$0: --feeds and --workers must be at least 1" >&2
	exit 2
fi

# A ring left by a crashed run would make the create fail (EEXIST). If no
# process maps its file, remove it through the creator's --unlink, saying so;
# if one does, another demo is running and the create will say so.
clear_stale_ring() { # clear_stale_ring CREATOR NAME
	local file=/dev/shm/${2#/}
	[[ -e $file ]] || return 0
	if grep -qsF -e " $file" /proc/[0-9]*/maps; then
		return 0
	fi
	echo "$0: note: ring $2 was left behind by an earlier run; removing it"
	"$1" --name "$2" --unlink >/dev/null || true
}

clear_stale_ring "$bin_dir/worker" "$name"

logdir=$(mktemp -d "${TMPDIR:-/tmp}/shmring-workers.XXXXXX")
pids=()
# timeout(1) runs in its own process group and passes TERM on to its program,
# which closes its ring cleanly.
# shellcheck disable=SC2317 # called from a trap
stop_all() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
}
trap 'rm -rf "$logdir"' EXIT
trap 'echo "$0: interrupted" >&2; stop_all; wait 2>/dev/null || true; cat "$logdir"/* 2>/dev/null || true; exit 130' INT TERM

run_bg() { # run_bg LOGFILE PROGRAM ARGS... : start under timeout(1), record the pid
	local log=$1
	shift
	timeout -k 5 "$timeout_s" "$@" >"$log" 2>&1 &
	last_pid=$!
	pids+=("$last_pid")
}

status=0
worker_pids=()
for ((w = 0; w < workers; w++)); do
	create=()
	((w == 0)) && create=(--create --capacity "$capacity")
	run_bg "$logdir/worker$w" "$bin_dir/worker" --name "$name" --id "$w" "${create[@]}"
	worker_pids+=("$last_pid")
done
feed_pids=()
for ((f = 0; f < feeds; f++)); do
	run_bg "$logdir/feed$f" "$bin_dir/feed" --name "$name" --id "$f" --msgs "$msgs"
	feed_pids+=("$last_pid")
done

for ((f = 0; f < feeds; f++)); do
	rc=0
	wait "${feed_pids[$f]}" || rc=$?
	cat "$logdir/feed$f"
	if [[ $rc -ne 0 ]]; then
		echo "$0: feed $f failed (exit $rc)" >&2
		status=1
	fi
done

# All data is queued: now one STOP per worker (sent even after a failure, so
# the workers end now rather than at their idle timeout).
rc=0
timeout -k 5 "$timeout_s" "$bin_dir/feed" --name "$name" --stop-workers "$workers" || rc=$?
if [[ $rc -ne 0 ]]; then
	echo "$0: feed --stop-workers failed (exit $rc)" >&2
	status=1
fi

for ((w = 0; w < workers; w++)); do
	rc=0
	wait "${worker_pids[$w]}" || rc=$?
	cat "$logdir/worker$w"
	if [[ $rc -ne 0 ]]; then
		echo "$0: worker $w failed (exit $rc)" >&2
		status=1
	fi
done

# The tally: per feed, what the workers received against what the feed sent.
declare -A sent_count sent_seqsum sent_hashsum got_count got_seqsum got_hashsum
for ((f = 0; f < feeds; f++)); do
	got_count[$f]=0 got_seqsum[$f]=0 got_hashsum[$f]=0
	read -r _ id _ cnt _ ssum _ hsum < <(grep -E '^feed [0-9]+ sent ' "$logdir/feed$f" || echo "feed $f sent -1 seqsum -1 hashsum -1")
	sent_count[$id]=$cnt sent_seqsum[$id]=$ssum sent_hashsum[$id]=$hsum
done
while read -r _ _ _ f _ cnt _ ssum _ hsum; do
	if [[ -z ${got_count[$f]+x} ]]; then
		echo "$0: a worker reports items from feed $f, which was not started" >&2
		status=1
		continue
	fi
	got_count[$f]=$((got_count[$f] + cnt))
	got_seqsum[$f]=$((got_seqsum[$f] + ssum))
	got_hashsum[$f]=$((got_hashsum[$f] + hsum))
done < <(cat "$logdir"/worker* | grep -E '^worker [0-9]+ feed [0-9]+ count ' || true)

for ((f = 0; f < feeds; f++)); do
	if [[ ${sent_count[$f]:-x} == "${got_count[$f]}" && ${sent_seqsum[$f]:-x} == "${got_seqsum[$f]}" &&
		${sent_hashsum[$f]:-x} == "${got_hashsum[$f]}" ]]; then
		echo "tally: feed $f: sent ${sent_count[$f]}, workers received ${got_count[$f]}, sums match"
	else
		echo "tally: feed $f: MISMATCH: sent ${sent_count[$f]:-?} (seqsum ${sent_seqsum[$f]:-?}," \
			"hashsum ${sent_hashsum[$f]:-?}), received ${got_count[$f]} (seqsum" \
			"${got_seqsum[$f]}, hashsum ${got_hashsum[$f]})" >&2
		status=1
	fi
done

if [[ $status -eq 0 ]]; then
	echo "workers demo: OK (nothing lost, nothing duplicated)"
else
	echo "workers demo: FAILED"
fi
exit "$status"

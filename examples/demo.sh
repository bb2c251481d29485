#!/usr/bin/env bash
# demo.sh - run the SPSC demo: processor and feed_handler as two processes.
#
# The processor starts first, in the background; it waits (bounded) for the
# ring that the feed handler then creates. The feed handler waits (bounded)
# until the processor has taken its first message, sends a paced latency phase
# and a back-to-back throughput phase, and exits once the processor has
# drained the ring. The script prints the processor's report and exits
# non-zero if either program failed or overran --timeout.
#
# Binaries come from --bin-dir, else $EXAMPLES_DIR, else ${BUILD:-build}/examples.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [options]
  --msgs N            throughput-phase messages (default 10000000)
  --latency-msgs N    latency-phase messages (default 200000)
  --name NAME         ring name (default /shmring_demo_feed)
  --feed-cpu K        CPU for feed_handler, -1 for none (default 0)
  --proc-cpu K        CPU for processor, -1 for none (default 1)
  --bin-dir DIR       where feed_handler and processor are
                      (default \$EXAMPLES_DIR or \${BUILD:-build}/examples)
  --timeout S         the most either program may run (default 60)
  -h, --help          this text
EOF
}

msgs=10000000
latency_msgs=200000
name=/shmring_demo_feed
feed_cpu=0
proc_cpu=1
bin_dir=${EXAMPLES_DIR:-${BUILD:-build}/examples}
timeout_s=60

while [[ $# -gt 0 ]]; do
	case $1 in
	--msgs) msgs=$2; shift 2 ;;
	--latency-msgs) latency_msgs=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--feed-cpu) feed_cpu=$2; shift 2 ;;
	--proc-cpu) proc_cpu=$2; shift 2 ;;
	--bin-dir) bin_dir=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

for b in feed_handler processor; do
	if [[ ! -x $bin_dir/$b ]]; then
		echo "$0: $bin_dir/$b not found: build with 'make examples' or pass --bin-dir" >&2
		exit 2
	fi
done

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

clear_stale_ring "$bin_dir/feed_handler" "$name"

log=$(mktemp "${TMPDIR:-/tmp}/shmring-demo.XXXXXX")
proc_pid=
# On Ctrl-C or TERM: stop the programs (they close the ring cleanly), then leave.
# timeout(1) runs in its own process group and passes TERM on to its program.
# shellcheck disable=SC2317 # called from traps
cleanup() {
	if [[ -n $proc_pid ]]; then kill -TERM "$proc_pid" 2>/dev/null || true; fi
	rm -f "$log"
}
# shellcheck disable=SC2317 # called from traps
on_signal() {
	echo "$0: interrupted" >&2
	if [[ -n $proc_pid ]]; then kill -TERM "$proc_pid" 2>/dev/null || true; fi
	if [[ -n ${feed_pid:-} ]]; then kill -TERM "$feed_pid" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	cat "$log" 2>/dev/null || true
	rm -f "$log"
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

# Every program runs under timeout(1): TERM at the limit, KILL 5 s later.
timeout -k 5 "$timeout_s" "$bin_dir/processor" --name "$name" --cpu "$proc_cpu" >"$log" 2>&1 &
proc_pid=$!

feed_rc=0
timeout -k 5 "$timeout_s" "$bin_dir/feed_handler" --name "$name" --cpu "$feed_cpu" \
	--msgs "$msgs" --latency-msgs "$latency_msgs" &
feed_pid=$!
wait "$feed_pid" || feed_rc=$?
feed_pid=

proc_rc=0
wait "$proc_pid" || proc_rc=$?
proc_pid=

echo "---- processor ----"
cat "$log"
echo "-------------------"

status=0
if [[ $feed_rc -ne 0 ]]; then
	[[ $feed_rc -eq 124 ]] && echo "$0: feed_handler ran past ${timeout_s} s" >&2
	echo "$0: feed_handler failed (exit $feed_rc)" >&2
	status=1
fi
if [[ $proc_rc -ne 0 ]]; then
	[[ $proc_rc -eq 124 ]] && echo "$0: processor ran past ${timeout_s} s" >&2
	echo "$0: processor failed (exit $proc_rc)" >&2
	status=1
fi
[[ $status -eq 0 ]] && echo "demo: OK"
exit "$status"

#!/usr/bin/env bash
# notify_demo.sh - an io_uring event-loop consumer woken through the ring's
# notify fd, fed by a producer in another, unrelated process (both are
# children of this shell; neither is the other's parent).
#
# The consumer starts first and waits (bounded) for the ring; the producer
# creates it, sends bursts with one idle pause in the middle (the consumer's
# one-second heartbeat shows it idle), then END, waits until the consumer
# drained the ring and closes it, which removes the name. The script prints
# the consumer's report and exits non-zero if either program failed, a
# message was lost, or the ring was left behind.
#
# Binaries come from --bin-dir, else $EXAMPLES_DIR, else ${BUILD:-build}/examples.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [options]
  --msgs N        messages to send (default 20000)
  --kind K        spsc, mpsc or mpmc (default spsc)
  --pause-ms MS   the producer's idle pause halfway (default 2500)
  --name NAME     ring name (default /shmring_notify_demo)
  --bin-dir DIR   where notify_uring is (default \$EXAMPLES_DIR or \${BUILD:-build}/examples)
  --timeout S     the most either program may run (default 60)
  -h, --help      this text
EOF
}

msgs=20000
kind=spsc
pause_ms=2500
name=/shmring_notify_demo
bin_dir=${EXAMPLES_DIR:-${BUILD:-build}/examples}
timeout_s=60

while [[ $# -gt 0 ]]; do
	case $1 in
	--msgs) msgs=$2; shift 2 ;;
	--kind) kind=$2; shift 2 ;;
	--pause-ms) pause_ms=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--bin-dir) bin_dir=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

bin=$bin_dir/notify_uring
if [[ ! -x $bin ]]; then
	echo "$0: $bin not found: build with 'make examples' or pass --bin-dir" >&2
	exit 2
fi

# A ring left by a crashed run would make the create fail (EEXIST). If no
# process maps its file, remove it, saying so; if one does, another demo is
# running and the create will say so.
file=/dev/shm/${name#/}
if [[ -e $file ]] && ! grep -qsF -e " $file" /proc/[0-9]*/maps; then
	echo "$0: note: ring $name was left behind by an earlier run; removing it"
	"$bin" --produce --name "$name" --unlink >/dev/null || true
fi

log=$(mktemp "${TMPDIR:-/tmp}/shmring-notify-demo.XXXXXX")
cons_pid=
prod_pid=
# shellcheck disable=SC2317 # called from traps
cleanup() {
	if [[ -n $cons_pid ]]; then kill -TERM "$cons_pid" 2>/dev/null || true; fi
	if [[ -n $prod_pid ]]; then kill -TERM "$prod_pid" 2>/dev/null || true; fi
	rm -f "$log"
}
# shellcheck disable=SC2317 # called from traps
on_signal() {
	echo "$0: interrupted" >&2
	cleanup
	wait 2>/dev/null || true
	exit 130
}
trap cleanup EXIT
trap on_signal INT TERM

# Each program runs under timeout(1): TERM at the limit, KILL 5 s later.
timeout -k 5 "$timeout_s" "$bin" --consume --name "$name" --idle-timeout 10 >"$log" 2>&1 &
cons_pid=$!

prod_rc=0
timeout -k 5 "$timeout_s" "$bin" --produce --name "$name" --kind "$kind" --msgs "$msgs" \
	--pause-ms "$pause_ms" --timeout "$timeout_s" &
prod_pid=$!
wait "$prod_pid" || prod_rc=$?
prod_pid=

cons_rc=0
wait "$cons_pid" || cons_rc=$?
cons_pid=

echo "---- consumer (io_uring) ----"
cat "$log"
echo "-----------------------------"

status=0
if [[ $prod_rc -ne 0 ]]; then
	[[ $prod_rc -eq 124 ]] && echo "$0: the producer ran past ${timeout_s} s" >&2
	echo "$0: producer failed (exit $prod_rc)" >&2
	status=1
fi
if [[ $cons_rc -ne 0 ]]; then
	[[ $cons_rc -eq 124 ]] && echo "$0: the consumer ran past ${timeout_s} s" >&2
	echo "$0: consumer failed (exit $cons_rc): messages lost or damaged, or it stalled" >&2
	status=1
fi
if [[ -e $file ]]; then
	echo "$0: ring $name was left behind in /dev/shm" >&2
	status=1
fi
[[ $status -eq 0 ]] && echo "notify demo: OK"
exit "$status"

#!/usr/bin/env bash
# orders_demo.sh - run the MPSC demo: one gateway, several strategy processes.
#
# The gateway creates /shmring_demo_orders and checks that each strategy's
# orders arrive once and in order; the strategies attach (waiting, bounded,
# for the ring), send their orders and a closing DONE. The script prints every
# program's output and exits non-zero if any program failed or overran
# --timeout.
#
# Binaries come from --bin-dir, else $EXAMPLES_DIR, else ${BUILD:-build}/examples.
set -euo pipefail

usage() {
	cat <<EOF
usage: $0 [options]
  --strategies N      strategy processes (default 3)
  --orders N          orders per strategy (default 200000)
  --capacity N        ring capacity, a power of two (default 4096)
  --name NAME         ring name (default /shmring_demo_orders)
  --bin-dir DIR       where gateway and strategy are
                      (default \$EXAMPLES_DIR or \${BUILD:-build}/examples)
  --timeout S         the most any program may run (default 60)
  -h, --help          this text
EOF
}

strategies=3
orders=200000
capacity=4096
name=/shmring_demo_orders
bin_dir=${EXAMPLES_DIR:-${BUILD:-build}/examples}
timeout_s=60

while [[ $# -gt 0 ]]; do
	case $1 in
	--strategies) strategies=$2; shift 2 ;;
	--orders) orders=$2; shift 2 ;;
	--capacity) capacity=$2; shift 2 ;;
	--name) name=$2; shift 2 ;;
	--bin-dir) bin_dir=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "$0: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
done

for b in gateway strategy; do
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

clear_stale_ring "$bin_dir/gateway" "$name"

logdir=$(mktemp -d "${TMPDIR:-/tmp}/shmring-orders.XXXXXX")
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

# Every program runs under timeout(1): TERM at the limit, KILL 5 s later.
timeout -k 5 "$timeout_s" "$bin_dir/gateway" --name "$name" --strategies "$strategies" \
	--capacity "$capacity" \
	>"$logdir/gateway" 2>&1 &
gateway_pid=$!
pids+=("$gateway_pid")

strategy_pids=()
for ((i = 0; i < strategies; i++)); do
	timeout -k 5 "$timeout_s" "$bin_dir/strategy" --name "$name" --id "$i" --orders "$orders" \
		>"$logdir/strategy$i" 2>&1 &
	strategy_pids+=($!)
	pids+=($!)
done

status=0
for ((i = 0; i < strategies; i++)); do
	rc=0
	wait "${strategy_pids[$i]}" || rc=$?
	cat "$logdir/strategy$i"
	if [[ $rc -ne 0 ]]; then
		echo "$0: strategy $i failed (exit $rc)" >&2
		status=1
	fi
done
rc=0
wait "$gateway_pid" || rc=$?
echo "---- gateway ----"
cat "$logdir/gateway"
echo "-----------------"
if [[ $rc -ne 0 ]]; then
	[[ $rc -eq 124 ]] && echo "$0: gateway ran past ${timeout_s} s" >&2
	echo "$0: gateway failed (exit $rc)" >&2
	status=1
fi
if [[ $status -eq 0 ]]; then
	echo "orders demo: OK"
else
	echo "orders demo: FAILED"
fi
exit "$status"

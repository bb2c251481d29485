#!/usr/bin/env bash
# test_seed_examples.sh - the seed guide's two SPSC programs build unchanged
# against the C++ wrapper and talk to each other.
#
# Builds examples/seed/feed_handler.cpp and processor.cpp as a user would
# (g++ -std=c++17 -O2 -I include ... $SHMRING_LIB), starts the feed handler,
# then the processor, and passes when the processor prints
# "Processed 10000 updates" within 20 s. Both programs loop forever, so the
# test stops them (TERM, then KILL after 5 s) and removes the ring the killed
# feed handler leaves behind (its destructor never runs).
#
# Environment: SHMRING_LIB (default build/libshmring.a); SHMRING_LDLIBS, what
# the static library needs after it (default: Libs.private of the shmring.pc
# beside it, else -lpthread); CXX (default g++).
# Run from the repository root. Prints PASS/FAIL and "N passed, N failed".
set -euo pipefail

lib=${SHMRING_LIB:-build/libshmring.a}
cxx=${CXX:-g++}
if [[ -n ${SHMRING_LDLIBS+x} ]]; then
	ldlibs=$SHMRING_LDLIBS
else
	ldlibs=$(sed -n 's/^Libs\.private:[[:space:]]*//p' "$(dirname "$lib")/shmring.pc" 2>/dev/null || true)
	ldlibs=${ldlibs:--lpthread}
fi
ring_name=market_data_feed # the seed's "/market_data_feed"
ring_file=/dev/shm/$ring_name
# The shmring command removes the ring with its hugetlbfs slot file, which a
# plain rm of the /dev/shm file would leave behind when hugepages are mounted.
cli=${BUILD:-build}/shmring
remove_ring() {
	if [[ -x $cli ]]; then
		"$cli" rm --force "/$ring_name" >/dev/null 2>&1 || true
	fi
	rm -f "$ring_file"
}
wait_s=20
kill_grace_s=5

work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-seed.XXXXXX")
feed_pid=
proc_pid=

# Stops one process: TERM, then KILL if it is still there after the grace time.
stop_pid() {
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < kill_grace_s * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	stop_pid "$proc_pid"
	stop_pid "$feed_pid"
	proc_pid=''
	feed_pid=
	remove_ring
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL seed_examples: $*"
	for f in feed_handler processor; do
		if [[ -s $work/$f.log ]]; then
			echo "---- $f output ----"
			cat "$work/$f.log"
		fi
	done
	echo "0 passed, 1 failed"
	exit 1
}

[[ -f $lib ]] || fail "$lib not found (build the library with make, or set SHMRING_LIB)"

for f in feed_handler processor; do
	# shellcheck disable=SC2086 # $ldlibs is a list of flags
	if ! "$cxx" -std=c++17 -O2 -I include "examples/seed/$f.cpp" "$lib" $ldlibs -o "$work/$f" \
		>"$work/$f.build" 2>&1; then
		cat "$work/$f.build"
		fail "examples/seed/$f.cpp does not build"
	fi
done

# A ring left by an earlier run that was killed would make the create fail.
if [[ -e $ring_file ]]; then
	echo "note: removing $ring_file left by an earlier run"
	remove_ring
fi

# The processor's stdout is a file: line-buffer it so its progress shows now
# (std::cout shares C stdio's buffer, which stdbuf sets).
"$work/feed_handler" >"$work/feed_handler.log" 2>&1 &
feed_pid=$!
stdbuf -oL "$work/processor" >"$work/processor.log" 2>&1 &
proc_pid=$!

ok=0
for ((i = 0; i < wait_s * 10; i++)); do
	if grep -q '^Processed 10000 updates$' "$work/processor.log"; then
		ok=1
		break
	fi
	kill -0 "$proc_pid" 2>/dev/null || break
	kill -0 "$feed_pid" 2>/dev/null || break
	sleep 0.1
done

if [[ $ok -ne 1 ]]; then
	if ! kill -0 "$feed_pid" 2>/dev/null; then
		fail "feed_handler exited early"
	elif ! kill -0 "$proc_pid" 2>/dev/null; then
		fail "processor exited early"
	fi
	fail "no 'Processed 10000 updates' within ${wait_s} s"
fi

cleanup
trap - EXIT
if [[ -e $ring_file ]]; then
	echo "FAIL seed_examples: $ring_file still there after cleanup"
	echo "0 passed, 1 failed"
	exit 1
fi
while read -r _ mnt fstype _; do
	[[ $fstype == hugetlbfs && -e $mnt/shmring.$ring_name ]] || continue
	echo "FAIL seed_examples: $mnt/shmring.$ring_name (its hugetlbfs slot file) still there"
	echo "0 passed, 1 failed"
	exit 1
done </proc/mounts
echo "PASS seed_examples"
echo "1 passed, 0 failed"

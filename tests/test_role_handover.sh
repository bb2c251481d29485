#!/usr/bin/env bash
# test_role_handover.sh - an SPSC/MPSC role whose holder died changes hands
# while another process is joining in the dead holder's participant entry.
#
# The newcomer runs tests/role_handover.c against the kill-point library,
# stopped (SIGSTOP) at join_locked: it holds the dead entry's lock byte and
# has not yet released the entry's roles, so to a claimant the role looks
# held by a live process. For each of spsc and mpsc:
#   continued     the newcomer is let go after 0.3 s: the claimant waits for
#                 it and gets the role (no -EBUSY).
#   stopped       the newcomer stays stopped: the claimant gets -EBUSY after
#                 about 1 s (bounded, not a hang); then the newcomer is killed
#                 mid-join and a new claimant takes the role over.
#   live holder   while a live process holds the role, a claimant gets -EBUSY
#                 at once (under 200 ms: no waiting when nobody is joining).
# Then two claimants A and B of one dead role, both attached while the holder
# lived (so neither rejoins its entry: both go through role_claim's takeover),
# A stopped (SIGSTOP) at takeover_locked: it holds the dead holder's lock byte
# and has not yet made the CAS of the role word. For each of spsc and mpsc:
#   takeover continued  A is let go after 0.3 s: A wins the role and B gets
#                 -EBUSY against the live winner (exactly one winner).
#   takeover killed     A stays stopped: B gets -EBUSY after about 1 s; then A
#                 is killed mid-takeover and a new claimant gets the role.
# And a recoverer stopped inside a recovery (mpmc): a producer dies holding a
# slot with one message behind it; consumer A, waiting in pop_wait since
# before the death, stops at recover_locked (the dead producer's byte taken,
# its claim not yet released):
#   recoverer stopped   another consumer B waits behind it (pop_wait times
#                 out: the dead claim is not passed while A holds the byte);
#   recoverer continued A is let go: it finishes and gets the message;
#   recoverer killed    A is killed inside the recovery: a new consumer
#                 recovers the claim and gets the message.
# The last line is "N passed, N failed".
set -euo pipefail
case ${1:-} in
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
esac
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
make -s SAN=killpoints lib >/dev/null
work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-handover.XXXXXX")
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -f /dev/shm/shmring-handover-$$-* 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
prog=$work/role_handover
cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -Iinclude tests/role_handover.c \
	build-kp/libshmring.a -lhugetlbfs -lpthread -o "$prog"
pass=0
fail=0
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

# state PID: its /proc state letter (T when stopped), or "gone".
state() { awk '{print $3}' "/proc/$1/stat" 2>/dev/null || echo gone; }
wait_state() { # PID LETTER: wait up to 5 s
	for _ in $(seq 100); do [[ $(state "$1") == "$2" ]] && return 0; sleep 0.05; done
	return 1
}
# start_ring NAME KIND: the creator, once its holder is dead; sets creator.
start_ring() {
	rm -f "$work/stop"
	"$prog" create "$1" "$2" "$work/stop" >"$work/create.out" 2>&1 &
	creator=$!
	pids+=("$creator")
	for _ in $(seq 100); do grep -q ready "$work/create.out" && return 0; sleep 0.05; done
	cat "$work/create.out"
	return 1
}
stop_ring() { touch "$work/stop"; wait "$creator" || true; }
# newcomer NAME: an attach stopped at join_locked; sets newc.
newcomer() {
	SHMRING_KILL_AT=join_locked:1 SHMRING_KILL_SIGNAL=STOP "$prog" attach "$1" >/dev/null 2>&1 &
	newc=$!
	pids+=("$newc")
	wait_state "$newc" T
}
ms_of() { sed -n 's/^rc=[-0-9]* ms=\([0-9.]*\).*/\1/p' "$1" | head -1; }

for kind in spsc mpsc; do
	name=/shmring-handover-$$-$kind-1
	start_ring "$name" "$kind" || { bad "$kind: ring set-up"; continue; }
	if newcomer "$name"; then
		"$prog" pop "$name" >"$work/pop.out" 2>&1 &
		claimant=$!
		sleep 0.3
		kill -CONT "$newc"
		if wait "$claimant"; then
			ok "$kind continued: the claimant waited for the joiner and got the role ($(head -1 "$work/pop.out"))"
		else
			bad "$kind continued: $(cat "$work/pop.out")"
		fi
		wait "$newc" || true
	else
		bad "$kind continued: the newcomer did not stop at join_locked (state $(state "$newc"))"
	fi
	stop_ring

	name=/shmring-handover-$$-$kind-2
	start_ring "$name" "$kind" || { bad "$kind: ring set-up"; continue; }
	if newcomer "$name"; then
		rc=0
		timeout 10 "$prog" pop "$name" >"$work/pop.out" 2>&1 || rc=$?
		ms=$(ms_of "$work/pop.out")
		if [[ $rc == 1 ]] && awk -v m="${ms:-0}" 'BEGIN { exit !(m >= 900 && m < 3000) }'; then
			ok "$kind stopped: -EBUSY after $ms ms while the joiner stays stopped"
		else
			bad "$kind stopped: exit $rc, $(cat "$work/pop.out")"
		fi
		kill -KILL "$newc"
		wait "$newc" 2>/dev/null || true
		rc=0
		timeout 10 "$prog" pop "$name" >"$work/pop.out" 2>&1 || rc=$?
		if [[ $rc == 0 ]]; then
			ok "$kind stopped, then killed mid-join: the role is taken over ($(head -1 "$work/pop.out"))"
		else
			bad "$kind killed mid-join: exit $rc, $(cat "$work/pop.out")"
		fi
	else
		bad "$kind stopped: the newcomer did not stop at join_locked"
	fi

	"$prog" pop "$name" 3000 >"$work/holder.out" 2>&1 &
	live=$!
	pids+=("$live")
	for _ in $(seq 100); do grep -q claimed "$work/holder.out" && break; sleep 0.05; done
	rc=0
	timeout 10 "$prog" pop "$name" >"$work/pop.out" 2>&1 || rc=$?
	ms=$(ms_of "$work/pop.out")
	if [[ $rc == 1 ]] && awk -v m="${ms:-9999}" 'BEGIN { exit !(m < 200) }'; then
		ok "$kind live holder: -EBUSY in $ms ms"
	else
		bad "$kind live holder: exit $rc, $(cat "$work/pop.out")"
	fi
	kill -KILL "$live" 2>/dev/null || true
	wait "$live" 2>/dev/null || true
	stop_ring
done
# waitfor FILE WORD: up to 10 s for WORD in FILE.
waitfor() {
	for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
	return 1
}
# takeover KIND HOW: the two-claimant cases above (HOW: continued or killed).
takeover() {
	local kind=$1 how=$2 name=/shmring-handover-$$-$1-take-$2 a b rca rcb ms
	rm -f "$work/stop" "$work/kill" "$work/goa" "$work/gob"
	"$prog" create "$name" "$kind" "$work/stop" "$work/kill" >"$work/create.out" 2>&1 &
	creator=$!
	pids+=("$creator")
	if ! waitfor "$work/create.out" holding; then
		bad "$kind takeover $how: ring set-up: $(cat "$work/create.out")"
		return
	fi
	SHMRING_KILL_AT=takeover_locked:1 SHMRING_KILL_SIGNAL=STOP \
		"$prog" pop "$name" 1500 "$work/goa" >"$work/a.out" 2>&1 &
	a=$!
	pids+=("$a")
	"$prog" pop "$name" 0 "$work/gob" >"$work/b.out" 2>&1 &
	b=$!
	pids+=("$b")
	waitfor "$work/a.out" attached && waitfor "$work/b.out" attached
	touch "$work/kill"
	waitfor "$work/create.out" ready
	touch "$work/goa"
	if ! wait_state "$a" T; then
		bad "$kind takeover $how: A did not stop at takeover_locked (state $(state "$a"), $(cat "$work/a.out"))"
		kill -KILL "$a" "$b" 2>/dev/null || true
		stop_ring
		return
	fi
	touch "$work/gob"
	if [[ $how == continued ]]; then
		sleep 0.3
		kill -CONT "$a"
		rca=0
		wait "$a" || rca=$?
		rcb=0
		wait "$b" || rcb=$?
		if [[ $rca == 0 && $rcb == 1 ]] && grep -q "held by live process" "$work/b.out"; then
			ok "$kind takeover continued: A won ($(grep rc= "$work/a.out")), B -EBUSY against it ($(grep -o "rc=.*ms=[0-9.]*" "$work/b.out"))"
		else
			bad "$kind takeover continued: A exit $rca ($(cat "$work/a.out")), B exit $rcb ($(cat "$work/b.out"))"
		fi
	else
		rcb=0
		wait "$b" || rcb=$?
		ms=$(ms_of "$work/b.out")
		if [[ $rcb == 1 ]] && awk -v m="${ms:-0}" 'BEGIN { exit !(m >= 900 && m < 3000) }'; then
			ok "$kind takeover killed: B -EBUSY after $ms ms while A stays stopped"
		else
			bad "$kind takeover killed: B exit $rcb, $(cat "$work/b.out")"
		fi
		kill -KILL "$a"
		wait "$a" 2>/dev/null || true
		rca=0
		timeout 10 "$prog" pop "$name" >"$work/pop.out" 2>&1 || rca=$?
		if [[ $rca == 0 ]]; then
			ok "$kind takeover killed: after A's death a new claimant gets the role ($(head -1 "$work/pop.out"))"
		else
			bad "$kind takeover killed: new claimant exit $rca, $(cat "$work/pop.out")"
		fi
	fi
	stop_ring
}
# recoverer HOW: the recover_locked cases above (continued or killed).
recoverer() {
	local how=$1 name=/shmring-handover-$$-mpmc-rec-$1 a rca rcb
	rm -f "$work/stop" "$work/kill"
	"$prog" create "$name" mpmc "$work/stop" "$work/kill" >"$work/create.out" 2>&1 &
	creator=$!
	pids+=("$creator")
	if ! waitfor "$work/create.out" holding; then
		bad "recoverer $how: ring set-up: $(cat "$work/create.out")"
		return
	fi
	SHMRING_KILL_AT=recover_locked:1 SHMRING_KILL_SIGNAL=STOP \
		"$prog" popwait "$name" 5000 >"$work/a.out" 2>&1 &
	a=$!
	pids+=("$a")
	sleep 0.3 # A attached and waits behind the live holder's claim
	touch "$work/kill"
	if ! wait_state "$a" T; then
		bad "recoverer $how: A did not stop at recover_locked (state $(state "$a"), $(cat "$work/a.out"))"
		kill -KILL "$a" 2>/dev/null || true
		stop_ring
		return
	fi
	rcb=0
	timeout 10 "$prog" popwait "$name" 300 >"$work/b.out" 2>&1 || rcb=$?
	if [[ $rcb == 1 ]]; then
		ok "recoverer stopped: B waits behind it ($(cat "$work/b.out"): -ETIMEDOUT)"
	else
		bad "recoverer stopped: B exit $rcb, $(cat "$work/b.out")"
	fi
	if [[ $how == continued ]]; then
		kill -CONT "$a"
		rca=0
		wait "$a" || rca=$?
		if [[ $rca == 0 ]]; then
			ok "recoverer continued: A finished the recovery and got the message ($(cat "$work/a.out"))"
		else
			bad "recoverer continued: A exit $rca, $(cat "$work/a.out")"
		fi
	else
		kill -KILL "$a"
		wait "$a" 2>/dev/null || true
		rcb=0
		timeout 10 "$prog" popwait "$name" 1000 >"$work/b.out" 2>&1 || rcb=$?
		if [[ $rcb == 0 ]]; then
			ok "recoverer killed inside the recovery: a new consumer got the message ($(cat "$work/b.out"))"
		else
			bad "recoverer killed: new consumer exit $rcb, $(cat "$work/b.out")"
		fi
	fi
	stop_ring
}
recoverer continued
recoverer killed
for kind in spsc mpsc; do
	takeover "$kind" continued
	takeover "$kind" killed
done
echo "$pass passed, $fail failed"
[[ $fail == 0 ]]

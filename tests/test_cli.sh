#!/usr/bin/env bash
# test_cli.sh - the shmring command end to end: ls, stat, watch, create, rm,
# doctor, in text and JSON, against rings made by the tool and by a live test
# process (tests/cli_holder.c), including participant liveness, counters and
# the exit statuses scripts rely on.
#
# Environment: BUILD (default build): where shmring and tests/cli_holder are.
# Runs from the repository root wherever it is started. Every ring it makes is
# named /shmring-t-cli-<pid>-N and removed on exit. The hugetlbfs cases run
# only where a hugetlbfs mount and free hugepages exist (as under
# hugepage/ci-hugepages.sh); otherwise they print SKIP and are not counted.
# Prints PASS/FAIL per case and a last line "N passed, N failed"; exits 1 if
# any case failed.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${BUILD:-build}
tool=$build/shmring
holder=$build/tests/cli_holder
tmo=20 # bound on every command of the tool
passed=0
failed=0
prefix=shmring-t-cli-$$
r1=/$prefix-1 # made by `shmring create`, held by a cli_holder that attaches
r2=/$prefix-2 # made by a cli_holder
r3=/$prefix-3 # made by `shmring create --json`
r4=/$prefix-4 # hugetlbfs
junk=/dev/shm/$prefix-junk
short=/dev/shm/$prefix-short
work=$(mktemp -d "${TMPDIR:-/tmp}/shmring-cli.XXXXXX")
holders=()

cleanup() {
	local p f
	for p in "${holders[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${holders[@]}"; do wait "$p" 2>/dev/null || true; done
	for f in /dev/shm/"$prefix"-*; do
		[[ -e $f ]] || continue
		# The tool also removes a hugetlbfs data file; rm(1) is the fallback.
		if [[ -x $tool ]]; then timeout "$tmo" "$tool" rm --force "/${f##*/}" >/dev/null 2>&1 || true; fi
		rm -f -- "$f"
	done
	# Orphaned data files of our rings, if a case died half way.
	if [[ -x $tool ]]; then timeout "$tmo" "$tool" rm "$r4" >/dev/null 2>&1 || true; fi
	rm -rf -- "$work"
}
trap cleanup EXIT

pass() {
	echo "PASS $1"
	passed=$((passed + 1))
}

# fail NAME WHY [FILE...]: the files are shown, indented, to explain.
fail() {
	local name=$1 why=$2 f
	shift 2
	echo "FAIL $name: $why"
	for f in "$@"; do [[ -f $f ]] && sed 's/^/    /' "$f"; done
	failed=$((failed + 1))
}

# check NAME WHY COMMAND...: PASS if COMMAND succeeds.
check() {
	local name=$1 why=$2
	shift 2
	if "$@"; then
		pass "$name"
	else
		fail "$name" "$why"
	fi
}

# run OUT ERR ARGS...: the tool, bounded; sets rc.
run() {
	local out=$1 err=$2
	shift 2
	rc=0
	timeout "$tmo" "$tool" "$@" >"$out" 2>"$err" || rc=$?
}

# python3 once, to find the interpreter itself: a version manager's shim
# (pyenv) can cost a second per start, and the checks start it often.
py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || py=python3
[[ -x $py ]] || py=python3

# jtrue FILE EXPR: EXPR, a Python expression over d (the JSON document in
# FILE; ring(NAME) finds one in ls output), is true.
jtrue() {
	"$py" - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def ring(name):
    return next(r for r in d["rings"] if r["name"] == name)
def part(pid):
    return next(p for p in d["participants"]["list"] if p["pid"] == pid)
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
}

valid_json() { "$py" -m json.tool "$1" >/dev/null 2>&1; }

# start_holder OUT ARGS...: start cli_holder in the background, wait (bounded)
# for its "ready" line; sets hpid. Non-zero if it did not get ready.
start_holder() {
	local out=$1 i
	shift
	"$holder" "$@" --max-seconds 120 >"$out" 2>&1 &
	hpid=$!
	holders+=("$hpid")
	for ((i = 0; i < 200; i++)); do
		grep -q '^ready ' "$out" && return 0
		kill -0 "$hpid" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

if [[ ! -x $tool || ! -x $holder ]]; then
	echo "FAIL binaries_present: need $tool and $holder (make lib, then build them)"
	echo "0 passed, 1 failed"
	exit 1
fi
o=$work/out e=$work/err

# --- help, version, usage -----------------------------------------------------

run "$o" "$e" --help
if ((rc == 0)) && grep -q "Exit status" "$o" && grep -q "rm NAME" "$o"; then
	pass help_lists_commands_and_exit_statuses
else
	fail help_lists_commands_and_exit_statuses "shmring --help" "$o" "$e"
fi
ok=1
for c in ls stat watch create rm doctor; do
	run "$o" "$e" "$c" --help
	((rc == 0)) && grep -q "Usage: shmring $c" "$o" || ok=0
done
check every_command_has_help "a command's --help failed" test "$ok" = 1
run "$o" "$e" --version
want="$(sed -n 's/^#define SHMRING_VERSION_\(MAJOR\|MINOR\|PATCH\) //p' include/shmring.h | paste -sd.)"
if ((rc == 0)) && grep -q "^shmring $want " "$o"; then
	pass version_matches_header
else
	fail version_matches_header "want $want" "$o" "$e"
fi
run "$o" "$e" stat --no-such-option x
if ((rc == 1)) && grep -q "no-such-option" "$e"; then
	pass unknown_option_exits_1
else
	fail unknown_option_exits_1 "exit $rc" "$o" "$e"
fi
run "$o" "$e" frobnicate
check unknown_command_exits_1 "exit $rc" test "$rc" = 1
run "$o" "$e" create "$r1" --kind spsc --msg-size 8 --capacity 3
if ((rc == 1)) && [[ ! -e /dev/shm/${r1#/} ]]; then
	pass create_rejects_capacity_not_power_of_two_with_1
else
	fail create_rejects_capacity_not_power_of_two_with_1 "exit $rc" "$o" "$e"
fi

# --- rings to look at ------------------------------------------------------------

run "$o" "$e" create "$r1" --kind mpmc --msg-size 32 --capacity 64 --blocking
if ((rc == 0)) && [[ -f /dev/shm/${r1#/} ]] && grep -q "^created $r1" "$o" &&
	grep -qE "^  backing +(shm|shm-thp|hugetlbfs)," "$o"; then
	pass create_makes_a_persistent_ring_and_reports_backing
else
	fail create_makes_a_persistent_ring_and_reports_backing "exit $rc" "$o" "$e"
fi
run "$o" "$e" create "$r1" --kind mpmc --msg-size 32 --capacity 64
if ((rc == 5)) && grep -q "exists" "$e"; then
	pass create_of_a_taken_name_fails_with_5
else
	fail create_of_a_taken_name_fails_with_5 "exit $rc" "$o" "$e"
fi
run "$o" "$e" create "$r3" --kind spsc --msg-size 100 --capacity 1K --no-hugepage --json
if ((rc == 0)) && valid_json "$o" &&
	jtrue "$o" 'd["kind"] == "spsc" and d["msg_size"] == 100 and d["capacity"] == 1024 and d["backing"] == "shm" and "persist" in d["flags"] and d["map_size"] > 0'; then
	pass create_json_reports_what_it_got
else
	fail create_json_reports_what_it_got "exit $rc" "$o" "$e"
fi

h1out=$work/holder1 h2out=$work/holder2
if start_holder "$h1out" attach "$r1" --push 10 --pop 3; then
	h1=$hpid
	pass holder_attaches_to_the_tool_made_ring
else
	h1=
	fail holder_attaches_to_the_tool_made_ring "cli_holder did not get ready" "$h1out"
fi
if start_holder "$h2out" create "$r2" --kind spsc --msg-size 48 --capacity 16 \
	--wait-timeouts 4 --bad-attaches 2 --push 5 --pop 2; then
	h2=$hpid
	pass holder_creates_a_ring
else
	h2=
	fail holder_creates_a_ring "cli_holder did not get ready" "$h2out"
fi

# --- ls -------------------------------------------------------------------------

run "$o" "$e" ls
# NAME KIND MSG_SIZE CAPACITY DEPTH BACKING PAGE LOCKED PARTICIPANTS...
if ((rc == 0)) && awk -v n="$r1" '$1 == n && $2 == "MPMC" && $3 == 32 && $4 == 64 && $5 == 7 { f = 1 } END { exit !f }' "$o" &&
	awk -v n="$r2" '$1 == n && $2 == "SPSC" && $3 == 48 && $4 == 16 && $5 == 3 { f = 1 } END { exit !f }' "$o"; then
	pass ls_text_shows_kind_sizes_and_depth_of_both_rings
else
	fail ls_text_shows_kind_sizes_and_depth_of_both_rings "exit $rc" "$o" "$e"
fi
if grep -E "^$r2 " "$o" | grep -q "1 alive, 0 dead; P $h2; C $h2"; then
	pass ls_text_shows_the_holder_alive
else
	fail ls_text_shows_the_holder_alive "no '1 alive' with pid $h2 on the $r2 line" "$o" "$e"
fi

printf 'not a ring, and long enough to be mistaken for one\n%.0s' {1..200} >"$junk"
echo short >"$short"
run "$o" "$e" ls --json
if ((rc == 0)) && valid_json "$o" &&
	jtrue "$o" 'ring("'"$r1"'")["kind"] == "mpmc" and ring("'"$r1"'")["msg_size"] == 32 and ring("'"$r1"'")["capacity"] == 64 and ring("'"$r1"'")["depth"] == 7 and ring("'"$r1"'")["page_size"] >= 4096 and {"blocking", "persist"} <= set(ring("'"$r1"'")["flags"])' &&
	jtrue "$o" 'ring("'"$r2"'")["kind"] == "spsc" and ring("'"$r2"'")["msg_size"] == 48 and ring("'"$r2"'")["capacity"] == 16 and ring("'"$r2"'")["depth"] == 3 and ring("'"$r2"'")["backing"] in ("shm", "shm-thp", "hugetlbfs")'; then
	pass ls_json_has_the_fields_of_both_rings
else
	fail ls_json_has_the_fields_of_both_rings "exit $rc" "$o" "$e"
fi
if ! grep -q "$prefix-junk\|$prefix-short" "$o"; then
	pass ls_skips_files_that_are_not_rings
else
	fail ls_skips_files_that_are_not_rings "a non-ring file was listed" "$o" "$e"
fi
if [[ -n $h2 ]] && jtrue "$o" 'ring("'"$r2"'")["participants"]["alive"] == 1 and ring("'"$r2"'")["participants"]["producers"] == ['"$h2"'] and ring("'"$r2"'")["participants"]["consumers"] == ['"$h2"']'; then
	pass ls_json_shows_the_holder_as_live_producer_and_consumer
else
	fail ls_json_shows_the_holder_as_live_producer_and_consumer "participants of $r2 wrong" "$o"
fi

# --- stat -----------------------------------------------------------------------

run "$o" "$e" stat "$r1"
if ((rc == 0)) && grep -qE '^  kind +MPMC$' "$o" && grep -qE '^  capacity +64 messages' "$o" &&
	grep -qE '^  depth +7 of 64' "$o" && grep -qE '^  flags +BLOCKING\|PERSIST$' "$o" &&
	grep -qE '^  data_futex +0x[0-9a-f]{8}  epoch [0-9]+, waiters (yes|no)' "$o" &&
	grep -qE '^  attach_rejects +[0-9]+$' "$o" && grep -qE '^  created +[0-9]{4}-' "$o"; then
	pass stat_text_shows_header_indices_words_and_counters
else
	fail stat_text_shows_header_indices_words_and_counters "exit $rc" "$o" "$e"
fi
if grep -qE "^ +[0-9]+ +$h1 +producer,consumer +alive$" "$o"; then
	pass stat_text_shows_the_holder_alive
else
	fail stat_text_shows_the_holder_alive "no alive row for pid $h1" "$o" "$e"
fi
if timeout "$tmo" "$tool" stat "${r1#/}" >/dev/null; then
	pass stat_accepts_a_name_without_slash
else
	fail stat_accepts_a_name_without_slash "exit status" "$o" "$e"
fi

run "$o" "$e" stat "$r2" --json
if ((rc == 0)) && valid_json "$o" &&
	jtrue "$o" 'd["kind"] == "spsc" and d["msg_size"] == 48 and d["capacity"] == 16 and d["tail"] - d["head"] == 3 and d["depth"] == 3 and d["creator_pid"] == '"${h2:-0}"' and d["layout_version"] == 1 and d["generation"].startswith("0x") and set(d["data_futex"]) >= {"raw", "epoch", "waiters"} and "armed" in d["notify_word"] and sorted(d["counters"]) == sorted(["futex_sleeps", "futex_wakes", "wait_timeouts", "skipped", "recovered", "takeovers", "attach_rejects"])'; then
	pass stat_json_has_the_whole_header
else
	fail stat_json_has_the_whole_header "exit $rc" "$o" "$e"
fi
check depth_is_pushed_minus_popped "depth of $r2 is not 5 - 2" jtrue "$o" 'd["depth"] == 3'
check counters_count_wait_timeouts_and_attach_rejects "want wait_timeouts 4, attach_rejects 2" \
	jtrue "$o" 'd["counters"]["wait_timeouts"] == 4 and d["counters"]["attach_rejects"] == 2'
if [[ -n $h2 ]] && jtrue "$o" 'part('"$h2"')["alive"] is True and part('"$h2"')["roles"] == ["producer", "consumer"] and d["roles"]["producer"]["pid"] == '"$h2"' and d["roles"]["consumer"]["alive"] is True'; then
	pass participant_is_alive_while_the_holder_runs
else
	fail participant_is_alive_while_the_holder_runs "holder $h2 not shown alive" "$o"
fi

run "$o" "$e" stat "/$prefix-none"
if ((rc == 2)) && grep -q "no ring named /$prefix-none" "$e"; then
	pass stat_of_a_missing_ring_exits_2
else
	fail stat_of_a_missing_ring_exits_2 "exit $rc" "$o" "$e"
fi
run "$o" "$e" stat "/${junk##*/}"
if ((rc == 4)) && grep -q "not a shmring ring" "$e"; then
	pass stat_of_a_file_that_is_not_a_ring_exits_4
else
	fail stat_of_a_file_that_is_not_a_ring_exits_4 "exit $rc" "$o" "$e"
fi
run "$o" "$e" stat "/${short##*/}"
check stat_of_a_file_shorter_than_a_header_exits_4 "exit $rc" test "$rc" = 4

# --- watch ----------------------------------------------------------------------

run "$o" "$e" watch "$r1" --count 3 --interval 100
if ((rc == 0)) && (($(wc -l <"$o") == 3)) && (($(grep -c "depth  *7/64 " "$o") == 3)); then
	pass watch_prints_one_line_per_refresh_when_not_a_terminal
else
	fail watch_prints_one_line_per_refresh_when_not_a_terminal "exit $rc, want 3 lines of depth 7/64" "$o" "$e"
fi
run "$o" "$e" watch "$r1" --count 2 --interval 50 --json
ok=1
((rc == 0)) && (($(wc -l <"$o") == 2)) || ok=0
while IFS= read -r line; do
	printf '%s\n' "$line" >"$work/line"
	jtrue "$work/line" 'd["depth"] == 7 and d["capacity"] == 64 and d["in_per_s"] == 0 and d["out_per_s"] == 0' || ok=0
done <"$o"
check watch_json_prints_one_object_per_line "exit $rc" test "$ok" = 1

# --- reading changes nothing ------------------------------------------------------

cp "/dev/shm/${r2#/}" "$work/before"
before_m=$(stat -c %Y "/dev/shm/${r2#/}")
timeout "$tmo" "$tool" ls >/dev/null 2>&1 || true
timeout "$tmo" "$tool" ls --json >/dev/null 2>&1 || true
timeout "$tmo" "$tool" stat "$r2" >/dev/null 2>&1 || true
timeout "$tmo" "$tool" watch "$r2" --count 2 --interval 20 >/dev/null 2>&1 || true
if cmp -s "$work/before" "/dev/shm/${r2#/}" && [[ $(stat -c %Y "/dev/shm/${r2#/}") == "$before_m" ]]; then
	pass reading_commands_leave_the_ring_unchanged
else
	fail reading_commands_leave_the_ring_unchanged "the ring file changed" "$o" "$e"
fi

# --- rm, liveness after death -----------------------------------------------------

run "$o" "$e" rm "$r2"
if ((rc == 3)) && grep -q "${h2:-nopid}" "$e" && [[ -e /dev/shm/${r2#/} ]]; then
	pass rm_refuses_a_ring_with_a_live_participant_with_3
else
	fail rm_refuses_a_ring_with_a_live_participant_with_3 "exit $rc" "$o" "$e"
fi

# A stopped participant is alive (its claims are never robbed) and shown stopped.
if [[ -n $h2 ]]; then
	kill -STOP "$h2"
	run "$o" "$e" stat "$r2" --json
	ok=0
	if ((rc == 0)) && jtrue "$o" 'part('"$h2"')["alive"] is True and part('"$h2"')["stopped"] is True'; then
		run "$o" "$e" stat "$r2"
		grep -q "alive, stopped" "$o" && ok=1
	fi
	kill -CONT "$h2"
	check stopped_participant_shows_alive_and_stopped "stat did not show it stopped" test "$ok" = 1
fi

if [[ -n $h2 ]]; then
	kill -9 "$h2"
	wait "$h2" 2>/dev/null || true
fi
run "$o" "$e" stat "$r2" --json
if ((rc == 0)) && [[ -n $h2 ]] &&
	jtrue "$o" 'part('"$h2"')["alive"] is False and d["participants"]["alive"] == 0 and d["participants"]["dead"] == 1'; then
	pass participant_is_dead_after_kill_9
else
	fail participant_is_dead_after_kill_9 "exit $rc" "$o" "$e"
fi
run "$o" "$e" ls
if grep -E "^$r2 " "$o" | grep -q "0 alive, 1 dead; P ${h2:-x}(dead)"; then
	pass ls_text_shows_the_dead_participant
else
	fail ls_text_shows_the_dead_participant "no '0 alive, 1 dead' on the $r2 line" "$o" "$e"
fi
run "$o" "$e" rm "$r2"
if ((rc == 0)) && [[ ! -e /dev/shm/${r2#/} ]]; then
	pass rm_removes_a_ring_whose_participants_died
else
	fail rm_removes_a_ring_whose_participants_died "exit $rc" "$o" "$e"
fi

run "$o" "$e" rm "$r1"
if ((rc == 3)) && grep -q "${h1:-nopid}" "$e" && [[ -e /dev/shm/${r1#/} ]]; then
	pass rm_refuses_while_the_holder_lives
else
	fail rm_refuses_while_the_holder_lives "exit $rc" "$o" "$e"
fi
run "$o" "$e" rm --force "$r1"
if ((rc == 0)) && [[ ! -e /dev/shm/${r1#/} ]]; then
	pass rm_force_removes_a_ring_with_live_participants
else
	fail rm_force_removes_a_ring_with_live_participants "exit $rc" "$o" "$e"
fi
run "$o" "$e" rm "$r1"
check rm_of_a_missing_ring_exits_2 "exit $rc" test "$rc" = 2
run "$o" "$e" rm "/${junk##*/}"
if ((rc == 4)) && [[ -e $junk ]]; then
	pass rm_never_removes_a_file_that_is_not_a_ring
else
	fail rm_never_removes_a_file_that_is_not_a_ring "exit $rc" "$o" "$e"
fi
run "$o" "$e" rm "$r3"
if ((rc == 0)) && [[ ! -e /dev/shm/${r3#/} ]]; then
	pass rm_removes_an_unused_ring
else
	fail rm_removes_an_unused_ring "exit $rc" "$o" "$e"
fi

# --- doctor -----------------------------------------------------------------------

# Its verdict depends on the host (exit 0 or 1); it must run and speak JSON.
# The tool finds the script from its own place (build/../tools); a build
# directory elsewhere needs SHMRING_SCRIPTS_DIR.
if [[ -x $build/../tools/shmring-doctor ]]; then
	run "$o" "$e" doctor --json
else
	SHMRING_SCRIPTS_DIR=$PWD run "$o" "$e" doctor --json
fi
if ((rc == 0 || rc == 1)) && valid_json "$o" && jtrue "$o" "all({\"check\", \"status\"} <= set(c) for c in d)"; then
	pass doctor_runs_the_readiness_script_with_json
else
	fail doctor_runs_the_readiness_script_with_json "exit $rc" "$o" "$e"
fi

# --- hugetlbfs: backing shown, orphan data file found and removed ---------------------

hp_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
hp_free=$(cat "/sys/kernel/mm/hugepages/hugepages-${hp_kb:-0}kB/free_hugepages" 2>/dev/null || echo 0)
if ! grep -q ' hugetlbfs ' /proc/self/mounts || ((hp_free < 2)); then
	echo "SKIP hugetlbfs_cases: no hugetlbfs mount or free hugepages (run under hugepage/ci-hugepages.sh)"
else
	run "$o" "$e" create "$r4" --kind spsc --msg-size 64 --capacity 64 --hugepage --json
	if ((rc == 0)) && jtrue "$o" 'd["backing"] == "hugetlbfs" and d["locked"] is True and d["data_path"]'; then
		pass create_hugepage_reports_hugetlbfs_backing
		data=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["data_path"])' "$o")
		run "$o" "$e" ls --json
		check ls_shows_hugetlbfs_backing_and_locked "exit $rc" \
			jtrue "$o" 'ring("'"$r4"'")["backing"] == "hugetlbfs" and ring("'"$r4"'")["locked"] is True and ring("'"$r4"'")["page_size"] == '"$((hp_kb * 1024))"
		rm -f "/dev/shm/${r4#/}" # the control file goes; the data file stays behind
		run "$o" "$e" ls --json
		check ls_lists_an_orphan_data_file "exit $rc" \
			jtrue "$o" 'any(x["ring"] == "'"$r4"'" and x["path"] == "'"$data"'" for x in d["orphan_data_files"])'
		run "$o" "$e" ls
		check ls_text_lists_an_orphan_data_file "no orphan line" grep -q "^orphan data file $data" "$o"
		run "$o" "$e" rm "$r4"
		if ((rc == 0)) && [[ ! -e $data ]]; then
			pass rm_removes_an_orphan_data_file
		else
			fail rm_removes_an_orphan_data_file "exit $rc" "$o" "$e"
		fi
	else
		fail create_hugepage_reports_hugetlbfs_backing "exit $rc" "$o" "$e"
	fi
fi

echo "$passed passed, $failed failed"
((failed == 0))

#!/usr/bin/env bash
# tests/scripts/test_host_scripts.sh: tests for the host scripts (hugepage/,
# sysctl/, tools/shmring-doctor).
#
# These scripts change global host state, so this test records that state first
# (hugepage pools, hugetlbfs mounts, every sysctl of the profile, the installed
# /etc/sysctl.d file) and puts it back in an EXIT trap, which also runs on
# failure and on INT/TERM; the last case checks that the host is as it was.
# Cases that change the host need root; as another user they are reported as
# SKIP with the reason. Every command runs under timeout, every wait is bounded.
#
# Output: one "PASS name", "FAIL name: why" or "SKIP name: why" per case, then
# "N passed, N failed, N skipped". Exit status 1 if any case failed.

# Commands for child shells are single-quoted on purpose: they expand there.
# shellcheck disable=SC2016
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
HP=$ROOT/hugepage
SC=$ROOT/sysctl
DOCTOR=$ROOT/tools/shmring-doctor
PROFILE=$SC/shmring.conf
PERSIST=/etc/sysctl.d/60-shmring.conf
SYSFS_HP=/sys/kernel/mm/hugepages

passed=0 failed=0 skipped=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
skip() { echo "SKIP $1: $2"; skipped=$((skipped + 1)); }
# On failure, show the tail of the last command's output to say why.
fail() {
	echo "FAIL $1: $2"
	failed=$((failed + 1))
	if [[ -s ${OUT:-} ]]; then tail -n 15 -- "$OUT" | sed 's/^/    | /'; fi
}

WORK=$(mktemp -d -t shmring-hosttest.XXXXXX)
chmod 755 "$WORK" # the cases that drop to nobody must reach the mounts in it
OUT=$WORK/out

# Run a command with a time limit; its output goes to $OUT, its status to $RC.
run() {
	RC=0
	timeout -k 5 "${LIMIT:-30}" "$@" >"$OUT" 2>&1 || RC=$?
}

IS_ROOT=0
((EUID == 0)) && IS_ROOT=1
need_root() {
	((IS_ROOT)) && return 0
	skip "$1" "needs root (running as uid $EUID)"
	return 1
}

# Cases that check what a normal user sees run as nobody, through setpriv.
NOBODY_GID=$(id -g nobody 2>/dev/null || echo 65534)
AS_NOBODY=(setpriv --reuid=nobody --regid="$NOBODY_GID" --clear-groups --)
CAN_DROP=0
if ((IS_ROOT)) && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1 &&
	"${AS_NOBODY[@]}" test -x "$HP/setup.sh" 2>/dev/null; then
	CAN_DROP=1
fi
need_drop() {
	need_root "$1" || return 1
	((CAN_DROP)) && return 0
	skip "$1" "cannot run as nobody here (no setpriv, or the tree is not readable by nobody)"
	return 1
}

HAVE_HP=0
DEFAULT_KB=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
[[ -n $DEFAULT_KB && -d $SYSFS_HP/hugepages-${DEFAULT_KB}kB ]] && HAVE_HP=1
NR_FILE=$SYSFS_HP/hugepages-${DEFAULT_KB:-0}kB/nr_hugepages
need_hp() {
	need_root "$1" || return 1
	((HAVE_HP)) && return 0
	skip "$1" "this kernel has no hugepage support"
	return 1
}
nr() { cat -- "$NR_FILE"; }
free_pages() { cat -- "$SYSFS_HP/hugepages-${DEFAULT_KB}kB/free_hugepages"; }

# --- the host's state, recorded and restored -------------------------------------

# Profile keys (as /proc/sys paths) and the dirty_*bytes twins of the
# dirty_*ratio keys: writing one of a pair zeroes the other.
sysctl_paths() {
	awk -F= '/^[[:space:]]*[#;]/ || !/=/ { next }
		{ k = $1; gsub(/[[:space:]]/, "", k); sub(/^-/, "", k); gsub(/\./, "/", k); print "/proc/sys/" k }' "$PROFILE"
	echo /proc/sys/vm/dirty_bytes
	echo /proc/sys/vm/dirty_background_bytes
}

# Everything the scripts may change, one "what value" a line.
host_state() {
	local f
	for f in "$SYSFS_HP"/hugepages-*/nr_hugepages /sys/devices/system/node/node*/hugepages/hugepages-*/nr_hugepages; do
		[[ -r $f ]] && echo "$f $(<"$f")"
	done
	awk '$3 == "hugetlbfs" { print "mount", $2, $4 }' /proc/self/mounts | sort
	while read -r f; do
		[[ -r $f ]] && echo "$f $(tr -s '[:space:]' ' ' <"$f")"
	done < <(sysctl_paths)
	if [[ -e $PERSIST ]]; then echo "persist $(md5sum <"$PERSIST")"; else echo "persist absent"; fi
}

SAVED_SYSCTL=$WORK/sysctl.saved
SAVED_PERSIST=$WORK/persist.saved
PERSIST_EXISTED=0
BEFORE=$(host_state)
while read -r f; do
	[[ -r $f && -w $f ]] && printf '%s\t%s\n' "$f" "$(<"$f")"
done < <(sysctl_paths) >"$SAVED_SYSCTL"
if [[ -e $PERSIST ]]; then
	PERSIST_EXISTED=1
	cp -p -- "$PERSIST" "$SAVED_PERSIST"
fi
declare -A SAVED_POOL=()
for f in "$SYSFS_HP"/hugepages-*/nr_hugepages; do
	[[ -r $f ]] && SAVED_POOL[$f]=$(<"$f")
done
NODES=$(find /sys/devices/system/node -maxdepth 1 -name 'node[0-9]*' 2>/dev/null | wc -l)
if ((NODES > 1)); then
	for f in /sys/devices/system/node/node*/hugepages/hugepages-*/nr_hugepages; do
		[[ -r $f ]] && SAVED_POOL[$f]=$(<"$f")
	done
fi

restore_sysctl() {
	local f v
	((IS_ROOT)) || return 0
	# In the recorded order: ratios before their bytes twins, so that a host
	# that used dirty_bytes gets it back last.
	while IFS=$'\t' read -r f v; do
		[[ $(tr -s '[:space:]' ' ' <"$f") == "$(tr -s '[:space:]' ' ' <<<"$v")" ]] && continue
		printf '%s\n' "$v" >"$f" 2>/dev/null || echo "warning: could not restore $f to $v" >&2
	done <"$SAVED_SYSCTL"
	if ((PERSIST_EXISTED)); then
		cmp -s -- "$SAVED_PERSIST" "$PERSIST" 2>/dev/null || cp -p -- "$SAVED_PERSIST" "$PERSIST"
	else
		rm -f -- "$PERSIST"
	fi
}

restore_hugepages() {
	local m f
	((IS_ROOT)) || return 0
	# Our mounts all live under $WORK; anything else is not ours to touch.
	while read -r m; do
		umount -- "$m" 2>/dev/null || umount -l -- "$m" 2>/dev/null || true
	done < <(awk -v w="$WORK/" '$3 == "hugetlbfs" && index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
	# Global pools first, then per node, which refines them on NUMA hosts.
	for f in "${!SAVED_POOL[@]}"; do
		[[ $f == /sys/kernel/* && $(<"$f") != "${SAVED_POOL[$f]}" ]] && echo "${SAVED_POOL[$f]}" >"$f"
	done
	for f in "${!SAVED_POOL[@]}"; do
		[[ $f == /sys/devices/* && $(<"$f") != "${SAVED_POOL[$f]}" ]] && echo "${SAVED_POOL[$f]}" >"$f"
	done
	return 0
}

restored=0
restore_host() {
	((restored)) && return 0
	restored=1
	restore_sysctl
	restore_hugepages
	if ! awk -v w="$WORK/" '$3 == "hugetlbfs" && index($2, w) == 1 { exit 1 }' /proc/self/mounts; then
		echo "warning: a mount is left under $WORK; not removing it" >&2
	else
		rm -rf -- "$WORK"
	fi
}
trap restore_host EXIT
trap 'echo "interrupted: restoring the host" >&2; exit 130' INT TERM

((IS_ROOT)) || echo "note: not root (uid $EUID): cases that change the host are skipped"
((HAVE_HP)) || echo "note: no hugepage support in this kernel: hugepage cases are skipped"

# --- every script answers --help -----------------------------------------------

for s in hugepage/setup.sh hugepage/status.sh hugepage/teardown.sh hugepage/ci-hugepages.sh \
	sysctl/apply.sh sysctl/check.sh tools/shmring-doctor; do
	name="help_${s##*/}"
	run "$ROOT/$s" --help
	if ((RC != 0)); then
		fail "$name" "--help exited $RC"
	elif ! grep -q '^Usage:' "$OUT"; then
		fail "$name" "--help printed no Usage line"
	else
		pass "$name"
	fi
done

t_usage_errors() {
	local n=usage_errors_exit_2 bad=
	run "$HP/setup.sh" --pages 1 --bogus; ((RC == 2)) || bad+=" setup:$RC"
	run "$HP/setup.sh" --pages lots; ((RC == 2)) || bad+=" setup-pages:$RC"
	run "$HP/teardown.sh" --pages x; ((RC == 2)) || bad+=" teardown:$RC"
	run "$HP/status.sh" --bogus; ((RC == 2)) || bad+=" status:$RC"
	run "$HP/ci-hugepages.sh" --pages 1; ((RC == 2)) || bad+=" ci-no-command:$RC"
	run "$SC/apply.sh" --bogus; ((RC == 2)) || bad+=" apply:$RC"
	run "$SC/check.sh" --file /nonexistent; ((RC == 2)) || bad+=" check:$RC"
	run "$DOCTOR" --memlock-kb much; ((RC == 2)) || bad+=" doctor:$RC"
	if [[ -n $bad ]]; then fail $n "wrong exit status:$bad"; else pass $n; fi
}
t_usage_errors

t_status_runs() {
	local n=status_table_and_json
	run "$HP/status.sh"
	if ((RC != 0)) || ! grep -q '^hugetlbfs mounts:' "$OUT"; then
		fail $n "status.sh exited $RC or printed no mount section"
		return
	fi
	run "$HP/status.sh" --json
	if ((RC != 0)) || ! python3 -m json.tool "$OUT" >/dev/null 2>&1; then
		fail $n "status.sh --json exited $RC or is not valid JSON"
		return
	fi
	pass $n
}
t_status_runs

# --- hugepage/setup.sh and teardown.sh ------------------------------------------

MNT=$WORK/mnt
PRIOR=0
TARGET=0

# What setup/teardown change, for the same-as-once comparison.
pool_and_mount() {
	"$HP/status.sh"
	echo "nr $(nr)"
	awk -v m="$MNT" '$2 == m { print "mount", $3, $4 }' /proc/self/mounts
	if mountpoint -q -- "$MNT"; then stat -c 'root %a %u %g' -- "$MNT"; fi
}

t_setup_twice() {
	local n=setup_twice_same_as_once once
	need_hp $n || return 0
	PRIOR=$(nr)
	TARGET=$((PRIOR + 8))
	run "$HP/setup.sh" --pages "$TARGET" --mount "$MNT" --gid "$NOBODY_GID"
	if ((RC != 0)); then fail $n "first run exited $RC"; return; fi
	if ! grep -q "nr_hugepages ${DEFAULT_KB}kB: $PRIOR -> $TARGET" "$OUT" ||
		! grep -q "mounted hugetlbfs at $MNT" "$OUT"; then
		fail $n "first run did not report the pool change and the mount"
		return
	fi
	once=$(pool_and_mount)
	if [[ $(stat -f -c %T -- "$MNT") != hugetlbfs ]] || ((TARGET != $(nr))) ||
		[[ $(stat -c '%a %g' -- "$MNT") != "1770 $NOBODY_GID" ]]; then
		fail $n "after the first run: $(echo "$once" | paste -sd';' -)"
		return
	fi
	run "$HP/setup.sh" --pages "$TARGET" --mount "$MNT" --gid "$NOBODY_GID"
	if ((RC != 0)); then fail $n "second run exited $RC"; return; fi
	if grep -q -- '->' "$OUT" || ! grep -q 'already' "$OUT" || ! grep -q 'nothing changed' "$OUT"; then
		fail $n "second run did not say it changed nothing"
		return
	fi
	if [[ $(pool_and_mount) != "$once" ]]; then
		fail $n "second run changed the state: $(pool_and_mount | paste -sd';' -)"
		return
	fi
	pass $n
}
t_setup_twice

t_status_sees_setup() {
	local n=status_shows_pool_and_mount
	need_hp $n || return 0
	mountpoint -q -- "$MNT" || { skip $n "setup case did not leave a mount"; return 0; }
	run "$HP/status.sh"
	if ! grep -q "$MNT  pagesize=${DEFAULT_KB}kB .*mode=1770" "$OUT"; then
		fail $n "status.sh does not list $MNT with mode 1770"
		return
	fi
	run "$HP/status.sh" --json
	if ! python3 - "$OUT" "$MNT" "$TARGET" "$DEFAULT_KB" <<'EOF'; then
import json, sys
doc = json.load(open(sys.argv[1]))
mnt, target, kb = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pool = [p for p in doc["pools"] if p["size_kb"] == kb][0]
assert pool["total"] == target and pool["default"], pool
m = [m for m in doc["mounts"] if m["path"] == mnt][0]
assert m["pagesize_kb"] == kb and m["mode"] == "1770" and m["can_create"], m
EOF
		fail $n "status.sh --json disagrees with the setup"
		return
	fi
	pass $n
}
t_status_sees_setup

t_group_can_create() {
	local n=mount_group_member_can_create_rings
	need_drop $n || return 0
	mountpoint -q -- "$MNT" || { skip $n "setup case did not leave a mount"; return 0; }
	run "${AS_NOBODY[@]}" touch -- "$MNT/ring-nobody"
	if ((RC != 0)); then fail $n "nobody (gid $NOBODY_GID) cannot create a file in $MNT"; return; fi
	rm -f -- "$MNT/ring-nobody"
	pass $n
}
t_group_can_create

t_setup_nonroot() {
	local n=setup_as_nonroot_refuses_changes
	need_drop $n || return 0
	mountpoint -q -- "$MNT" || { skip $n "setup case did not leave a mount"; return 0; }
	run "${AS_NOBODY[@]}" "$HP/setup.sh" --pages "$((TARGET + 1))" --mount "$MNT" --gid "$NOBODY_GID"
	if ((RC != 1)) || ! grep -q 'only root' "$OUT" || (($(nr) != TARGET)); then
		fail $n "a change as nobody: exit $RC, pool $(nr) (want exit 1, 'only root', pool $TARGET)"
		return
	fi
	# Nothing to change: a normal user may confirm that.
	run "${AS_NOBODY[@]}" "$HP/setup.sh" --pages "$TARGET" --mount "$MNT" --gid "$NOBODY_GID"
	if ((RC != 0)) || ! grep -q 'nothing changed' "$OUT"; then
		fail $n "no change needed, as nobody: exit $RC"
		return
	fi
	pass $n
}
t_setup_nonroot

t_teardown_refuses() {
	local n=teardown_refuses_mount_with_files
	need_hp $n || return 0
	mountpoint -q -- "$MNT" || { skip $n "setup case did not leave a mount"; return 0; }
	touch -- "$MNT/live-ring"
	run "$HP/teardown.sh" --mount "$MNT" --pages "$PRIOR"
	if ((RC != 1)) || ! mountpoint -q -- "$MNT" || (($(nr) != TARGET)); then
		fail $n "exit $RC; mounted: $(mountpoint -q -- "$MNT" && echo yes || echo no); pool $(nr)"
		return
	fi
	rm -f -- "$MNT/live-ring"
	pass $n
}
t_teardown_refuses

t_teardown_restores() {
	local n=teardown_restores_and_is_idempotent
	need_hp $n || return 0
	mountpoint -q -- "$MNT" || { skip $n "setup case did not leave a mount"; return 0; }
	run "$HP/teardown.sh" --mount "$MNT" --pages "$PRIOR"
	if ((RC != 0)) || mountpoint -q -- "$MNT" || (($(nr) != PRIOR)); then
		fail $n "exit $RC; pool $(nr), want $PRIOR"
		return
	fi
	if ! grep -q "unmounted hugetlbfs at $MNT" "$OUT" || ! grep -q "$TARGET -> $PRIOR" "$OUT"; then
		fail $n "teardown did not report what it changed"
		return
	fi
	run "$HP/teardown.sh" --mount "$MNT" --pages "$PRIOR"
	if ((RC != 0)) || grep -q -- '->' "$OUT" || ! grep -q 'nothing changed' "$OUT"; then
		fail $n "second teardown: exit $RC or it changed something"
		return
	fi
	pass $n
}
t_teardown_restores

t_teardown_force() {
	local n=teardown_force_removes_leftovers
	need_hp $n || return 0
	run "$HP/setup.sh" --pages "$((PRIOR + 2))" --mount "$MNT"
	if ((RC != 0)); then fail $n "setup exited $RC"; return; fi
	touch -- "$MNT/left-behind"
	run "$HP/teardown.sh" --mount "$MNT" --pages "$PRIOR" --force
	if ((RC != 0)) || mountpoint -q -- "$MNT" || (($(nr) != PRIOR)); then
		fail $n "exit $RC; pool $(nr), want $PRIOR"
		return
	fi
	pass $n
}
t_teardown_force

# --- hugepage/ci-hugepages.sh -----------------------------------------------------

hp_state() { host_state | grep -v '^/proc/sys/'; }

# The command ci-hugepages.sh runs: it must see a hugetlbfs with the pages free
# and be able to map one; it leaves a file behind on purpose (the private
# mount must take it away).
CI_PROBE='set -eu
[ "${SHMRING_CI_HUGEPAGES:-}" = 1 ] || { echo "SHMRING_CI_HUGEPAGES=${SHMRING_CI_HUGEPAGES:-unset}"; exit 11; }
echo "$SHMRING_HUGETLBFS_DIR" >"$1/ci-dir"
[ "$(stat -f -c %T "$SHMRING_HUGETLBFS_DIR")" = hugetlbfs ] || { echo "not hugetlbfs"; exit 12; }
free=$(awk "\$1 == \"HugePages_Free:\" { print \$2 }" /proc/meminfo)
[ "$free" -ge "$2" ] || { echo "HugePages_Free $free < $2"; exit 13; }
python3 - "$SHMRING_HUGETLBFS_DIR/leftover" "$3" <<EOF
import mmap, os, sys
size = int(sys.argv[2]) * 1024
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)
os.ftruncate(fd, size)
m = mmap.mmap(fd, size)
m[0:5] = b"shmrg"
EOF
echo probe-ok'

t_ci_hugepages() {
	local n=ci_hugepages_mounts_and_restores before dir
	need_hp $n || return 0
	before=$(hp_state)
	run "$HP/ci-hugepages.sh" --pages 4 -- bash -c "$CI_PROBE" probe "$WORK" 4 "$DEFAULT_KB"
	if ((RC != 0)) || ! grep -q probe-ok "$OUT"; then fail $n "the command failed (exit $RC)"; return; fi
	dir=$(cat -- "$WORK/ci-dir")
	if [[ $(hp_state) != "$before" ]]; then
		fail $n "host differs after the run: $(diff <(echo "$before") <(hp_state) | paste -sd' ' -)"
		return
	fi
	if [[ -e $dir ]]; then fail $n "the private mount point $dir is left"; return; fi
	if ! grep -q 'restored' "$OUT"; then fail $n "it did not say what it restored"; return; fi
	pass $n
}
t_ci_hugepages

t_ci_status() {
	local n=ci_hugepages_keeps_exit_status before
	need_hp $n || return 0
	before=$(hp_state)
	run "$HP/ci-hugepages.sh" --pages 2 -- sh -c 'exit 7'
	if ((RC != 7)); then fail $n "exit $RC, want 7"; return; fi
	if [[ $(hp_state) != "$before" ]]; then fail $n "host differs after a failing command"; return; fi
	pass $n
}
t_ci_status

t_ci_interrupted() {
	local n=ci_hugepages_restores_on_sigterm before pid i rc=0
	need_hp $n || return 0
	before=$(hp_state)
	rm -f -- "$WORK/ci-int"
	timeout -k 5 30 "$HP/ci-hugepages.sh" --pages 2 -- \
		bash -c 'echo "$SHMRING_HUGETLBFS_DIR" >"$1"; exec sleep 20' sh "$WORK/ci-int" >"$OUT" 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do # up to 10 s for the command to start
		[[ -s $WORK/ci-int ]] && break
		sleep 0.1
	done
	if [[ ! -s $WORK/ci-int ]]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" || true
		fail $n "the command did not start within 10 s"
		return
	fi
	# timeout(1) passes TERM on to ci-hugepages.sh, as a CI job's timeout would.
	kill -TERM "$pid"
	wait "$pid" || rc=$?
	if ((rc != 143)); then fail $n "exit $rc, want 143"; return; fi
	if [[ $(hp_state) != "$before" ]]; then fail $n "host differs after SIGTERM"; return; fi
	if [[ -e $(cat -- "$WORK/ci-int") ]]; then fail $n "private mount point left"; return; fi
	pass $n
}
t_ci_interrupted

t_ci_enough_free() {
	local n=ci_hugepages_reserves_nothing_when_enough_free prior have
	need_hp $n || return 0
	prior=$(nr)
	run "$HP/setup.sh" --pages "$((prior + 4))" --no-mount
	if ((RC != 0)); then fail $n "setup exited $RC"; return; fi
	have=$(nr)
	run "$HP/ci-hugepages.sh" --pages 4 -- true
	if ((RC != 0)) || ! grep -q 'reserving nothing' "$OUT" || (($(nr) != have)); then
		fail $n "exit $RC; pool $(nr), want $have untouched"
	else
		pass $n
	fi
	run "$HP/teardown.sh" --no-unmount --pages "$prior"
}
t_ci_enough_free

t_ci_nonroot() {
	local n=ci_hugepages_as_nonroot_runs_command_unchanged before
	local -a as=()
	# As root, drop to nobody; as anyone else, this is the case as it stands.
	if ((IS_ROOT)); then
		need_drop $n || return 0
		as=("${AS_NOBODY[@]}")
	fi
	before=$(hp_state)
	run "${as[@]}" "$HP/ci-hugepages.sh" -- sh -c 'echo "ci=$SHMRING_CI_HUGEPAGES skip=$SHMRING_CI_HUGEPAGES_SKIP"; exit 5'
	if ((RC != 5)) || ! grep -q 'ci=0 skip=not root' "$OUT" || [[ $(hp_state) != "$before" ]]; then
		fail $n "exit $RC (want 5), or no skip reason, or the host changed"
		return
	fi
	pass $n
}
t_ci_nonroot

t_ci_reuse() {
	local n=ci_hugepages_reuse_mount_keeps_existing_mount before dir
	need_hp $n || return 0
	run "$HP/setup.sh" --pages "$(nr)" --mount "$MNT"
	if ((RC != 0)); then fail $n "setup exited $RC"; return; fi
	before=$(hp_state)
	run "$HP/ci-hugepages.sh" --pages 2 --reuse-mount -- sh -c 'echo "dir=$SHMRING_HUGETLBFS_DIR"'
	dir=$(sed -n 's/^dir=//p' "$OUT")
	# $MNT, or another hugetlbfs of the default size that was there before
	# (when this test itself runs under ci-hugepages.sh).
	if ((RC != 0)) || ! grep -q "^mount $dir " <<<"$before" || [[ $(hp_state) != "$before" ]] || ! mountpoint -q -- "$MNT"; then
		fail $n "exit $RC; the command got '$dir', not a mount that was there, or the host changed"
	else
		pass $n
	fi
	run "$HP/teardown.sh" --mount "$MNT" --keep-pool
}
t_ci_reuse

# --- sysctl/check.sh and apply.sh ---------------------------------------------

# The profile's value for a key.
wanted() { awk -F= -v k="$1" '{ key = $1; gsub(/[[:space:]]/, "", key); sub(/^-/, "", key) } key == k { v = $2; gsub(/[[:space:]]/, "", v); print v }' "$PROFILE"; }
sysctl_state() { host_state | grep -E '^(/proc/sys/|persist )'; }
# check.sh's status word for a key.
check_status() { awk -v k="$1" '$1 == k { print $4 }' "$OUT"; }

SWAP_WANT=$(wanted vm.swappiness)
SWAP_ODD=37
[[ $SWAP_WANT == "$SWAP_ODD" ]] && SWAP_ODD=38

t_check_diff() {
	local n=check_reports_changed_setting
	need_root $n || return 0
	echo "$SWAP_ODD" >/proc/sys/vm/swappiness
	run "$SC/check.sh"
	if ((RC != 1)) || [[ $(check_status vm.swappiness) != DIFF ]] ||
		! grep -Eq "^vm\.swappiness +$SWAP_WANT +$SWAP_ODD +DIFF" "$OUT"; then
		fail $n "exit $RC (want 1), vm.swappiness is '$(check_status vm.swappiness)' (want DIFF)"
		return
	fi
	pass $n
}
t_check_diff

t_dry_run() {
	local n=apply_dry_run_changes_nothing before
	before=$(sysctl_state)
	run "$SC/apply.sh" --dry-run --persist
	if ((RC != 0)); then fail $n "exit $RC"; return; fi
	if [[ $(sysctl_state) != "$before" ]]; then fail $n "a setting or $PERSIST changed"; return; fi
	if ((IS_ROOT)) && ! grep -q "would change vm.swappiness: $SWAP_ODD -> $SWAP_WANT" "$OUT"; then
		fail $n "it does not say it would change vm.swappiness"
		return
	fi
	pass $n
}
t_dry_run

t_apply_fixes() {
	local n=apply_fixes_it_and_check_agrees bad
	need_root $n || return 0
	run "$SC/apply.sh"
	if ! grep -q "vm.swappiness: $SWAP_ODD -> $SWAP_WANT" "$OUT"; then
		fail $n "apply.sh (exit $RC) did not report vm.swappiness: $SWAP_ODD -> $SWAP_WANT"
		return
	fi
	# Anything else it could not set must explain a non-zero exit.
	if ((RC != 0)) && ! grep -Eq 'failed:|refused|kernel reports|asked' "$OUT"; then
		fail $n "exit $RC without a reason"
		return
	fi
	run "$SC/check.sh"
	if [[ $(check_status vm.swappiness) != ok ]]; then
		fail $n "check.sh says vm.swappiness is '$(check_status vm.swappiness)' after apply"
		return
	fi
	bad=$(grep -Ev '^(KEY|check:) ' "$OUT" | grep -Ec ' DIFF( |$)| missing \(not on this kernel\)$' || true)
	if { ((bad == 0)) && ((RC != 0)); } || { ((bad > 0)) && ((RC != 1)); }; then
		fail $n "check.sh exit $RC disagrees with its $bad failing line(s)"
		return
	fi
	pass $n
}
t_apply_fixes

t_apply_idempotent() {
	local n=apply_twice_changes_nothing_more
	need_root $n || return 0
	run "$SC/apply.sh"
	if grep -q -- ' -> ' "$OUT" || ! grep -q '^apply: 0 changed' "$OUT"; then
		fail $n "the second apply changed something"
		return
	fi
	pass $n
}
t_apply_idempotent

t_apply_persist() {
	local n=apply_persist_installs_profile_once
	need_root $n || return 0
	run "$SC/apply.sh" --persist
	if ! grep -Eq "(wrote|updated|already up to date).*$PERSIST|$PERSIST: already" "$OUT" || [[ ! -f $PERSIST ]]; then
		fail $n "no $PERSIST after --persist (exit $RC)"
		return
	fi
	if ! grep -Eq "^vm\.swappiness = $SWAP_WANT$" "$PERSIST" || [[ $(stat -c %a -- "$PERSIST") != 644 ]]; then
		fail $n "$PERSIST lacks vm.swappiness = $SWAP_WANT or is not mode 644"
		return
	fi
	run "$SC/apply.sh" --persist
	if ! grep -q "$PERSIST: already up to date" "$OUT"; then
		fail $n "a second --persist rewrote the file"
		return
	fi
	pass $n
}
t_apply_persist

restore_sysctl # later cases start from the host's own settings

t_missing_keys() {
	local n=missing_settings_are_skipped_not_failed p=$WORK/missing.conf
	printf '%s\n' '# a setting no kernel has, marked optional' '-vm.shmring_test_no_such_knob = 1' \
		'# another, not marked: a typo, as far as check.sh can tell' 'kernel.shmring_test_no_such_knob = 2' >"$p"
	run "$SC/apply.sh" --file "$p"
	if ((RC != 0)) || (($(grep -c 'not on this kernel, skipped' "$OUT") != 2)); then
		fail $n "apply.sh exit $RC, or it did not skip both with a note"
		return
	fi
	run "$SC/check.sh" --file "$p"
	if ((RC != 1)) || [[ $(check_status vm.shmring_test_no_such_knob) != missing ]]; then
		fail $n "check.sh exit $RC (want 1: a plain key is missing)"
		return
	fi
	printf '%s\n' '# optional only' '-vm.shmring_test_no_such_knob = 1' >"$p"
	run "$SC/check.sh" --file "$p"
	if ((RC != 0)); then fail $n "check.sh exit $RC with only an optional key missing"; return; fi
	pass $n
}
t_missing_keys

# --- tools/shmring-doctor ---------------------------------------------------------

# Check the doctor's text and JSON against each other and its exit status.
# $1: case name; the rest: how to run it.
doctor_consistent() {
	local n=$1 text_rc json_rc fails
	shift
	run "$@"
	text_rc=$RC
	cp -- "$OUT" "$WORK/doctor.txt"
	if ! awk 'NF && !/^(OK|WARN|FAIL)  / && !/^      fix: / && !/^shmring-doctor: [0-9]+ OK, [0-9]+ WARN, [0-9]+ FAIL$/ { bad = 1 } END { exit bad }' "$WORK/doctor.txt"; then
		fail "$n" "a line is neither OK/WARN/FAIL, fix:, nor the summary"
		return 1
	fi
	fails=$(grep -c '^FAIL' "$WORK/doctor.txt" || true)
	if { ((fails == 0)) && ((text_rc != 0)); } || { ((fails > 0)) && ((text_rc != 1)); }; then
		fail "$n" "exit $text_rc with $fails FAIL line(s)"
		return 1
	fi
	run "$@" --json
	json_rc=$RC
	if ! python3 -m json.tool "$OUT" >/dev/null 2>&1; then
		fail "$n" "--json is not valid JSON"
		return 1
	fi
	if ! python3 - "$OUT" "$json_rc" "$WORK/doctor.txt" <<'EOF'; then
import json, sys
items = json.load(open(sys.argv[1]))
assert isinstance(items, list) and items, "not a non-empty array"
for it in items:
    assert set(it) == {"check", "status", "found", "fix"}, it
    assert it["status"] in ("OK", "WARN", "FAIL"), it
    assert it["status"] == "OK" or it["fix"] or it["check"] in ("thp-shmem", "sysctl") or "nothing to isolate" in it["found"], it
fails = sum(it["status"] == "FAIL" for it in items)
assert (fails > 0) == (int(sys.argv[2]) == 1) and int(sys.argv[2]) in (0, 1), "exit status vs FAIL"
text = [l.split()[0] for l in open(sys.argv[3]) if l[:1] in "OWF" and not l.startswith("shmring-doctor:")]
assert text == [it["status"] for it in items], "text and JSON disagree"
EOF
		fail "$n" "--json (exit $json_rc) is not a consistent array of {check, status, found, fix}"
		return 1
	fi
	return 0
}

t_doctor() {
	local n=doctor_text_json_and_exit_agree
	doctor_consistent $n "$DOCTOR" || return 0
	if grep -q 'not found beside' "$WORK/doctor.txt"; then fail $n "it did not find sysctl/check.sh"; return; fi
	pass $n
}
t_doctor

t_doctor_installed() {
	local n=doctor_finds_scripts_when_installed lib=$WORK/prefix/libexec/shmring
	mkdir -p -- "$lib" "$WORK/prefix/bin" "$WORK/alone"
	cp -r -- "$HP" "$SC" "$lib/"
	cp -- "$DOCTOR" "$lib/shmring-doctor"
	ln -sf -- "$lib/shmring-doctor" "$WORK/prefix/bin/shmring-doctor"
	cp -- "$DOCTOR" "$WORK/alone/shmring-doctor"
	local how
	for how in "$lib/shmring-doctor" "$WORK/prefix/bin/shmring-doctor" \
		"SHMRING_SCRIPTS_DIR=$lib $WORK/alone/shmring-doctor"; do
		# From / so that nothing is found relative to the working directory.
		# shellcheck disable=SC2086 # $how is words without blanks, split on purpose
		doctor_consistent $n env -C / $how || return 0
		if grep -q 'not found beside' "$WORK/doctor.txt" ||
			{ grep -q 'fix: sudo ' "$WORK/doctor.txt" && ! grep -q "fix: sudo $lib/" "$WORK/doctor.txt"; }; then
			fail $n "run as '$how', it did not use the scripts in $lib"
			return
		fi
	done
	pass $n
}
t_doctor_installed

t_doctor_with_hugepages() {
	local n=doctor_ok_for_hugepages_under_ci_hugepages pages
	need_hp $n || return 0
	pages=$(((64 * 1024 + DEFAULT_KB - 1) / DEFAULT_KB)) # the doctor's default want: 64 MiB
	run "$HP/ci-hugepages.sh" --pages "$pages" -- "$DOCTOR"
	if ! grep -q "^OK    hugepages-${DEFAULT_KB}kB" "$OUT" || ! grep -q '^OK    hugetlbfs .*/shmring-hugetlbfs\.' "$OUT"; then
		fail $n "with $pages pages and a mount, the hugepage lines are not OK"
		return
	fi
	pass $n
}
t_doctor_with_hugepages

# --- the host is as it was ----------------------------------------------------------

restore_host
after=$(host_state)
OUT=
if [[ $after == "$BEFORE" ]]; then
	pass host_state_restored
else
	fail host_state_restored "$(diff <(echo "$BEFORE") <(echo "$after") | grep '^[<>]' | paste -sd' ' -)"
fi

echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))

#!/usr/bin/env bash
# hugepage/ci-hugepages.sh: run a command (the test suite) on a host that has
# hugepages and a hugetlbfs for it, then put the host back exactly as it was.
#
# CI machines and developer hosts start without a hugepage pool or mount, and a
# test run must not leave one behind (nor take away one that was there). So:
# record the pool and mounts, add only what is missing, run the command, and
# restore in an EXIT trap, which also runs on failure and on INT/TERM/HUP.
# Only SIGKILL can skip the restore; then hugepage/teardown.sh cleans up.
set -euo pipefail

PROG=ci-hugepages
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SYSFS_HP=/sys/kernel/mm/hugepages

usage() {
	cat <<'EOF'
Usage: hugepage/ci-hugepages.sh [--pages N] [--reuse-mount] [--] COMMAND [ARGS...]

Run COMMAND with N free hugepages of the default size and a hugetlbfs mount,
then restore the host's previous hugepage state and exit with COMMAND's status.

  1. Records the pool of the default page size (nr_hugepages) and the
     hugetlbfs mounts.
  2. Grows the pool only by what is missing: if N pages are already free and
     unreserved, it reserves nothing.
  3. Mounts a private hugetlbfs (mode 1777) on a new directory from mktemp -d,
     so that files a test leaves behind vanish with the unmount. With
     --reuse-mount an existing hugetlbfs of the default size is used instead,
     if there is one (then leftovers stay: tests must clean up).
  4. Runs COMMAND with these in its environment:
       SHMRING_HUGETLBFS_DIR=<the mount point>
       SHMRING_CI_HUGEPAGES=1
  5. On exit, also on failure or INT/TERM/HUP (forwarded to COMMAND first):
     unmounts and removes the private mount point, sets the pool back to its
     recorded size, prints what it restored, and warns if anything differs.

If it is not root, the kernel has no hugepages, or the kernel cannot reserve N
pages, it says why and runs COMMAND anyway with SHMRING_CI_HUGEPAGES=0 and
SHMRING_CI_HUGEPAGES_SKIP=<the reason>, so the hugepage tests skip visibly.
Its own messages go to stderr; COMMAND's stdout is left alone.

Options:
  --pages N       free hugepages COMMAND needs (default 64: 128 MiB of 2 MiB pages)
  --reuse-mount   use an existing hugetlbfs of the default page size if any
  -h, --help      show this text

Exit status: COMMAND's; 128+signal if interrupted; 2 on bad usage.
EOF
}

note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

pages=64 reuse=0
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--pages)
		(($# >= 2)) || usage_error "--pages needs a value"
		pages=$2
		shift 2
		;;
	--reuse-mount) reuse=1; shift ;;
	--) shift; break ;;
	-*) usage_error "unknown option: $1" ;;
	*) break ;;
	esac
done
(($#)) || usage_error "no command given"
[[ $pages =~ ^[0-9]+$ ]] || usage_error "--pages wants a number of pages, got '$pages'"
pages=$((10#$pages))

# Print "mountpoint pagesize" for every hugetlbfs mount, one a line.
hugetlbfs_mounts() {
	local mnt fstype opts ps
	while read -r _ mnt fstype opts _; do
		[[ $fstype == hugetlbfs ]] || continue
		[[ $mnt == *\\* ]] && printf -v mnt '%b' "${mnt//\\/\\0}"
		ps='?'
		[[ ",$opts," =~ ,pagesize=([0-9]+[KMG]?), ]] && ps=${BASH_REMATCH[1]}
		printf '%s %s\n' "$mnt" "$ps"
	done </proc/self/mounts
}

# pagesize=2M / 1024M / 64K as hugetlbfs shows it -> kB.
pagesize_kb() {
	[[ $1 =~ ^([0-9]+)([KMG]?)$ ]] || return 1
	case ${BASH_REMATCH[2]} in
	'' | K) echo "${BASH_REMATCH[1]}" ;;
	M) echo "$((BASH_REMATCH[1] * 1024))" ;;
	G) echo "$((BASH_REMATCH[1] * 1048576))" ;;
	esac
}

child=
caught=
# setup: signals end the script (the EXIT trap undoes what was done);
# running: signals go to the command; after: the restore must finish, so
# signals are only noted (timeout(1), for one, signals the whole group).
phase=setup
# Run the command as a child, not with exec, so that the restore can follow it.
# Signals that reach this script are passed on, so the command ends and the
# trap runs soon, instead of after the command would have finished anyway.
run_command() {
	note "running:$(printf " %q" "$@")"
	# A background job would get /dev/null as stdin and, in some shells,
	# ignore INT/QUIT: give it ours back and reset those.
	(
		trap - INT QUIT
		exec "$@"
	) 0<&0 &
	child=$!
	phase=running
	local status=0
	wait "$child" || status=$?
	# wait returns early when a trapped signal arrives; go on waiting until the
	# child is really gone (it got the same signal, so that is soon).
	while kill -0 "$child" 2>/dev/null; do
		status=0
		wait "$child" || status=$?
	done
	child=
	phase=after
	note "command exited with status $status"
	return "$status"
}

# shellcheck disable=SC2317 # reached only through the traps below
forward() {
	caught=$1
	case $phase in
	running) kill -s "$1" "$child" 2>/dev/null || true ;;
	setup)
		# No command to wait for yet: the EXIT trap undoes what was done.
		note "interrupted by SIG$1 before the command started"
		exit $((128 + $(kill -l "$1")))
		;;
	esac
}

run_unchanged() {
	note "$1: running the command without hugepage setup (hugepage tests should skip)"
	export SHMRING_CI_HUGEPAGES=0 SHMRING_CI_HUGEPAGES_SKIP="$1"
	shift
	local status=0
	run_command "$@" || status=$?
	exit "$status"
}

trap 'forward INT' INT
trap 'forward TERM' TERM
trap 'forward HUP' HUP

((EUID == 0)) || run_unchanged "not root (hugepage pools and mounts need root)" "$@"
size_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
[[ -n $size_kb && -d $SYSFS_HP/hugepages-${size_kb}kB ]] ||
	run_unchanged "this kernel has no hugepage support" "$@"
[[ -x $HERE/setup.sh ]] || run_unchanged "$HERE/setup.sh not found" "$@"

pool_dir=$SYSFS_HP/hugepages-${size_kb}kB
nr_file=$pool_dir/nr_hugepages
# The pool's size: sysfs nr_hugepages counts surplus pages too (overcommitted,
# or in use past a shrink), which a write to it does not set.
pool_size() { echo $(($(<"$nr_file") - $(<"$pool_dir/surplus_hugepages"))); }

# --- record -------------------------------------------------------------------

prior_nr=$(pool_size)
prior_mounts=$(hugetlbfs_mounts)
note "host before: nr_hugepages ${size_kb}kB = $prior_nr; hugetlbfs mounts: $(echo "${prior_mounts:-none}" | paste -sd, -)"

mount_dir=    # the private mount point we mounted, if any
made_dir=     # the directory we created for it
restored=0

restore() {
	((restored)) && return 0
	restored=1
	phase=after # from here on a signal must not cut the restore short
	local now got surplus after err
	if [[ -n $mount_dir ]]; then
		# A process that is still exiting, or anything walking /tmp at that
		# moment, makes the mount busy for a moment: try for up to 2 s.
		local tries=0
		until umount -- "$mount_dir" 2>/dev/null || ((++tries >= 10)); do
			sleep 0.2
		done
		if ((tries < 10)); then
			note "restored: unmounted hugetlbfs at $mount_dir"
		else
			# A process the command left behind still maps a file there: detach
			# the mount now; its pages go back when that process exits.
			umount -l -- "$mount_dir" 2>/dev/null || true
			note "warning: $mount_dir was busy (a leftover process maps a file in it): detached it lazily"
		fi
	fi
	if [[ -n $made_dir ]]; then
		if rmdir -- "$made_dir" 2>/dev/null; then
			note "restored: removed $made_dir"
		else
			note "warning: could not remove $made_dir"
		fi
	fi
	now=$(pool_size)
	if ((now != prior_nr)); then
		if err=$({ printf '%s\n' "$prior_nr" >"$nr_file"; } 2>&1); then
			got=$(pool_size)
			note "restored: nr_hugepages ${size_kb}kB: $now -> $got"
			surplus=$(<"$pool_dir/surplus_hugepages")
			((surplus == 0)) || note "warning: $surplus pages are still in use (surplus) until their users exit"
		else
			note "warning: could not set nr_hugepages ${size_kb}kB back to $prior_nr: ${err##*: }"
		fi
	fi
	after=$(hugetlbfs_mounts)
	if [[ $after == "$prior_mounts" ]]; then
		note "host after: nr_hugepages ${size_kb}kB = $(pool_size); hugetlbfs mounts as before"
	else
		note "warning: hugetlbfs mounts differ from before: $(echo "${after:-none}" | paste -sd, -)"
	fi
}
trap restore EXIT

# --- reserve and mount ----------------------------------------------------------

free=$(<"$pool_dir/free_hugepages")
resv=$(<"$pool_dir/resv_hugepages")
avail=$((free - resv)) # free pages already promised to a mapping are not ours
target=$prior_nr
if ((avail >= pages)); then
	note "$avail ${size_kb}kB pages already free: reserving nothing"
else
	target=$((prior_nr + pages - avail))
fi

setup_args=(--pages "$target")
existing=
if ((reuse)); then
	while read -r mnt ps; do
		[[ -n $mnt ]] || continue
		kb=$(pagesize_kb "$ps") || continue
		if ((kb == size_kb)) && [[ -z $existing || $mnt == /dev/hugepages ]]; then existing=$mnt; fi
	done <<<"$prior_mounts"
fi
if [[ -n $existing ]]; then
	setup_args+=(--no-mount)
	note "reusing the hugetlbfs at $existing"
else
	made_dir=$(mktemp -d -t shmring-hugetlbfs.XXXXXX)
	# 1777: a test that drops privileges must still be able to create rings;
	# nobody else knows this throwaway directory.
	setup_args+=(--mount "$made_dir" --mode 1777)
fi

setup_ok=1
"$HERE/setup.sh" "${setup_args[@]}" >&2 || setup_ok=0
# Whatever setup.sh managed before failing is ours to undo.
if [[ -n $made_dir ]]; then
	while read -r mnt _; do
		if [[ $mnt == "$made_dir" ]]; then mount_dir=$made_dir; fi
	done < <(hugetlbfs_mounts)
fi
if ((!setup_ok)); then
	restore
	run_unchanged "could not reserve $pages ${size_kb}kB hugepages (see the setup messages above)" "$@"
fi

export SHMRING_HUGETLBFS_DIR=${existing:-$mount_dir}
export SHMRING_CI_HUGEPAGES=1
unset SHMRING_CI_HUGEPAGES_SKIP
note "SHMRING_HUGETLBFS_DIR=$SHMRING_HUGETLBFS_DIR ($(<"$pool_dir/free_hugepages") ${size_kb}kB pages free)"

status=0
run_command "$@" || status=$?
if [[ -n $caught ]]; then
	note "interrupted by SIG$caught"
fi
exit "$status"

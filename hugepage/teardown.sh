#!/usr/bin/env bash
# hugepage/teardown.sh: undo hugepage/setup.sh: unmount the hugetlbfs and set the
# pool back. A hugetlbfs that still holds files may hold live rings, so it is
# left alone unless --force says their loss is intended.
set -euo pipefail

PROG=teardown
SYSFS_HP=/sys/kernel/mm/hugepages
SYSFS_NODE=/sys/devices/system/node

usage() {
	cat <<'EOF'
Usage: hugepage/teardown.sh [options]

Unmount the hugetlbfs that hugepage/setup.sh mounted and set the hugepage pool
back. Idempotent: what is already so is reported as "already" and left alone.

Options:
  --mount DIR    the hugetlbfs mount to remove (default /dev/hugepages); the
                 directory itself is kept
  --no-unmount   leave mounts alone; only set the pool
  --force        unmount even if files (rings) are left in it; their pages
                 go back to the pool. Files still open or mapped make the
                 unmount fail all the same (see: fuser -vm DIR)
  --pages N      set the pool to N pages (default 0)
  --keep-pool    leave the pool alone; only unmount
  --size S       page size of the pool: 2M, 1G or kB (default: the system
                 default size, Hugepagesize in /proc/meminfo)
  --node K       set the pool of NUMA node K only
  -h, --help     show this text

The pool is set after the unmount, since pages held by files in the mount can
only go back once it is gone. Pages still in use by a running process cannot
be taken: the kernel keeps them as surplus and frees them when they are
released; the script says so.

Only root may change the pool or mounts; as another user the script reports
what would change and exits 1 (or 0 when nothing needs changing).

Exit status: 0 done or already so, 1 failed or refused, 2 bad usage.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

size_to_kb() {
	local s=${1,,} n unit
	s=${s%ib}
	s=${s%b}
	[[ $s =~ ^([0-9]+)([kmg]?)$ ]] || return 1
	n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]}
	case $unit in
	'' | k) echo "$((10#$n))" ;;
	m) echo "$((10#$n * 1024))" ;;
	g) echo "$((10#$n * 1048576))" ;;
	esac
}

# The topmost mount at exactly the canonical path $1, as "fstype options", or
# nothing. /proc/self/mounts escapes blanks and backslashes as \ooo octal.
mount_at() {
	local want=$1 mnt fstype opts rest found=''
	while read -r _ mnt fstype opts rest; do
		[[ $mnt == *\\* ]] && printf -v mnt '%b' "${mnt//\\/\\0}"
		if [[ $mnt == "$want" ]]; then found="$fstype $opts"; fi
	done </proc/self/mounts
	if [[ -n $found ]]; then printf '%s\n' "$found"; fi
}

# --- arguments -------------------------------------------------------------

mount_dir=/dev/hugepages do_unmount=1 force=0 pages=0 do_pool=1 size='' node=''
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--no-unmount) do_unmount=0; shift; continue ;;
	--force) force=1; shift; continue ;;
	--keep-pool) do_pool=0; shift; continue ;;
	--mount | --pages | --size | --node)
		(($# >= 2)) || usage_error "$1 needs a value" ;;
	*) usage_error "unknown argument: $1" ;;
	esac
	case $1 in
	--mount) mount_dir=$2 ;;
	--pages) pages=$2 ;;
	--size) size=$2 ;;
	--node) node=$2 ;;
	esac
	shift 2
done
[[ $pages =~ ^[0-9]+$ ]] || usage_error "--pages wants a number of pages, got '$pages'"
pages=$((10#$pages))

changes=()

# --- plan: the mount ----------------------------------------------------------

mnt_state=none # none | umount
if ((do_unmount)); then
	mount_dir=$(realpath -m -- "$mount_dir")
	mounted=$(mount_at "$mount_dir")
	if [[ -n $mounted ]]; then
		fstype=${mounted%% *}
		# Only ever unmount a hugetlbfs: a typo in --mount must not take down
		# some other file system.
		[[ $fstype == hugetlbfs ]] || die "$mount_dir is a $fstype mount, not hugetlbfs: refusing to unmount it"
		# Rings are files here: any file may be a live ring of a running process.
		entries=0 example=
		while IFS= read -r -d '' f; do
			entries=$((entries + 1))
			[[ -n $example ]] || example=${f##*/}
		done < <(find "$mount_dir" -mindepth 1 -maxdepth 1 -print0 2>/dev/null)
		if ((entries > 0 && !force)); then
			die "$mount_dir still holds $entries file(s) (e.g. '$example'), which may be live rings: remove them, or pass --force to unmount anyway"
		fi
		mnt_state=umount
		changes+=("unmount hugetlbfs at $mount_dir")
	fi
fi

# --- plan: the pool -----------------------------------------------------------

if ((do_pool)); then
	[[ -d $SYSFS_HP ]] || die "this kernel has no hugepage support ($SYSFS_HP is absent)"
	if [[ -n $size ]]; then
		size_kb=$(size_to_kb "$size") || usage_error "--size wants 2M, 1G or a number of kB, got '$size'"
	else
		size_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
	fi
	[[ -d $SYSFS_HP/hugepages-${size_kb}kB ]] || die "this system offers no ${size_kb}kB hugepages"
	if [[ -n $node ]]; then
		[[ $node =~ ^[0-9]+$ ]] || usage_error "--node wants a node number, got '$node'"
		pool_dir=$SYSFS_NODE/node$node/hugepages/hugepages-${size_kb}kB
		[[ -d $pool_dir ]] || die "NUMA node $node has no ${size_kb}kB hugepage pool"
		pool_label="${size_kb}kB node$node"
	else
		pool_dir=$SYSFS_HP/hugepages-${size_kb}kB
		pool_label="${size_kb}kB"
	fi
	nr_file=$pool_dir/nr_hugepages
	# sysfs nr_hugepages counts surplus pages too (in use past a shrink, or
	# overcommitted); the pool a write sets is the rest.
	pool_size() { echo $(($(<"$nr_file") - $(<"$pool_dir/surplus_hugepages"))); }
	pool_now=$(pool_size)
	((pool_now == pages)) || changes+=("nr_hugepages $pool_label: $pool_now -> $pages")
fi

if ((${#changes[@]} > 0 && EUID != 0)); then
	printf '%s: error: only root may change hugepage pools and mounts; needed:\n' "$PROG" >&2
	printf '  %s\n' "${changes[@]}" >&2
	printf '%s: run it as root: sudo %s\n' "$PROG" "$0" >&2
	exit 1
fi

# --- act ----------------------------------------------------------------------

made=0
if ((do_unmount)); then
	if [[ $mnt_state == umount ]]; then
		if ! err=$(umount -- "$mount_dir" 2>&1); then
			die "unmounting $mount_dir failed: ${err##*: } (files still open or mapped? see: fuser -vm $mount_dir)"
		fi
		if ((entries > 0)); then
			say "unmounted hugetlbfs at $mount_dir (--force: $entries file(s) in it are gone)"
		else
			say "unmounted hugetlbfs at $mount_dir"
		fi
		made=$((made + 1))
	else
		say "hugetlbfs at $mount_dir: already not mounted"
	fi
fi

if ((do_pool)); then
	if ((pool_now == pages)); then
		say "nr_hugepages $pool_label: already $pages"
	else
		if ! err=$({ printf '%s\n' "$pages" >"$nr_file"; } 2>&1); then
			die "the kernel refused $pages in $nr_file: ${err##*: }"
		fi
		got=$(pool_size)
		say "nr_hugepages $pool_label: $pool_now -> $got"
		made=$((made + 1))
		((got == pages)) || die "the kernel kept $got pages, not $pages"
		surplus=$(<"$pool_dir/surplus_hugepages")
		if ((surplus > 0)); then
			say "note: $surplus ${size_kb}kB pages are still in use (surplus) and go back when their users free them"
		fi
	fi
fi

if ((made == 0)); then
	say "nothing changed: already torn down"
else
	say "done: $made change(s)"
fi

#!/usr/bin/env bash
# hugepage/setup.sh: reserve a hugepage pool and mount hugetlbfs for shmring rings.
#
# shmring puts a named ring in a file on hugetlbfs, so two things must be true on
# the host: the pool of the wanted page size holds pages, and a hugetlbfs of that
# page size is mounted where the ring users may create files. This script makes
# both true and says what it had to change. Run twice, the second run changes
# nothing and says "already".
set -euo pipefail

PROG=setup
SYSFS_HP=/sys/kernel/mm/hugepages
SYSFS_NODE=/sys/devices/system/node

usage() {
	cat <<'EOF'
Usage: hugepage/setup.sh --pages N [options]

Reserve N hugepages of one size and mount hugetlbfs so that shmring rings can
be created as files in it. Idempotent: run again with the same arguments, it
changes nothing and says "already".

Options:
  --pages N      set the pool of that page size to N pages (required)
  --size S       page size: 2M, 1G, or a number of kB such as 2048; default:
                 the system default size (Hugepagesize in /proc/meminfo)
  --node K       set the pool of NUMA node K only
                 (/sys/devices/system/node/nodeK/hugepages/...)
  --mount DIR    hugetlbfs mount point (default /dev/hugepages), created if
                 absent; mounted with pagesize= of the chosen size
  --no-mount     set the pool only
  --uid U        owner of the mount's root directory, name or number (default 0)
  --gid G        group of the mount's root directory, name or number (default 0)
  --mode M       octal mode of the mount's root directory
                 (default 1770 when --gid is given, 1777 otherwise)
  -h, --help     show this text

Who may create rings: the users of a ring must be able to create files in the
mount. Give the ring users a group and pass it with --gid: the default mode
1770 then lets that group, and nobody else, create and open rings; the sticky
bit keeps one user from deleting another's ring. Without --gid the default is
1777, the same rule as /dev/shm where POSIX shm rings live anyway.

An existing hugetlbfs mount at DIR with the same page size is kept; its owner,
group and mode are corrected in place if they differ. A mount of another page
size or another file system at DIR is an error (see hugepage/teardown.sh).

If the kernel reserves fewer pages than asked (memory too fragmented), the
script compacts memory and tries once more; if still short it says so, keeps
what it got, does not mount, and exits 1. Reserving at boot is reliable:
vm.nr_hugepages in sysctl/shmring.conf, or hugepages=N on the kernel command line.

Only root may change the pool or mounts; as another user the script reports
what would change and exits 1 (or 0 when nothing needs changing).

Exit status: 0 done or already so, 1 failed, 2 bad usage.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

# "2M", "2MiB", "1G", "2048", "2048kB" -> kB on stdout; fails on anything else.
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

# kB -> the form hugetlbfs takes in pagesize= (it parses K/M/G suffixes).
kb_to_pagesize() {
	local kb=$1
	if ((kb % 1048576 == 0)); then
		echo "$((kb / 1048576))G"
	elif ((kb % 1024 == 0)); then
		echo "$((kb / 1024))M"
	else
		echo "${kb}K"
	fi
}

offered_sizes() {
	local d out=()
	for d in "$SYSFS_HP"/hugepages-*kB; do
		[[ -d $d ]] && out+=("${d##*/hugepages-}")
	done
	echo "${out[*]:-none}"
}

# Name or number -> number, through the user or group database.
resolve_id() {
	local db=$1 name=$2 entry
	if entry=$(getent "$db" "$name"); then
		entry=${entry#*:*:}
		echo "${entry%%:*}"
	elif [[ $name =~ ^[0-9]+$ ]]; then
		echo "$name" # a bare id with no name is still a valid owner
	else
		return 1
	fi
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

# pagesize=2M / pagesize=1024M / pagesize=64K from mount options -> kB.
options_pagesize_kb() {
	local opts=",$1,"
	[[ $opts =~ ,pagesize=([0-9]+)([KMG]?), ]] || return 1
	size_to_kb "${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
}

# --- arguments -------------------------------------------------------------

pages='' size='' node='' mount_dir=/dev/hugepages do_mount=1 uid_arg='' gid_arg='' mode_arg=''
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--no-mount) do_mount=0; shift; continue ;;
	--pages | --size | --node | --mount | --uid | --gid | --mode)
		(($# >= 2)) || usage_error "$1 needs a value" ;;
	*) usage_error "unknown argument: $1" ;;
	esac
	case $1 in
	--pages) pages=$2 ;;
	--size) size=$2 ;;
	--node) node=$2 ;;
	--mount) mount_dir=$2 ;;
	--uid) uid_arg=$2 ;;
	--gid) gid_arg=$2 ;;
	--mode) mode_arg=$2 ;;
	esac
	shift 2
done

[[ -n $pages ]] || usage_error "--pages N is required"
[[ $pages =~ ^[0-9]+$ ]] || usage_error "--pages wants a number of pages, got '$pages'"
pages=$((10#$pages))

[[ -d $SYSFS_HP ]] || die "this kernel has no hugepage support ($SYSFS_HP is absent)"
if [[ -n $size ]]; then
	size_kb=$(size_to_kb "$size") || usage_error "--size wants 2M, 1G or a number of kB, got '$size'"
else
	size_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
	[[ -n $size_kb ]] || die "no Hugepagesize in /proc/meminfo: no hugepage support"
fi
[[ -d $SYSFS_HP/hugepages-${size_kb}kB ]] ||
	die "this system offers no ${size_kb}kB hugepages (sizes offered: $(offered_sizes))"

if [[ -n $node ]]; then
	[[ $node =~ ^[0-9]+$ ]] || usage_error "--node wants a node number, got '$node'"
	pool_dir=$SYSFS_NODE/node$node/hugepages/hugepages-${size_kb}kB
	[[ -d $pool_dir ]] || die "NUMA node $node has no ${size_kb}kB hugepage pool ($pool_dir)"
	pool_label="${size_kb}kB node$node"
else
	pool_dir=$SYSFS_HP/hugepages-${size_kb}kB
	pool_label="${size_kb}kB"
fi

uid=0 gid=0
if [[ -n $uid_arg ]]; then
	uid=$(resolve_id passwd "$uid_arg") || usage_error "no such user: $uid_arg"
fi
if [[ -n $gid_arg ]]; then
	gid=$(resolve_id group "$gid_arg") || usage_error "no such group: $gid_arg"
fi
if [[ -n $mode_arg ]]; then
	[[ $mode_arg =~ ^[0-7]{1,4}$ ]] || usage_error "--mode wants an octal mode such as 1770, got '$mode_arg'"
	mode=$(printf '%o' "$((8#$mode_arg))") # same spelling as stat %a: no leading zeros
elif [[ -n $gid_arg ]]; then
	mode=1770
else
	mode=1777
fi
pagesize=$(kb_to_pagesize "$size_kb")

# --- plan: find out what differs before touching anything --------------------

nr_file=$pool_dir/nr_hugepages
# The pool's size: sysfs nr_hugepages counts surplus pages too (overcommitted,
# or in use past a shrink), which are not part of the pool a write sets.
pool_size() { echo $(($(<"$nr_file") - $(<"$pool_dir/surplus_hugepages"))); }
pool_now=$(pool_size)
changes=()
((pool_now == pages)) || changes+=("nr_hugepages $pool_label: $pool_now -> $pages")

mnt_state=absent # absent | fix-attrs | ok
if ((do_mount)); then
	mount_dir=$(realpath -m -- "$mount_dir")
	mounted=$(mount_at "$mount_dir")
	if [[ -z $mounted ]]; then
		changes+=("mount hugetlbfs at $mount_dir")
	else
		fstype=${mounted%% *}
		[[ $fstype == hugetlbfs ]] ||
			die "$mount_dir is a $fstype mount, not hugetlbfs: choose another --mount"
		have_kb=$(options_pagesize_kb "${mounted#* }") ||
			die "cannot tell the page size of the hugetlbfs at $mount_dir"
		((have_kb == size_kb)) ||
			die "the hugetlbfs at $mount_dir has ${have_kb}kB pages, not ${size_kb}kB: unmount it first (hugepage/teardown.sh --mount $mount_dir)"
		st=$(stat -c '%a %u %g' -- "$mount_dir" 2>&1) ||
			die "cannot inspect $mount_dir: ${st##*: }"
		read -r have_mode have_uid have_gid <<<"$st"
		if [[ $have_mode != "$mode" || $have_uid != "$uid" || $have_gid != "$gid" ]]; then
			mnt_state=fix-attrs
			changes+=("set owner/mode of $mount_dir")
		else
			mnt_state=ok
		fi
	fi
fi

if ((${#changes[@]} > 0 && EUID != 0)); then
	printf '%s: error: only root may change hugepage pools and mounts; needed:\n' "$PROG" >&2
	printf '  %s\n' "${changes[@]}" >&2
	printf '%s: run it as root: sudo %s\n' "$PROG" "$0" >&2
	exit 1
fi

# --- pool -------------------------------------------------------------------

made=0

# Write the wanted count; the kernel answers with what it could reserve.
write_pool() {
	local err
	if ! err=$({ printf '%s\n' "$1" >"$nr_file"; } 2>&1); then
		die "the kernel refused $1 in $nr_file: ${err##*: }"
	fi
}

if ((pool_now == pages)); then
	say "nr_hugepages $pool_label: already $pages"
else
	write_pool "$pages"
	got=$(pool_size)
	if ((got < pages)) && [[ -w /proc/sys/vm/compact_memory ]]; then
		# Fragmented memory is the usual cause; compaction can free whole
		# hugepage-sized blocks, so one more try is worth it.
		say "nr_hugepages $pool_label: got $got of $pages, compacting memory and trying again"
		echo 1 >/proc/sys/vm/compact_memory
		write_pool "$pages"
		got=$(pool_size)
	fi
	made=$((made + 1))
	if ((got < pages)); then
		say "nr_hugepages $pool_label: $pool_now -> $got (asked $pages)"
		die "the kernel reserved only $got of $pages ${size_kb}kB pages (memory too fragmented or too small); kept $got, mounted nothing. Reserve at boot instead (vm.nr_hugepages, or hugepages= on the kernel command line), or release them: hugepage/teardown.sh --no-unmount --pages $pool_now"
	fi
	say "nr_hugepages $pool_label: $pool_now -> $got"
	surplus=$(<"$pool_dir/surplus_hugepages")
	if ((surplus > 0)); then
		say "note: $surplus ${size_kb}kB pages are still in use and stay allocated (surplus) until their users free them"
	fi
fi

# --- mount ------------------------------------------------------------------

attrs="pagesize=$pagesize, mode=$mode, uid=$uid, gid=$gid"
if ((do_mount)); then
	case $mnt_state in
	ok)
		say "hugetlbfs at $mount_dir: already mounted ($attrs)"
		;;
	fix-attrs)
		# The mount root's owner and mode are plain inode attributes: fixing them
		# in place keeps rings that already live there.
		if [[ $have_uid != "$uid" || $have_gid != "$gid" ]]; then
			chown -- "$uid:$gid" "$mount_dir"
			say "hugetlbfs at $mount_dir: owner $have_uid:$have_gid -> $uid:$gid"
		fi
		if [[ $have_mode != "$mode" ]]; then
			chmod -- "$mode" "$mount_dir"
			say "hugetlbfs at $mount_dir: mode $have_mode -> $mode"
		fi
		made=$((made + 1))
		;;
	absent)
		if [[ ! -d $mount_dir ]]; then
			mkdir -p -- "$mount_dir"
			say "created directory $mount_dir"
		fi
		mount -t hugetlbfs -o "pagesize=$pagesize,mode=$mode,uid=$uid,gid=$gid" hugetlbfs "$mount_dir" ||
			die "mount of hugetlbfs at $mount_dir failed"
		say "mounted hugetlbfs at $mount_dir ($attrs)"
		made=$((made + 1))
		;;
	esac
fi

if ((made == 0)); then
	say "nothing changed: already set up"
else
	say "done: $made change(s)"
fi

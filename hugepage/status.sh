#!/usr/bin/env bash
# hugepage/status.sh: show hugepage pools and hugetlbfs mounts, and whether the
# caller could create a ring in each mount. Read-only; any user may run it.
set -euo pipefail

PROG=status
SYSFS_HP=/sys/kernel/mm/hugepages
SYSFS_NODE=/sys/devices/system/node

usage() {
	cat <<'EOF'
Usage: hugepage/status.sh [--json]

Show, for each hugepage size the kernel offers, the pool: total, free,
reserved (promised to mappings but not yet faulted in), surplus (allocated
beyond the pool through overcommit, or kept while in use after a shrink) and
the overcommit limit; per NUMA node when the host has more than one node.
Then every hugetlbfs mount with its page size, owner, group, mode, and whether
you (the user running this) can create files, and so rings, in it.

Options:
  --json      print one JSON object instead of the table
  -h, --help  show this text

Changes nothing. Exit status: 0, or 2 on bad usage.
EOF
}

json=0
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--json) json=1 ;;
	*) printf '%s: unknown argument: %s (see --help)\n' "$PROG" "$1" >&2; exit 2 ;;
	esac
	shift
done

# JSON string literal for $1: escapes the characters JSON requires.
json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\t'/\\t}
	s=${s//$'\n'/\\n}
	printf '"%s"' "$s"
}

read_or_dash() { if [[ -r $1 ]]; then cat -- "$1"; else echo -; fi; }

size_to_kb() {
	local s=${1,,}
	[[ $s =~ ^([0-9]+)([kmg]?)$ ]] || return 1
	case ${BASH_REMATCH[2]} in
	'' | k) echo "${BASH_REMATCH[1]}" ;;
	m) echo "$((BASH_REMATCH[1] * 1024))" ;;
	g) echo "$((BASH_REMATCH[1] * 1048576))" ;;
	esac
}

default_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
nodes=()
for d in "$SYSFS_NODE"/node[0-9]*; do
	[[ -d $d/hugepages ]] && nodes+=("${d##*/node}")
done

# --- pools ------------------------------------------------------------------

sizes=()
for d in "$SYSFS_HP"/hugepages-*kB; do
	[[ -d $d ]] || continue
	s=${d##*/hugepages-}
	sizes+=("${s%kB}")
done
# Smallest size first, whatever order the glob gave.
if ((${#sizes[@]})); then
	mapfile -t sizes < <(printf '%s\n' "${sizes[@]}" | sort -n)
fi

pool_json=()
if ((!json)); then
	if ((${#sizes[@]} == 0)); then
		echo "hugepage pools: none (this kernel has no hugepage support)"
	else
		echo "hugepage pools (default size ${default_kb:-?}kB, marked *):"
		printf '  %-12s %8s %8s %9s %8s %11s\n' SIZE TOTAL FREE RESERVED SURPLUS OVERCOMMIT
	fi
fi
for kb in "${sizes[@]}"; do
	d=$SYSFS_HP/hugepages-${kb}kB
	total=$(<"$d/nr_hugepages") free=$(<"$d/free_hugepages")
	resv=$(<"$d/resv_hugepages") surp=$(<"$d/surplus_hugepages")
	over=$(<"$d/nr_overcommit_hugepages")
	mark=
	[[ $kb == "$default_kb" ]] && mark='*'
	node_json=()
	if ((json)); then
		for n in "${nodes[@]}"; do
			nd=$SYSFS_NODE/node$n/hugepages/hugepages-${kb}kB
			[[ -d $nd ]] || continue
			node_json+=("{\"node\":$n,\"total\":$(<"$nd/nr_hugepages"),\"free\":$(<"$nd/free_hugepages"),\"surplus\":$(<"$nd/surplus_hugepages")}")
		done
		joined=$(IFS=,; echo "${node_json[*]}")
		pool_json+=("{\"size_kb\":$kb,\"default\":$([[ -n $mark ]] && echo true || echo false),\"total\":$total,\"free\":$free,\"reserved\":$resv,\"surplus\":$surp,\"overcommit\":$over,\"nodes\":[$joined]}")
	else
		printf '  %-12s %8s %8s %9s %8s %11s\n' "${kb}kB$mark" "$total" "$free" "$resv" "$surp" "$over"
		# One node holds the whole pool: a per-node breakdown would repeat it.
		if ((${#nodes[@]} > 1)); then
			for n in "${nodes[@]}"; do
				nd=$SYSFS_NODE/node$n/hugepages/hugepages-${kb}kB
				[[ -d $nd ]] || continue
				printf '    %-10s %8s %8s %9s %8s %11s\n' "node$n" "$(read_or_dash "$nd/nr_hugepages")" \
					"$(read_or_dash "$nd/free_hugepages")" - "$(read_or_dash "$nd/surplus_hugepages")" -
			done
		fi
	fi
done

# --- mounts -----------------------------------------------------------------

mount_json=()
count=0
((json)) || echo "hugetlbfs mounts:"
while read -r _ mnt fstype opts _; do
	[[ $fstype == hugetlbfs ]] || continue
	# /proc/self/mounts escapes blanks and backslashes as \ooo octal.
	[[ $mnt == *\\* ]] && printf -v mnt '%b' "${mnt//\\/\\0}"
	count=$((count + 1))
	psize_kb='?'
	if [[ ",$opts," =~ ,pagesize=([0-9]+[KMG]?), ]]; then
		psize_kb=$(size_to_kb "${BASH_REMATCH[1]}") || psize_kb='?'
	fi
	if st=$(stat -c '%U %G %a' -- "$mnt" 2>/dev/null); then
		read -r owner group mode <<<"$st"
	else
		owner='?' group='?' mode='?'
	fi
	# access(2) with the caller's ids: creating a file needs write and search.
	if [[ -w $mnt && -x $mnt ]]; then can=yes; else can=no; fi
	if ((json)); then
		mount_json+=("{\"path\":$(json_str "$mnt"),\"pagesize_kb\":$([[ $psize_kb == '?' ]] && echo null || echo "$psize_kb"),\"owner\":$(json_str "$owner"),\"group\":$(json_str "$group"),\"mode\":$(json_str "$mode"),\"can_create\":$([[ $can == yes ]] && echo true || echo false)}")
	else
		printf '  %s  pagesize=%skB  owner=%s  group=%s  mode=%s  you (%s) can create files: %s\n' \
			"$mnt" "$psize_kb" "$owner" "$group" "$mode" "$(id -un)" "$can"
	fi
done </proc/self/mounts
((json || count > 0)) || echo "  none (mount one with: sudo hugepage/setup.sh --pages N)"

if ((json)); then
	printf '{"default_size_kb":%s,"pools":[%s],"mounts":[%s]}\n' "${default_kb:-null}" \
		"$(IFS=,; echo "${pool_json[*]}")" "$(IFS=,; echo "${mount_json[*]}")"
fi

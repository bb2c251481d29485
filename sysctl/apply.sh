#!/usr/bin/env bash
# sysctl/apply.sh: bring the running kernel's settings to the shmring profile.
#
# This file also holds the profile reader and the comparison that
# sysctl/check.sh uses (it runs "apply.sh --check"), so that applying and
# checking can never disagree about what a profile line means.
set -euo pipefail

PROG=apply
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
PROC_SYS=/proc/sys
PERSIST_FILE=/etc/sysctl.d/60-shmring.conf

usage() {
	cat <<EOF
Usage: sysctl/apply.sh [--dry-run] [--persist] [--file PROFILE]

Apply a sysctl profile (default: sysctl/shmring.conf beside this script) to the
running kernel now. Prints "key: old -> new" for each setting it changes and
counts the ones already right. Idempotent: a second run changes nothing.

Options:
  --file F    use profile F instead of shmring.conf
  --persist   also install the profile as $PERSIST_FILE, so that it
              is applied at every boot (where the hugepage reservation is sure
              to succeed); rewritten only when its content would change
  --dry-run   change nothing; print what would change
  --check     report only, as sysctl/check.sh (see its --help)
  -h, --help  show this text

Profile format: sysctl.d(5), "key = value" lines and # or ; comments. A key
written "-key" may be absent on some kernels; absent keys are skipped with a
note whatever their prefix. A comment line "# shmring-policy: at-least" just
above a setting makes its value a floor: raised when lower, never lowered.
With --persist, such a key is written with the value in force.

vm.nr_hugepages is not raised past half of RAM (with 1 GiB default pages a
small count is a lot of memory), and a pool the kernel fills only in part is
reported as a failure.

Only root may change settings; as another user, changes that would be made
are listed and the exit status is 1. Exit status: 0 done (or nothing to do),
1 a setting could not be set (or not root), 2 bad usage or a bad profile.
EOF
}

say() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit "${2:-1}"; }
usage_error() { printf '%s: %s (see --help)\n' "$PROG" "$*" >&2; exit 2; }

# The helpers below answer in REPLY rather than on stdout: a command
# substitution forks, and a profile has many lines.

# REPLY = $1 without leading and trailing blanks.
trim() {
	REPLY=${1#"${1%%[![:space:]]*}"}
	REPLY=${REPLY%"${REPLY##*[![:space:]]}"}
}

# REPLY = the words of $1 joined by single spaces. A value as the kernel prints
# it may be separated by tabs (kernel.printk): compare words, not spacing.
normalize() {
	local -a w
	read -ra w <<<"$1" || true
	REPLY=${w[*]}
}

# sysctl.d(5): if the first separator is '/', the key is a path as written;
# if it is '.', dots and slashes swap (so "net.ipv4.conf.eth0/100.rp_filter"
# names the interface "eth0.100").
key_path() {
	local k=$1 first=${1%%[./]*}
	if [[ ${k:${#first}:1} == / ]]; then
		REPLY=$PROC_SYS/$k
	else
		k=${k//./$'\x01'}
		k=${k//\//.}
		REPLY=$PROC_SYS/${k//$'\x01'//}
	fi
}

# a >= b for unsigned decimal strings of any length (kernel.shmmax defaults to
# nearly 2^64, past what shell arithmetic holds).
num_ge() {
	local a=$1 b=$2
	a=${a#"${a%%[!0]*}"} b=${b#"${b%%[!0]*}"}
	a=${a:-0} b=${b:-0}
	if ((${#a} != ${#b})); then
		((${#a} > ${#b}))
	else
		[[ $a == "$b" || $a > $b ]]
	fi
}

# Read the profile into KEYS (as written, without '-'), WANT, OPTIONAL (1 for
# "-key"), FLOOR (1 for at-least) and LINE (its line number).
load_profile() {
	local file=$1 raw line key val n=0 floor=0 opt
	KEYS=() WANT=() OPTIONAL=() FLOOR=() LINE=()
	while IFS= read -r raw || [[ -n $raw ]]; do
		n=$((n + 1))
		trim "$raw"
		line=$REPLY
		case $line in
		'') continue ;;
		'#'* | ';'*)
			if [[ $line =~ ^[#\;][[:space:]]*shmring-policy:[[:space:]]*at-least[[:space:]]*$ ]]; then
				floor=1
			fi
			continue
			;;
		esac
		[[ $line == *=* ]] || die "$file:$n: not a 'key = value' line: $line" 2
		trim "${line%%=*}"
		key=$REPLY
		normalize "${line#*=}"
		val=$REPLY
		opt=0
		if [[ $key == -* ]]; then
			opt=1
			trim "${key#-}"
			key=$REPLY
		fi
		[[ $key =~ ^[A-Za-z0-9_.:/@+-]+$ ]] ||
			die "$file:$n: unsupported key '$key' (no globs, no spaces)" 2
		[[ -n $val ]] || die "$file:$n: $key has no value" 2
		if ((floor)) && ! [[ $val =~ ^[0-9]+$ ]]; then
			die "$file:$n: $key is marked at-least but '$val' is not a whole number" 2
		fi
		KEYS+=("$key") WANT+=("$val") OPTIONAL+=("$opt") FLOOR+=("$floor") LINE+=("$n")
		floor=0
	done <"$file"
}

# Sets STATE (ok, DIFF, missing, unreadable) and CUR for profile entry $1.
evaluate() {
	local i=$1 path raw=''
	key_path "${KEYS[i]}"
	path=$REPLY
	CUR=-
	if [[ ! -e $path ]]; then
		STATE=missing
		return
	fi
	# -r asks the kernel, which for /proc/sys goes by the file's mode even
	# for root (a write-only knob such as vm.compact_memory is not readable).
	if [[ ! -r $path ]] || { ! IFS= read -r -d '' raw <"$path" && [[ -z $raw ]]; } 2>/dev/null; then
		STATE=unreadable CUR='?'
		return
	fi
	normalize "$raw"
	CUR=$REPLY
	if ((FLOOR[i])); then
		if [[ $CUR =~ ^[0-9]+$ ]] && num_ge "$CUR" "${WANT[i]}"; then STATE=ok; else STATE=DIFF; fi
	elif [[ $CUR == "${WANT[i]}" ]]; then
		STATE=ok
	else
		STATE=DIFF
	fi
}

# --- arguments -------------------------------------------------------------

mode=apply dry=0 persist=0 file=$HERE/shmring.conf
while (($#)); do
	case $1 in
	-h | --help) usage; exit 0 ;;
	--dry-run) dry=1 ;;
	--persist) persist=1 ;;
	--check) mode=check PROG=check ;;
	--file)
		(($# >= 2)) || usage_error "--file needs a value"
		file=$2
		shift
		;;
	*) usage_error "unknown argument: $1" ;;
	esac
	shift
done
[[ -f $file && -r $file ]] || die "cannot read profile $file" 2
load_profile "$file"

# --- check: report and exit ---------------------------------------------------

if [[ $mode == check ]]; then
	ok=0 diff=0 missing=0 missing_opt=0
	printf '%-34s %-16s %-22s %s\n' KEY WANTED CURRENT STATUS
	for i in "${!KEYS[@]}"; do
		evaluate "$i"
		want=${WANT[i]}
		((FLOOR[i])) && want=">=$want"
		note=
		case $STATE in
		ok) ok=$((ok + 1)) ;;
		DIFF) diff=$((diff + 1)) ;;
		unreadable) diff=$((diff + 1)) STATE=DIFF note='(cannot read it as this user)' ;;
		missing)
			missing=$((missing + 1))
			if ((OPTIONAL[i])); then
				missing_opt=$((missing_opt + 1)) note='(not on this kernel; optional)'
			else
				note='(not on this kernel)'
			fi
			;;
		esac
		printf '%-34s %-16s %-22s %s%s\n' "${KEYS[i]}" "$want" "$CUR" "$STATE" "${note:+ $note}"
	done
	say "$ok ok, $diff DIFF, $missing missing ($missing_opt optional) in $file"
	# A missing "-key" is expected on some kernels; a missing plain key is not
	# (it may be a typo), so only that one fails the check.
	((diff == 0 && missing == missing_opt)) || exit 1
	exit 0
fi

# --- apply: plan --------------------------------------------------------------

unchanged=0 skipped=0 failed=0 changed=0
todo=()
mem_total_kb=$(awk '$1 == "MemTotal:" { print $2 }' /proc/meminfo)
hp_kb=$(awk '$1 == "Hugepagesize:" { print $2 }' /proc/meminfo)
for i in "${!KEYS[@]}"; do
	evaluate "$i"
	key=${KEYS[i]}
	case $STATE in
	ok) unchanged=$((unchanged + 1)) ;;
	missing)
		say "$key: not on this kernel, skipped"
		skipped=$((skipped + 1))
		;;
	unreadable)
		say "$key: cannot read it as this user, skipped"
		failed=$((failed + 1))
		;;
	DIFF)
		key_path "$key"
		if [[ ! -w $REPLY ]] && ((EUID == 0)); then
			# Read-only even for root: the kernel offers the knob but not
			# the feature (e.g. nmi_watchdog without an NMI watchdog).
			say "$key: read-only on this kernel (is $CUR, profile wants ${WANT[i]}), skipped"
			skipped=$((skipped + 1))
		elif [[ $key == vm.nr_hugepages || $key == vm/nr_hugepages ]] &&
			[[ ${WANT[i]} =~ ^[0-9]+$ ]] && ((${hp_kb:-0} * WANT[i] > ${mem_total_kb:-0} / 2)); then
			say "$key: ${WANT[i]} pages of ${hp_kb}kB is more than half of RAM (${mem_total_kb} kB): refused; lower it in $file"
			failed=$((failed + 1))
		else
			todo+=("$i")
			OLD[i]=$CUR
		fi
		;;
	esac
done

# The file --persist installs: the profile as written, except that a floor the
# host already exceeds is written with the value in force (at boot,
# systemd-sysctl sets values exactly and would otherwise lower it).
persist_content() {
	local i prefix lines
	mapfile -t lines <"$file"
	for i in "${!KEYS[@]}"; do
		((FLOOR[i])) || continue
		evaluate "$i"
		if [[ $STATE == ok && $CUR != "${WANT[i]}" ]]; then
			prefix=
			((OPTIONAL[i])) && prefix=-
			lines[LINE[i] - 1]="$prefix${KEYS[i]} = $CUR"
		fi
	done
	printf '# Installed by shmring sysctl/apply.sh --persist from %s/%s.\n' \
		"$(cd -- "$(dirname -- "$file")" && pwd)" "${file##*/}"
	printf '# Edit that profile and run apply.sh --persist again rather than this file.\n'
	printf '%s\n' "${lines[@]}"
}

# True when the installed file differs from what --persist would write now.
persist_differs() {
	[[ ! -f $PERSIST_FILE ]] || ! cmp -s -- "$PERSIST_FILE" <(persist_content)
}

if ((!dry && EUID != 0)) && { ((${#todo[@]} > 0)) || { ((persist)) && persist_differs; }; }; then
	printf '%s: error: only root may change kernel settings; would change:\n' "$PROG" >&2
	for i in "${todo[@]}"; do
		printf '  %s: %s -> %s\n' "${KEYS[i]}" "${OLD[i]}" "${WANT[i]}" >&2
	done
	((persist)) && printf '  %s\n' "$PERSIST_FILE" >&2
	printf '%s: run it as root: sudo %s\n' "$PROG" "$0" >&2
	exit 1
fi

# --- apply: write ---------------------------------------------------------------

for i in "${todo[@]}"; do
	key=${KEYS[i]} want=${WANT[i]}
	if ((dry)); then
		say "would change $key: ${OLD[i]} -> $want"
		changed=$((changed + 1))
		continue
	fi
	key_path "$key"
	path=$REPLY
	if ! err=$({ printf '%s\n' "$want" >"$path"; } 2>&1); then
		say "$key: writing $want failed: ${err##*: }"
		failed=$((failed + 1))
		continue
	fi
	evaluate "$i"
	if [[ $STATE == ok ]]; then
		say "$key: ${OLD[i]} -> $CUR"
		changed=$((changed + 1))
	elif [[ $key == vm.nr_hugepages || $key == vm/nr_hugepages ]]; then
		say "$key: ${OLD[i]} -> $CUR (asked $want: memory is too fragmented for more; reserve at boot with --persist)"
		failed=$((failed + 1))
	else
		say "$key: wrote $want but the kernel reports $CUR"
		failed=$((failed + 1))
	fi
done

# --- persist ----------------------------------------------------------------

if ((persist)); then
	if ! persist_differs; then
		say "$PERSIST_FILE: already up to date"
	elif ((dry)); then
		say "would write $PERSIST_FILE"
	else
		existed=0
		[[ -e $PERSIST_FILE ]] && existed=1
		mkdir -p -- "${PERSIST_FILE%/*}"
		tmp=$(mktemp "${PERSIST_FILE%/*}/.60-shmring.conf.XXXXXX")
		persist_content >"$tmp"
		chmod 0644 -- "$tmp"
		mv -f -- "$tmp" "$PERSIST_FILE" # atomic: boot never sees half a file
		if ((existed)); then say "updated $PERSIST_FILE"; else say "wrote $PERSIST_FILE"; fi
	fi
fi

if ((dry)); then
	say "dry run: $changed would change, $unchanged unchanged, $skipped skipped, $failed failed"
else
	say "$changed changed, $unchanged unchanged, $skipped skipped, $failed failed"
fi
((failed == 0)) || exit 1

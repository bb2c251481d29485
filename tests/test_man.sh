#!/usr/bin/env bash
# test_man.sh - the man pages keep up with the contract, include/shmring.h.
#
# For every function declared in the header: man/man3/<name>.3 exists (a page
# or a ".so" link to one), the page's SYNOPSIS shows the header's prototype,
# its NAME line names the function, and it mentions every error code (-EXXX)
# of the comment block above the declaration. Every page has the sections a
# reader looks for (RETURN VALUE above all), renders without a warning from
# groff -ww and man --warnings, parses for whatis (lexgrog), and refers only
# to shmring pages that exist; complete example programs compile with
# -Wall -Wextra -Werror. shmring(7) lists every section 3 page.
#
# Each check prints PASS or FAIL (SKIP, uncounted, when a tool is missing);
# the last line is "N passed, N failed"; the exit status is 1 on any failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
header=$root/include/shmring.h
mandir=$root/man
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass=0
fail=0
ok() { printf 'PASS %s\n' "$*"; pass=$((pass + 1)); }
ko() { printf 'FAIL %s\n' "$*"; fail=$((fail + 1)); }
skip() { printf 'SKIP %s\n' "$*"; }

have() { command -v "$1" > /dev/null 2>&1; }

# ---- the contract -----------------------------------------------------------
#
# One line per declared function: name TAB prototype TAB error codes. The
# prototype is joined onto one line with its white space collapsed. The codes
# are those of the comment block directly above the declaration; a block that
# documents several declarations in a row (the zero-copy calls) covers each of
# them, and anything else between a comment and a prototype (a macro, a type)
# ends the comment's reach.
parse_header() {
	awk '
	function codes_of(s,    out, c) {
		out = ""
		while (match(s, /(^|[^A-Za-z0-9_])-E[A-Z0-9]+/)) {
			c = substr(s, RSTART, RLENGTH)
			sub(/^[^-]/, "", c)
			if (index(" " out " ", " " c " ") == 0)
				out = out (out == "" ? "" : " ") c
			s = substr(s, RSTART + RLENGTH)
		}
		return out
	}
	function emit() {
		gsub(/[ \t]+/, " ", proto)
		gsub(/\( /, "(", proto)
		gsub(/ \)/, ")", proto)
		sub(/^ /, "", proto)
		sub(/ $/, "", proto)
		printf "%s\t%s\t%s\n", name, proto, codes_of(comment)
		inproto = 0
	}
	incomment {
		buf = buf " " $0
		if ($0 ~ /\*\//) { incomment = 0; comment = buf }
		next
	}
	inproto {
		proto = proto " " $0
		if ($0 ~ /;/) emit()
		next
	}
	/^\/\*/ {
		buf = $0
		if ($0 ~ /\*\//) comment = buf; else incomment = 1
		next
	}
	/^[A-Za-z_]/ && !/^#/ && match($0, /shmring_[a-z0-9_]+\(/) {
		name = substr($0, RSTART, RLENGTH - 1)
		proto = $0
		if ($0 ~ /;/) emit(); else inproto = 1
		next
	}
	/^[ \t]*$/ { next }
	{ comment = "" }
	' "$header"
}

parse_header > "$tmp/decls"
ndecl=$(wc -l < "$tmp/decls")
if [ "$ndecl" -gt 0 ]; then
	ok "include/shmring.h declares $ndecl functions"
else
	ko "no function declarations found in include/shmring.h"
fi

# ---- helpers on pages -------------------------------------------------------

# The page a file stands for: itself, or the target of its ".so" line
# (relative to man/, as man(1) resolves it). Prints a path relative to man/.
is_stub() { grep -qE '^\.so[[:space:]]' "$mandir/$1"; }
resolve() {
	if is_stub "$1"; then
		sed -n 's/^\.so[[:space:]]*//p' "$mandir/$1" | head -n 1
	else
		printf '%s\n' "$1"
	fi
}

# The page source with the escapes that matter here undone: \- is a minus,
# font changes go.
plain_source() {
	sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\f(..//g' -e 's/\\&//g' "$mandir/$1"
}

# The text of one section (".SH NAME" up to the next ".SH"), from the source.
section_source() {
	awk -v want="$2" '
	/^\.SH/ {
		h = $0
		sub(/^\.SH[ \t]+/, "", h)
		gsub(/"/, "", h)
		on = (h == want)
		next
	}
	on
	' "$mandir/$1"
}

# The page rendered as plain ASCII on one very long line per output line.
render() {
	(cd "$mandir" && groff -man -Tascii -P-c -P-b -P-o -P-u -rLL=400n "$1" 2> /dev/null)
}

# ---- one check per declared function ---------------------------------------

declared=" "
while IFS=$'\t' read -r name proto codes; do
	declared="$declared$name "
	rel=man3/$name.3
	if [ ! -f "$mandir/$rel" ]; then
		ko "$name: man/$rel is missing"
		continue
	fi
	target=$(resolve "$rel")
	if [ ! -f "$mandir/$target" ]; then
		ko "$name: man/$rel links to man/$target, which is missing"
		continue
	fi
	if is_stub "$rel"; then
		ok "$name: man/$rel (a link to man/$target)"
	else
		ok "$name: man/$rel"
	fi

	# NAME names the function, so that whatis and apropos find it.
	if section_source "$target" NAME | grep -qE "(^|[ ,])$name([ ,]|$)"; then
		ok "$name: the NAME line of man/$target names it"
	else
		ko "$name: the NAME line of man/$target does not name it"
	fi

	# The SYNOPSIS shows the prototype exactly as the header declares it.
	if have groff; then
		synopsis=$(render "$target" | awk '/^SYNOPSIS/ { on = 1; next } /^[A-Z]/ { on = 0 } on' |
			tr -s '[:space:]' ' ' | sed -e 's/( /(/g' -e 's/ )/)/g')
		if [[ "$synopsis" == *"$proto"* ]]; then
			ok "$name: SYNOPSIS of man/$target shows the prototype"
		else
			ko "$name: SYNOPSIS of man/$target lacks the prototype: $proto"
		fi
	else
		skip "$name: SYNOPSIS prototype not checked (no groff to render the page)"
	fi

	# Every error code the header lists for the call appears in its page.
	if [ -z "$codes" ]; then
		ok "$name: the header lists no error code; nothing to match in man/$target"
	else
		src=$(plain_source "$target")
		missing=""
		for c in $codes; do
			if ! grep -qE -- "(^|[^A-Za-z0-9_])$c([^A-Z0-9_]|$)" <<< "$src"; then
				missing="$missing $c"
			fi
		done
		if [ -z "$missing" ]; then
			ok "$name: man/$target names every error code of the header ($codes)"
		else
			ko "$name: man/$target does not name:$missing"
		fi
	fi
done < "$tmp/decls"

# No page for a function the header does not declare (a renamed or removed one).
orphans=""
for f in "$mandir"/man3/*.3; do
	[ -e "$f" ] || continue
	n=$(basename "$f" .3)
	[[ "$declared" == *" $n "* ]] || orphans="$orphans $n.3"
done
if [ -z "$orphans" ]; then
	ok "every page in man/man3 is for a declared function"
else
	ko "pages for functions the header does not declare:$orphans"
fi

# ---- one set of checks per page file ----------------------------------------

pages=()
for f in "$mandir"/man3/*.3 "$mandir"/man7/*.7; do
	[ -e "$f" ] && pages+=("${f#"$mandir"/}")
done

if ! have groff && ! have man; then
	skip "rendering checks: neither groff nor man is installed (apt-get install groff-base man-db)"
fi
have lexgrog || skip "whatis parse checks: lexgrog (man-db) is not installed"

for rel in "${pages[@]}"; do
	if is_stub "$rel"; then
		# A link is one .so line: anything else in it would never be shown.
		extra=$(grep -vE '^\.so[[:space:]]|^\.\\"|^[[:space:]]*$' "$mandir/$rel" || true)
		if [ -z "$extra" ]; then
			ok "man/$rel: a link and nothing else"
		else
			ko "man/$rel: a .so link with other content"
		fi
	else
		missing=""
		case $rel in
		man3/*) want=("NAME" "SYNOPSIS" "DESCRIPTION" "RETURN VALUE" "SEE ALSO") ;;
		*) want=("NAME" "DESCRIPTION" "SEE ALSO") ;;
		esac
		for s in "${want[@]}"; do
			grep -qE "^\.SH[[:space:]]+\"?$s\"?[[:space:]]*$" "$mandir/$rel" || missing="$missing '$s'"
		done
		if [ -z "$missing" ]; then
			ok "man/$rel: sections ${want[*]}"
		else
			ko "man/$rel: missing section(s)$missing"
		fi
		case $rel in
		man3/*)
			if grep -qE '^\.SH[[:space:]]+"?RETURN VALUE"?[[:space:]]*$' "$mandir/$rel"; then
				ok "man/$rel: has a RETURN VALUE section"
			else
				ko "man/$rel: has no RETURN VALUE section"
			fi
			if section_source "$rel" SYNOPSIS | grep -qF 'shmring.h' &&
				section_source "$rel" SYNOPSIS | grep -qF -- '\-lshmring'; then
				ok "man/$rel: SYNOPSIS includes <shmring.h> and says to link with -lshmring"
			else
				ko "man/$rel: SYNOPSIS lacks #include <shmring.h> or -lshmring"
			fi
			;;
		esac

		# References to shmring pages point at pages that exist.
		broken=""
		while read -r ref sec; do
			[ -n "$ref" ] || continue
			case $sec in
			3 | 7)
				[ -f "$mandir/man$sec/$ref.$sec" ] || [[ "$broken " == *" $ref($sec) "* ]] ||
					broken="$broken $ref($sec)"
				;;
			esac
		done < <(grep -oE '^\.BR? shmring[a-z0-9_]* \(?[0-9]' "$mandir/$rel" |
			sed -E 's/^\.BR? ([a-z0-9_]+) \(?([0-9])/\1 \2/' || true)
		if [ -z "$broken" ]; then
			ok "man/$rel: its references to shmring pages resolve"
		else
			ko "man/$rel: references to missing pages:$broken"
		fi

		if have lexgrog; then
			if (cd "$mandir" && lexgrog "$rel" > /dev/null 2>&1); then
				ok "man/$rel: lexgrog parses its NAME section"
			else
				ko "man/$rel: lexgrog cannot parse its NAME section"
			fi
		fi

		# Complete example programs (those with a main) compile warning-free.
		if section_source "$rel" EXAMPLES | grep -qE '^\.EX'; then
			awk '/^\.EX/ { on = 1; next } /^\.EE/ { on = 0; next } on' \
				<(section_source "$rel" EXAMPLES) |
				sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' -e 's/\\&//g' \
					-e 's/\\e/\\/g' > "$tmp/example.c"
			if grep -qE '^[[:space:]]*(int[[:space:]]+)?main\(' "$tmp/example.c"; then
				cc=${CC:-cc}
				if have "$cc"; then
					if "$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -I "$root/include" \
						-c -o "$tmp/example.o" "$tmp/example.c" > "$tmp/cc.log" 2>&1; then
						ok "man/$rel: the example program compiles with -Wall -Wextra -Werror"
					else
						ko "man/$rel: the example program does not compile:"
						sed 's/^/    /' "$tmp/cc.log"
					fi
				else
					skip "man/$rel: example not compiled (no C compiler '$cc')"
				fi
			fi
		fi
	fi

	# No warning when rendered, links included (run from man/ so that .so
	# resolves as it does under a man path).
	if have groff; then
		out=$(cd "$mandir" && groff -man -ww -z "$rel" 2>&1 || echo "groff exited with $?")
		if [ -z "$out" ]; then
			ok "man/$rel: groff -man -ww reports no warnings"
		else
			ko "man/$rel: groff -man -ww: $out"
		fi
	fi
	if have man; then
		out=$(cd "$mandir" && MANWIDTH=80 man --warnings -l -Tutf8 "$rel" 2>&1 > /dev/null ||
			echo "man exited with $?")
		if [ -z "$out" ]; then
			ok "man/$rel: man --warnings reports no warnings"
		else
			ko "man/$rel: man --warnings: $out"
		fi
	fi
done

# ---- the overview -----------------------------------------------------------

if [ -f "$mandir/man7/shmring.7" ]; then
	unlisted=""
	while IFS=$'\t' read -r name _; do
		grep -qE "^\.BR $name \(3\)" "$mandir/man7/shmring.7" || unlisted="$unlisted $name"
	done < "$tmp/decls"
	if [ -z "$unlisted" ]; then
		ok "man/man7/shmring.7 lists every section 3 page"
	else
		ko "man/man7/shmring.7 does not list:$unlisted"
	fi
	if grep -qF 'SHMRING_HUGETLBFS_DIR' "$mandir/man7/shmring.7"; then
		ok "man/man7/shmring.7 documents SHMRING_HUGETLBFS_DIR"
	else
		ko "man/man7/shmring.7 does not document SHMRING_HUGETLBFS_DIR"
	fi
else
	ko "man/man7/shmring.7 is missing"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

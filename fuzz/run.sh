#!/usr/bin/env bash
# Build and run the libFuzzer target fuzz_attach (fuzz/fuzz_attach.c) for a
# bounded time, and say PASS or FAIL.
#
# The target is built from the library's sources with the fuzzer's
# instrumentation and ASan+UBSan (so the library is instrumented too), into
# build/fuzz/. The seed corpus fuzz/corpus/ (commit-sized: real rings made by
# fuzz/make_corpus.c) is made if it is missing and is only read: what the
# fuzzer finds goes into build/fuzz/corpus/, which grows across runs. A crash,
# a hang (an input that runs past -timeout), a leak or a sanitizer report
# stops the run; its input is written under build/fuzz/artifacts/ and the
# script says FAIL.
#
# Ends with one line: "1 passed, 0 failed" (exit 0) or "0 passed, 1 failed"
# (exit 1).
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: fuzz/run.sh [--seconds N] [--seed N] [--remake-corpus] [--help]
  --seconds N       how long to fuzz (default 60); libFuzzer -max_total_time
  --seed N          libFuzzer's random seed (default: a new one each run)
  --remake-corpus   regenerate the committed seed corpus fuzz/corpus/ first
  --help            this text

Builds build/fuzz/fuzz_attach and build/fuzz/make_corpus, then runs
  fuzz_attach -max_total_time=N -timeout=10 -rss_limit_mb=2048 ...
on build/fuzz/corpus (written) and fuzz/corpus (read only), in one process.
Prints PASS/FAIL and "1 passed, 0 failed" or "0 passed, 1 failed".
Environment: CLANG (default clang), CC for make_corpus (default cc).
USAGE
}

seconds=60
seed=
remake=0
while [ $# -gt 0 ]; do
	case "$1" in
		-h|--help) usage; exit 0 ;;
		--seconds) seconds=${2:?--seconds needs a number}; shift ;;
		--seed) seed=${2:?--seed needs a number}; shift ;;
		--remake-corpus) remake=1 ;;
		*) usage >&2; exit 2 ;;
	esac
	shift
done
case "$seconds" in ''|*[!0-9]*) echo "run.sh: --seconds takes a whole number" >&2; exit 2 ;; esac
case "$seed" in *[!0-9]*) echo "run.sh: --seed takes a whole number" >&2; exit 2 ;; esac

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=$top/build/fuzz
log=$out/fuzz_attach.log
clang=${CLANG:-clang}
cc=${CC:-cc}

verdict() { # verdict PASS|FAIL TEXT
	echo "$1 fuzz_attach ($2)"
	if [ "$1" = PASS ]; then
		echo "1 passed, 0 failed"
		exit 0
	fi
	echo "0 passed, 1 failed"
	exit 1
}

mkdir -p "$out/corpus" "$out/artifacts"
echo "== build: $out/fuzz_attach (libFuzzer + ASan + UBSan, library sources included)"
# shellcheck disable=SC2046 # the source list is meant to split
if ! "$clang" -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Iinclude -Isrc fuzz/fuzz_attach.c $(ls src/*.c) -lhugetlbfs -lpthread \
	-o "$out/fuzz_attach"; then
	verdict FAIL "the target does not build"
fi
# shellcheck disable=SC2046
if ! "$cc" -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Iinclude -Isrc \
	fuzz/make_corpus.c $(ls src/*.c) -lhugetlbfs -lpthread -o "$out/make_corpus"; then
	verdict FAIL "the seed corpus generator does not build"
fi

if [ "$remake" = 1 ] || [ -z "$(ls -A fuzz/corpus 2>/dev/null)" ]; then
	echo "== seed corpus: fuzz/corpus (made now)"
	mkdir -p fuzz/corpus
	"$out/make_corpus" fuzz/corpus
else
	echo "== seed corpus: fuzz/corpus ($(ls fuzz/corpus | wc -l) files, read only)"
fi

args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=32768
	-use_value_profile=1 -print_final_stats=1 -artifact_prefix="$out/artifacts/")
[ -n "$seed" ] && args+=(-seed="$seed")
echo "== fuzz: $out/fuzz_attach ${args[*]} $out/corpus fuzz/corpus"
echo "   (log: $log)"
rc=0
SHMRING_FUZZ_JAIL=$out/jail \
	"$out/fuzz_attach" "${args[@]}" "$out/corpus" fuzz/corpus >"$log" 2>&1 || rc=$?

runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 || true)
grep -E '^(INFO: Seed|#[0-9]+[[:space:]]+(INITED|DONE))' "$log" || true
if [ "$rc" = 0 ] && [ -n "$runs" ]; then
	[ -n "$cov" ] && echo "coverage: $cov; $((runs / (secs > 0 ? secs : 1))) runs/s"
	verdict PASS "$runs runs in $secs s, no crash"
fi

echo "---- last lines of $log"
tail -n 40 "$log"
artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
what=$(grep -m1 -o -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)[^(]*|runtime error:.*|fuzz_attach: .*' "$log" ||
	echo "exit status $rc")
verdict FAIL "$what; input: ${artifact:-none}; minimise with: $out/fuzz_attach -minimize_crash=1 -runs=100000 ${artifact:-INPUT}"

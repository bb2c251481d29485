#!/usr/bin/env bash
# with-hugepages.sh SCRIPT [ARGS...] - run a test script inside
# hugepage/ci-hugepages.sh (16 hugepages reserved, hugetlbfs mounted, both
# restored afterwards), then repeat the script's "N passed, N failed" line,
# so that it stays the last line after the wrapper's own closing messages.
# Exits with the wrapper's status (the script's, or the wrapper's failure).
set -euo pipefail
case ${1:-} in
-h | --help | "") sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp "${TMPDIR:-/tmp}/shmring-hp-wrap.XXXXXX")
trap 'rm -f "$tmp"' EXIT
rc=0
"$top/hugepage/ci-hugepages.sh" --pages 16 -- "$@" 2>&1 | tee "$tmp" || rc=$?
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$tmp" | tail -1 || true)
echo "${line:-0 passed, 1 failed}"
exit "$rc"

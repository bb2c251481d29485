#!/usr/bin/env bash
# role_takeover_ebusy.sh PROGRAM - drive soak/repro/role_takeover_ebusy.c:
# a dead consumer holds the MPSC consumer role; a newcomer attaching is held
# by gdb just after it locked the dead holder's participant entry (before it
# releases that entry's roles); meanwhile a claimant's try_pop gets -EBUSY.
# Exit 1 when the bug shows (the claimant got -EBUSY), 0 when it does not.
set -euo pipefail
case ${1:-} in
-h | --help | "") echo "Usage: soak/repro/role_takeover_ebusy.sh PROGRAM (built as its .c says)"; exit 0 ;;
esac
prog=$(realpath "$1")
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
name=/shmring-repro-ebusy-$$
line=$(grep -n 'r->owner = i + 1;' "$top/src/liveness.c" | head -1 | cut -d: -f1)
"$prog" create "$name" &
holder_pid=$!
trap 'kill "$holder_pid" 2>/dev/null || true; rm -f /dev/shm/${name#/}' EXIT
sleep 1
rc=0
gdb -q -batch -ex "break liveness.c:$line" -ex run \
	-ex "shell \"$prog\" pop \"$name\" > /tmp/ebusy-claimant.$$ 2>&1; echo \$? >> /tmp/ebusy-claimant.$$" \
	-ex continue --args "$prog" attach "$name" >/dev/null 2>&1 || true
cat /tmp/ebusy-claimant.$$
status=$(tail -1 /tmp/ebusy-claimant.$$)
rm -f /tmp/ebusy-claimant.$$
if [[ $status == 1 ]]; then
	echo "BUG: -EBUSY although the role's holder is dead (a newcomer was taking over its entry)"
	rc=1
else
	echo "OK: the claimant took the dead holder's role over"
fi
exit "$rc"

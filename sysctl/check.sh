#!/usr/bin/env bash
# sysctl/check.sh: compare the running kernel with a sysctl profile; changes
# nothing. The comparison is apply.sh's own (apply.sh --check), so that check
# and apply always agree on what a profile line means.
set -euo pipefail

usage() {
	cat <<'EOF_USAGE'
Usage: sysctl/check.sh [--file PROFILE]

List every setting of the profile (default: sysctl/shmring.conf beside this
script): key, wanted value, current value, and
  ok       the kernel has the wanted value (for an at-least setting: that
           value or more)
  DIFF     it has another value (or it cannot be read as this user)
  missing  this kernel has no such setting; "optional" when the profile
           marks it "-key", as sysctl.d(5) does for kernel-dependent keys
A last line counts them. Any user may run it.

Options:
  --file F    check profile F
  -h, --help  show this text

Exit status: 0 when every setting is ok or an optional missing one, 1
otherwise (fix with: sudo sysctl/apply.sh), 2 bad usage or a bad profile.
EOF_USAGE
}

for arg in "$@"; do
	case $arg in
	-h | --help) usage; exit 0 ;;
	esac
done
exec "$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)/apply.sh" --check "$@"

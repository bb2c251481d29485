#!/usr/bin/env bash
# Installs the Debian 12 packages that building, testing and benchmarking need.
# Idempotent: installs only what is missing, and says what it installed.
set -euo pipefail

usage() {
	cat <<'USAGE'
Usage: scripts/install-deps.sh [--check]
  Installs (as root, with apt-get) every Debian package shmring needs to build,
  test and benchmark. With --check, only lists what is missing (exit 1 if any).
USAGE
}

PKGS=(gcc g++ make pkg-config libc6-dev
      libcmocka-dev libhugetlbfs-dev libhugetlbfs-bin liburing-dev
      clang libclang-rt-14-dev valgrind cppcheck clang-tidy
      spin stress-ng gnuplot-nox strace procps util-linux iproute2)

check_only=0
case "${1:-}" in
	-h|--help) usage; exit 0 ;;
	--check) check_only=1 ;;
	"") ;;
	*) usage >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$check_only" -eq 1 ]; then
	echo "missing packages: ${missing[*]}"
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages (${missing[*]}); run as root or install them with apt-get" >&2
	exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: installed ${missing[*]}"

#!/usr/bin/env bash
# Static checks of the project's own C code: cppcheck and clang-tidy.
# Each tool is one case; prints "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
p=0
f=0
srcs=(src/*.c)

echo "--- cppcheck"
if cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
	--inline-suppr -D_GNU_SOURCE -Iinclude -Isrc --suppress=missingIncludeSystem \
	"${srcs[@]}" tests/*.c examples/*.c 2>&1; then
	echo "PASS cppcheck"; p=$((p + 1))
else
	echo "FAIL cppcheck"; f=$((f + 1))
fi

echo "--- clang-tidy"
# bugprone/cert/concurrency checks; the few disabled ones are noted in .clang-tidy.
out=$(clang-tidy --quiet "${srcs[@]}" -- -std=c11 -D_GNU_SOURCE -Iinclude -Isrc 2>&1 || true)
echo "$out" | grep -v -E '^[0-9]+ warnings? generated\.$' || true
if echo "$out" | grep -qE '(warning|error):'; then
	echo "FAIL clang-tidy"; f=$((f + 1))
else
	echo "PASS clang-tidy"; p=$((p + 1))
fi
echo "$p passed, $f failed"
[ "$f" = 0 ]

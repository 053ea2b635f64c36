#!/usr/bin/env bash
# Fuzz/build.sh — build the libFuzzer target Fuzz/FuzzTarget.swift with the hosted core into
# .build/fuzz/gomalloc-fuzz (AddressSanitizer and libFuzzer's coverage on; not a SwiftPM
# product: libFuzzer brings its own main). Then, for example:
#   .build/fuzz/gomalloc-fuzz -max_total_time=3600 .build/fuzz/corpus Fuzz/corpus
# (the first directory receives new inputs; Fuzz/corpus is the seed corpus kept in git).
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/fuzz
mkdir -p "$out/include"
cp Sources/CGoMallocSys/include/gomalloc_sys.h "$out/include/"
printf 'module CGoMallocSys {\n    header "gomalloc_sys.h"\n    export *\n}\n' > "$out/include/module.modulemap"
clang -c -O1 -g -fsanitize=address -I Sources/CGoMallocSys/include Sources/CGoMallocSys/sys.c -o "$out/sys.o"
swiftc -O -g -parse-as-library -module-name GoMallocFuzz -package-name GoMalloc \
    -D GOMALLOC_HOSTED -D GOMALLOC_INTERNAL_CHECKS -sanitize=fuzzer,address \
    -I "$out/include" Sources/GoMallocCore/*.swift Fuzz/FuzzTarget.swift "$out/sys.o" -o "$out/gomalloc-fuzz"
echo "built $out/gomalloc-fuzz"

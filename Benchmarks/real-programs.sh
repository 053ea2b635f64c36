#!/usr/bin/env bash
# Runs real programs under glibc malloc and under GoMalloc (LD_PRELOAD), compares their output
# and exit status, and records wall time and peak RSS. Needs no network.
#
#   bash Benchmarks/real-programs.sh [GROUP...]
#   groups: python compilers tools git build threads servers postgres extra (default: all)
#
# Environment:
#   GM_LIB   the preload library (default .build-realprog/release/libgomalloc-preload.so)
#   OUT      where outputs go (default /tmp/real-programs)
#   GM_ENV   extra environment for the GoMalloc runs, e.g. "GOMALLOC_MAXPROCS=1"
#
# Results: $OUT/results.tsv, one line per run:
#   name  glibc_rc  gomalloc_rc  same_output  glibc_s  gomalloc_s  glibc_KB  gomalloc_KB
# A run's outputs are in $OUT/NAME.{glibc,gm}.{out,err}. "same_output" compares stdout after
# the optional normaliser (set NORM to a sed/filter command before calling run).
#
# Debian packages used (apt-get install -y ...): redis-server redis-tools memcached
# libmemcached-tools nginx-light apache2-utils wrk pigz postgresql postgresql-contrib time
# sqlite3 libsqlite3-dev gcc g++ make git perl xz-utils gdb.  python3 with its test suite and
# numpy, node, and the Swift toolchain (/opt/swift) are expected to be installed already.

set -u
HERE=${HERE:-$(cd "$(dirname "$0")/.." && pwd)}
GM_LIB=${GM_LIB:-$HERE/.build-realprog/release/libgomalloc-preload.so}
OUT=${OUT:-/tmp/real-programs}
GM_ENV=${GM_ENV:-}
mkdir -p "$OUT"
RES=$OUT/results.tsv
[ -f "$RES" ] || printf 'name\tglibc_rc\tgomalloc_rc\tsame_output\tglibc_s\tgomalloc_s\tglibc_KB\tgomalloc_KB\n' >"$RES"
NORM=${NORM:-cat}
TIMEOUT=${TIMEOUT:-900}

# run NAME 'shell command'   — runs it twice (glibc, GoMalloc) in $WORK
run() {
  local name=$1 cmd=$2
  local g=$OUT/$name.glibc m=$OUT/$name.gm
  ( cd "${WORK:-$OUT}" && timeout "$TIMEOUT" /usr/bin/time -f '%e %M' -o "$g.time" \
      bash -c "$cmd" >"$g.out" 2>"$g.err" ); local grc=$?
  ( cd "${WORK:-$OUT}" && timeout "$TIMEOUT" /usr/bin/time -f '%e %M' -o "$m.time" \
      env LD_PRELOAD="$GM_LIB" $GM_ENV bash -c "$cmd" >"$m.out" 2>"$m.err" ); local mrc=$?
  local same=no
  if cmp -s <(bash -c "$NORM" <"$g.out") <(bash -c "$NORM" <"$m.out"); then same=yes; fi
  local gt gk mt mk
  read -r gt gk < <(grep -E '^[0-9.]+ [0-9]+$' "$g.time" | tail -1)
  read -r mt mk < <(grep -E '^[0-9.]+ [0-9]+$' "$m.time" | tail -1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$grc" "$mrc" "$same" "${gt:-?}" "${mt:-?}" "${gk:-?}" "${mk:-?}" | tee -a "$RES"
  if grep -q gomalloc "$m.err"; then echo "   gomalloc said: $(grep -m3 gomalloc "$m.err")"; fi
}

# ---------------------------------------------------------------- python
group_python() {
  local py=${PYTHON:-python3}
  local tests="test_dict test_list test_set test_unicode test_json test_re test_collections
    test_itertools test_functools test_threading test_sqlite3 test_gc test_mmap test_subprocess
    test_bytes test_string test_tuple test_deque test_heapq test_bisect test_array
    test_struct test_pickle test_copy test_decimal test_fractions test_math test_random
    test_statistics test_datetime test_csv test_zlib test_bz2 test_lzma test_gzip test_zipfile
    test_tarfile test_hashlib test_hmac test_base64 test_codecs test_io test_memoryio
    test_os test_shutil test_tempfile test_pathlib test_glob test_fnmatch test_enum
    test_dataclasses test_typing test_ast test_compile test_grammar test_exceptions
    test_weakref test_class test_descr test_generators test_coroutines test_asyncio
    test_queue test_thread
    test_select test_signal test_ssl test_xml_etree test_xml_etree_c test_minidom
    test_email test_argparse test_logging test_textwrap test_difflib test_unittest
    test_sort test_long test_float test_complex test_int test_format test_capi"
  for t in $tests; do
    NORM="grep -E '^(Result|Total tests|== Tests result)'" \
      run "py-$t" "$py -m test -q $t 2>&1 | tail -30"
  done
  # this Python's test/ lacks test_multiprocessing_fork.py and test_concurrent_futures/: rebuild the
  # former from _test_multiprocessing (as CPython 3.11 does)
  mkdir -p "$OUT/mpfork"
  printf 'import test._test_multiprocessing as m\nm.install_tests_in_module_dict(globals(), "fork")\n' >"$OUT/mpfork/test_mp_fork.py"
  WORK=$OUT/mpfork NORM="grep -E '^(Ran|OK|FAILED)' | sed 's/ in .*//'" \
    run py-multiprocessing-fork "timeout 600 $py -m unittest test_mp_fork 2>&1 | tail -30"
  cat >"$OUT/numpy_work.py" <<'EOF'
import numpy as np, hashlib
rng = np.random.default_rng(1)
acc = hashlib.sha256()
for i in range(60):
    a = rng.standard_normal((300, 300))
    b = a @ a.T + np.eye(300) * 300
    x = np.linalg.solve(b, rng.standard_normal(300))
    s = np.sort(rng.integers(0, 1 << 30, 200000))
    u, c = np.unique(s % 1000, return_counts=True)
    f = np.fft.rfft(rng.standard_normal(1 << 16))
    lst = [np.arange(k) for k in range(1, 2000, 7)]
    cat = np.concatenate(lst)
    acc.update(np.round(x, 6).tobytes()); acc.update(c.tobytes()); acc.update(cat.tobytes())
    acc.update(np.round(np.abs(f[:100]), 3).tobytes())
big = [np.zeros(n) for n in range(1, 3000)]
strs = np.array([str(i) * 3 for i in range(200000)])
acc.update(np.sort(strs)[:1000].tobytes())
print(acc.hexdigest()[:16], len(big))
EOF
  run numpy "$py $OUT/numpy_work.py"
}

# ---------------------------------------------------------------- compilers
group_compilers() {
  local W=$OUT/cc; mkdir -p "$W"
  # sqlite amalgamation shipped by libsqlite3-dev? no: build Debian's sqlite3 source if fetched;
  # otherwise compile a generated large C file.
  python3 - "$W/big.c" <<'EOF'
import sys
n = 4000
with open(sys.argv[1], "w") as f:
    f.write("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n")
    for i in range(n):
        f.write(f"static int f{i}(int x) {{ int a[16]; for (int j = 0; j < 16; j++) a[j] = x * {i} + j; "
                f"int s = 0; for (int j = 0; j < 16; j++) s ^= a[j] << (j % 7); return s + {i}; }}\n")
    f.write("int main(void) { long s = 0;\n")
    for i in range(n):
        f.write(f" s += f{i}({i});\n")
    f.write(' printf("%ld\\n", s); return 0; }\n')
EOF
  WORK=$W run gcc-big-O2 "gcc -O2 -o big big.c && ./big"
  WORK=$W run clang-big-O2 "/opt/swift/usr/bin/clang -O2 -o bigc big.c && ./bigc"
  cat >"$W/tmpl.cpp" <<'EOF'
#include <map>
#include <vector>
#include <string>
#include <regex>
#include <iostream>
#include <sstream>
#include <algorithm>
#include <unordered_map>
#include <functional>
#include <memory>
template <int N> struct Fib { static constexpr long v = Fib<N-1>::v + Fib<N-2>::v; };
template <> struct Fib<0> { static constexpr long v = 0; };
template <> struct Fib<1> { static constexpr long v = 1; };
int main() {
  std::map<std::string, std::vector<int>> m;
  std::unordered_map<int, std::string> u;
  for (int i = 0; i < 200000; i++) { m[std::to_string(i % 5000)].push_back(i); u[i] = std::to_string(i * 7); }
  std::regex re("([0-9]+)7$");
  long hits = 0;
  for (auto &kv : u) if (std::regex_search(kv.second, re)) hits++;
  std::vector<std::unique_ptr<std::string>> v;
  for (int i = 0; i < 100000; i++) v.emplace_back(new std::string(i % 300, 'x'));
  std::sort(v.begin(), v.end(), [](auto &a, auto &b){ return *a < *b; });
  std::ostringstream os; os << m.size() << " " << hits << " " << v.front()->size() << " " << Fib<60>::v;
  std::cout << os.str() << std::endl;
}
EOF
  WORK=$W run gxx-tmpl "g++ -O2 -std=c++17 -o tmpl tmpl.cpp && ./tmpl"
  WORK=$W run clangxx-tmpl "/opt/swift/usr/bin/clang++ -O2 -std=c++17 -o tmplc tmpl.cpp && ./tmplc"
  printf 'let xs = (0..<100_000).map { $0 * 3 }\nvar d: [Int: String] = [:]\nfor x in xs { d[x] = String(x) }\nprint(d.count, xs.reduce(0, +))\n' >"$W/hello.swift"
  WORK=$W run swiftc-file "/opt/swift/usr/bin/swiftc -O hello.swift -o hello && ./hello"
}

# ---------------------------------------------------------------- everyday tools
group_tools() {
  local W=$OUT/tools; mkdir -p "$W"
  [ -f "$W/big.txt" ] || python3 -c '
import random
r = random.Random(7)
words = ["alpha","beta","gamma","delta","epsilon","zeta","eta","theta","iota","kappa"]
with open("'"$W"'/big.txt","w") as f:
    for i in range(2_000_000):
        f.write(f"{r.randrange(10**9)} {r.choice(words)} {r.random():.6f} line{i}\n")
'
  WORK=$W run sort-big "sort -k2,2 -k1,1n -S 200M big.txt | md5sum"
  WORK=$W run sort-parallel "sort --parallel=2 -S 100M -n big.txt | md5sum"
  WORK=$W run awk-agg "awk '{c[\$2]++; s[\$2]+=\$3} END {for (k in c) printf \"%s %d %.3f\\n\", k, c[k], s[k]}' big.txt | sort"
  WORK=$W run sed-big "sed -E 's/([a-z]+) ([0-9.]+)/\\2 \\1/' big.txt | md5sum"
  WORK=$W run perl-hash "perl -ne '@f=split; \$h{\$f[3]}=\$f[0]; \$w{\$f[1]}.=substr(\$f[0],0,1); END { print scalar(keys %h), \" \", length(join(\"\",values %w)), \"\\n\" }' big.txt"
  WORK=$W run perl-sort "perl -e 'my @a = map { [rand(), \"x\" x (\$_ % 100)] } 1..1_000_000; @a = sort { \$a->[0] <=> \$b->[0] } @a; my %h; \$h{\$_} = [1..5] for 1..300000; print scalar(@a), \" \", scalar(keys %h), \"\\n\"'"
  WORK=$W run gzip-c "gzip -c big.txt | gzip -dc | md5sum"
  WORK=$W run xz-T2 "xz -T2 -6 -c big.txt | xz -dc | md5sum"
  WORK=$W run xz-T1 "xz -6 -c big.txt | md5sum"
  WORK=$W run pigz "pigz -p 2 -c big.txt | pigz -dc | md5sum"
  WORK=$W run tar-xz "tar -C /usr/share -cJf - doc 2>/dev/null | tar -tJf - | wc -l"
  WORK=$W run find-usr "find /usr -xdev -type f | sort | md5sum"
  WORK=$W run grep-usr "grep -r -c -I --include='*.h' 'malloc' /usr/include | sort | md5sum"
  WORK=$W run openssl-speed "openssl speed -seconds 1 sha256 aes-128-cbc rsa2048 2>/dev/null | grep -c -E '^(sha256|aes|rsa)'"
  WORK=$W run openssl-enc "openssl enc -aes-256-cbc -pbkdf2 -k pw -in big.txt | openssl enc -d -aes-256-cbc -pbkdf2 -k pw | md5sum"
  rm -f "$W/t.db"
  WORK=$W run sqlite-big "rm -f t.db t2.db; sqlite3 t.db \"pragma cache_size=-200000; create table t(a integer primary key, b text, c real);
    with recursive r(i) as (select 1 union all select i+1 from r where i < 2000000) insert into t select i, printf('%08x%08x%024d', (i*2654435761) % 4294967291, (i*40503) % 65521, i), i*0.5 from r;
    create index tb on t(b); select count(*), sum(length(b)) from t; select count(*) from t where b like 'ab%';
    vacuum into 't2.db';\" && sqlite3 t2.db 'pragma integrity_check; select count(*) from t'"
}

# ---------------------------------------------------------------- servers
group_servers() {
  local W=$OUT/srv; mkdir -p "$W"
  local a pre pid
  # redis (Debian's is linked with jemalloc: preloading GoMalloc takes malloc/free/
  # malloc_usable_size; nallocx/mallctl stay jemalloc's), driven by redis-benchmark (not preloaded)
  for a in glibc gm; do
    pre=""; [ $a = gm ] && pre="LD_PRELOAD=$GM_LIB $GM_ENV"
    env $pre redis-server --port 7379 --save '' --appendonly no --daemonize no --enable-debug-command yes >"$W/redis.$a.log" 2>&1 &
    pid=$!; sleep 1
    /usr/bin/time -f '%e s' -o "$W/redisbench.$a.time" redis-benchmark -p 7379 -q -n 200000 -c 50 -P 8 -d 256 -r 100000 \
      -t set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,spop,zadd,lrange_100,mset >"$W/redisbench.$a.out" 2>&1
    redis-cli -p 7379 dbsize >"$W/redis.$a.info"
    redis-cli -p 7379 eval "for i=1,200000 do redis.call('set','big'..i,string.rep('x',i%3000)) end return 1" 0 >>"$W/redis.$a.info"
    redis-cli -p 7379 debug reload >>"$W/redis.$a.info" 2>&1
    redis-cli -p 7379 eval "local n=0 for i=1,200000 do n=n+#redis.call('get','big'..i) end return n" 0 >>"$W/redis.$a.info"
    redis-cli -p 7379 memory doctor >/dev/null
    redis-cli -p 7379 info memory | grep -E '^(used_memory_human|used_memory_rss_human|mem_allocator)' >>"$W/redis.$a.info"
    redis-cli -p 7379 shutdown nosave >/dev/null 2>&1; wait $pid; echo "redis exit $?" >>"$W/redis.$a.info"
    echo "== redis $a: $(cat "$W/redisbench.$a.time")"; cat "$W/redis.$a.info"; grep -E 'requests per second' "$W/redisbench.$a.out" | tr '\n' ' ' | head -c 900; echo
  done
  # memcached, 4 threads, loaded by memcslap (not preloaded)
  for a in glibc gm; do
    pre=""; [ $a = gm ] && pre="LD_PRELOAD=$GM_LIB $GM_ENV"
    env $pre memcached -u nobody -l 127.0.0.1 -p 11311 -t 4 -m 1024 >"$W/memcached.$a.log" 2>&1 &
    pid=$!; sleep 1
    /usr/bin/time -f '%e s' -o "$W/memcslap.$a.time" memcslap --servers=127.0.0.1:11311 --concurrency=20 --execute-number=20000 >"$W/memcslap.$a.out" 2>&1
    echo "memcslap rc $?" >>"$W/memcslap.$a.out"
    memcstat --servers=127.0.0.1:11311 | grep -E 'curr_items|bytes:|rusage' >>"$W/memcslap.$a.out"
    kill $pid; wait $pid; echo "memcached exit $?" >>"$W/memcslap.$a.out"
    echo "== memcached $a: $(cat "$W/memcslap.$a.time")"; tail -8 "$W/memcslap.$a.out"
  done
  # nginx, 2 workers, a static small and large file, loaded by ab and wrk (not preloaded)
  mkdir -p "$W/www"; head -c 1048576 /dev/urandom >"$W/www/big.bin"; echo hello >"$W/www/index.html"
  cat >"$W/nginx.conf" <<EOF2
worker_processes 2; daemon off; pid $W/nginx.pid; error_log $W/nginx-error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:8088; root $W/www; gzip on; gzip_types *; gzip_min_length 0; } }
EOF2
  for a in glibc gm; do
    pre=""; [ $a = gm ] && pre="LD_PRELOAD=$GM_LIB $GM_ENV"
    : >"$W/nginx-error.log"
    env $pre nginx -c "$W/nginx.conf" -e "$W/nginx-error.log" &
    pid=$!; sleep 1
    ab -q -k -n 50000 -c 50 http://127.0.0.1:8088/index.html 2>&1 | grep -E 'Failed|Complete requests|Requests per second' >"$W/nginx.$a.out"
    ab -q -n 2000 -c 20 -H 'Accept-Encoding: gzip' http://127.0.0.1:8088/big.bin 2>&1 | grep -E 'Failed|Complete requests|Requests per second' >>"$W/nginx.$a.out"
    wrk -t2 -c64 -d10s http://127.0.0.1:8088/index.html 2>&1 | grep -E 'Requests/sec|errors' >>"$W/nginx.$a.out"
    kill -QUIT $pid; wait $pid; echo "nginx exit $?" >>"$W/nginx.$a.out"
    grep -E 'signal|alert|crit|emerg' "$W/nginx-error.log" >>"$W/nginx.$a.out"
    echo "== nginx $a"; cat "$W/nginx.$a.out"
  done
}

# ---------------------------------------------------------------- threads
group_threads() {
  local W=$OUT/thr; mkdir -p "$W"
  [ -f "$W/b20.txt" ] || python3 -c '
import random
r = random.Random(11)
with open("'"$W"'/b20.txt", "w") as f:
    for i in range(500_000):
        f.write(f"{r.randrange(10**9)} w{r.randrange(5000)} {r.random():.6f} line{i}\n")
'
  WORK=$W run xz-T8 "xz -T8 -3 -c b20.txt | xz -T8 -dc | md5sum"
  WORK=$W run pigz-p16 "pigz -p 16 -b 128 -c b20.txt | pigz -p 16 -dc | md5sum"
  WORK=$W run sort-parallel8 "sort --parallel=8 -S 8M -k2,2 -k1,1n b20.txt | md5sum"
  run node-arrays "node -e '
let a = []; for (let i = 0; i < 3e6; i++) a.push({i, s: \"x\" + i});
let m = new Map(); for (const o of a) m.set(o.s, o.i);
let s = \"\"; for (let i = 0; i < 2e5; i++) s += String(i);
const buf = []; for (let i = 0; i < 2000; i++) buf.push(Buffer.alloc(64 * 1024, i & 255));
const zlib = require(\"zlib\"); const z = zlib.gzipSync(Buffer.from(s.repeat(20)));
console.log(a.length, m.size, s.length, buf.length, zlib.gunzipSync(z).length);
'"
  cat >"$W/workers.js" <<'EOF'
const { Worker, isMainThread, parentPort, workerData } = require("worker_threads");
const zlib = require("zlib"), crypto = require("crypto");
if (isMainThread) {
  let done = 0, acc = [];
  for (let w = 0; w < 8; w++) {
    const wk = new Worker(__filename, { workerData: w });
    wk.on("message", (m) => { acc[w] = m; if (++done === 8) console.log(acc.join(" ")); });
    wk.on("error", (e) => { console.error(e); process.exit(1); });
  }
} else {
  const w = workerData; let h = crypto.createHash("sha256");
  for (let r = 0; r < 30; r++) {
    const parts = []; for (let i = 0; i < 20000; i++) parts.push(`${w}:${r}:${i}:` + "y".repeat(i % 50));
    const buf = Buffer.from(parts.join("\n"));
    const z = zlib.deflateSync(buf); h.update(zlib.inflateSync(z));
    const objs = new Map(parts.map((p, i) => [p, { i, b: Buffer.alloc(i % 300) }])); h.update(String(objs.size));
  }
  parentPort.postMessage(h.digest("hex").slice(0, 8));
}
EOF
  WORK=$W run node-workers "node workers.js"
  cat >"$W/pythreads.py" <<'EOF'
import concurrent.futures as cf, zlib, hashlib, lzma, bz2, json
def job(k):
    data = json.dumps([{"k": k, "i": i, "s": "z" * (i % 200)} for i in range(20000)]).encode()
    out = hashlib.sha256()
    for comp, dec in ((zlib.compress, zlib.decompress), (bz2.compress, bz2.decompress), (lzma.compress, lzma.decompress)):
        out.update(dec(comp(data)))
    return out.hexdigest()[:8]
with cf.ThreadPoolExecutor(32) as ex:
    print(" ".join(ex.map(job, range(64))))
with cf.ProcessPoolExecutor(4) as ex:
    print(" ".join(ex.map(job, range(8))))
EOF
  WORK=$W run py-threads32 "python3 pythreads.py"
  [ -d "$W/sqlite-mj" ] || cp -a "${SRC:-/tmp/rp/src}/sqlite3-3.40.1" "$W/sqlite-mj"
  WORK=$W run make-j8-sqlite "cd sqlite-mj && (make distclean >/dev/null 2>&1; ./configure -q --disable-tcl >/dev/null) && make -s -j8 sqlite3 >/dev/null 2>&1 && ./sqlite3 :memory: 'select 1+1'"
}


# ---------------------------------------------------------------- building real projects
# Sources from Debian (deb-src in /etc/apt/sources.list.d, then `apt-get source sqlite3 lua5.4
# fmtlib` in $SRC); needs tcl cmake libgtest-dev libgmock-dev.
group_build() {
  local SRC=${SRC:-/tmp/rp/src} W=$OUT/build; mkdir -p "$W"
  local d
  for a in glibc gm; do rm -rf "$W/$a"; mkdir -p "$W/$a"; done
  [ -d "$SRC/lua-5.4.4" ] || tar -C "$SRC" -xzf "$SRC"/lua5.4_5.4.4.orig.tar.gz
  for d in sqlite3-3.40.1 lua-5.4.4 fmtlib-9.1.0+ds1; do
    for a in glibc gm; do cp -a "$SRC/$d" "$W/$a/"; done
  done
  # `run` runs the command in $WORK for both allocators; the per-allocator tree is picked by $A
  # (glibc runs first, then gm): cd into the tree of whichever env LD_PRELOAD says.
  local pick='A=glibc; case "${LD_PRELOAD:-}" in *gomalloc*|*gm.so*) A=gm;; esac; cd '"$W"'/$A'
  run build-sqlite3 "$pick/sqlite3-3.40.1 && ./configure -q --enable-tcl >/dev/null && make -s -j2 sqlite3 testfixture >/dev/null 2>&1 && ./sqlite3 :memory: 'select sqlite_version()' && for t in select1 select4 where join insert2 trigger1 func fts3aa fts3ab window1 json101 rtree vacuum malloc fuzz; do [ -f test/\$t.test ] && ./testfixture test/\$t.test 2>&1 | grep -E 'errors out of'; done"
  run build-lua "$pick/lua-5.4.4 && make -s -j2 linux >/dev/null 2>&1 && src/lua -e 'local t={} for i=1,2e6 do t[i]=tostring(i)..\"x\" end local s=table.concat(t,\",\",1,100000) local m={} for i=1,5e5 do m[\"k\"..i]={i,i*2} end collectgarbage() print(#t, #s, collectgarbage(\"count\") > 0)'"
  run build-fmtlib "$pick/fmtlib-9.1.0+ds1 && mkdir -p b && cd b && cmake -DFMT_TEST=ON -DCMAKE_BUILD_TYPE=Release .. >/dev/null && make -s -j2 >/dev/null 2>&1 && ctest -j2 2>&1 | grep -E 'tests passed|tests failed'"
}

# ---------------------------------------------------------------- git on a long history
# A synthetic repository with 4000 commits (git fast-import, fixed dates: same hashes every run).
group_git() {
  local W=$OUT/git; mkdir -p "$W"
  if [ ! -d "$W/hist.git" ]; then
    git init -q --bare "$W/hist.git"
    python3 - <<'PY' | git -C "$W/hist.git" fast-import --quiet
import random, sys
r = random.Random(3)
files = {f"src/file{k}.c": [f"int v{k}_{i} = {i};" for i in range(200)] for k in range(40)}
out = sys.stdout
for c in range(4000):
    touched = r.sample(sorted(files), 3)
    out.write(f"commit refs/heads/main\nmark :{c+1}\nauthor A <a@x> {1600000000+c*60} +0000\ncommitter A <a@x> {1600000000+c*60} +0000\n")
    msg = f"change {c}: " + " ".join(touched)
    out.write(f"data {len(msg)}\n{msg}\n")
    if c: out.write(f"from :{c}\n")
    for f in (touched if c else sorted(files)):
        lines = files[f]
        for _ in range(r.randrange(1, 6)):
            i = r.randrange(len(lines))
            op = r.random()
            if op < 0.4: lines[i] = lines[i] + f" /* c{c} */"
            elif op < 0.7: lines.insert(i, f"static int w{c}_{i} = {r.randrange(10**6)};")
            elif len(lines) > 50: del lines[i]
        body = "\n".join(lines) + "\n"
        out.write(f"M 644 inline {f}\ndata {len(body.encode())}\n{body}\n")
PY
  fi
  git -C "$W/hist.git" symbolic-ref HEAD refs/heads/main
  WORK=$W run git-clone-log "rm -rf c && git clone -q hist.git c && cd c && git log --stat | md5sum && git log -p | md5sum && git rev-list --all --objects | wc -l"
  WORK=$W run git-blame "cd c && for f in src/file1.c src/file7.c src/file33.c; do git blame -w \$f | md5sum; done; git log -L 10,40:src/file2.c | md5sum"
  WORK=$W run git-diff "cd c && git diff HEAD~3000 HEAD | md5sum && git diff --stat HEAD~2000 HEAD | tail -1 && git log --format=%H -S'w100_' | md5sum"
  WORK=$W run git-gc-aggressive "rm -rf g && git clone -q --bare hist.git g && cd g && git gc -q --aggressive && git fsck --no-progress --full 2>&1 | wc -l && git count-objects -v | grep -E '^(count|in-pack)'"
}

# ---------------------------------------------------------------- postgres
group_postgres() {
  local W=$OUT/pg; mkdir -p "$W"; chmod 777 "$W"
  local bin=/usr/lib/postgresql/15/bin
  for a in glibc gm; do
    local pre=""; [ $a = gm ] && pre="LD_PRELOAD=$GM_LIB $GM_ENV"
    local D=$W/data.$a; rm -rf "$D"
    su postgres -c "env $pre $bin/initdb -D $D -A trust" >"$W/initdb.$a.log" 2>&1; echo "initdb $a rc $?"
    su postgres -c "env $pre $bin/pg_ctl -D $D -o '-p 7432 -k /tmp -c shared_buffers=128MB -c work_mem=64MB' -l $W/server.$a.log -w start" >/dev/null 2>&1
    echo "start $a rc $?"
    local t0=$(date +%s.%N)
    su postgres -c "env $pre $bin/pgbench -h /tmp -p 7432 -i -s 5 -q postgres" >"$W/pgbench-init.$a.log" 2>&1; echo "pgbench -i $a rc $?"
    su postgres -c "env $pre $bin/pgbench -h /tmp -p 7432 -c 4 -j 2 -T 20 postgres" >"$W/pgbench.$a.log" 2>&1; echo "pgbench $a rc $?"
    grep -E 'tps|failed' "$W/pgbench.$a.log"
    su postgres -c "env $pre $bin/psql -h /tmp -p 7432 -X -A -t postgres" >"$W/psql.$a.out" 2>&1 <<'SQL'
select count(*), sum(abalance) from pgbench_accounts;
create table big as select g as id, md5(g::text) as h, repeat(md5(g::text), (g % 20)) as pad from generate_series(1, 1000000) g;
select count(distinct h), sum(length(pad)) from big;
select h from big order by pad desc, h limit 3;
select a.id % 7, count(*) from big a join big b on a.h = b.h group by 1 order by 1;
create index on big(h);
select string_agg(h, ',' order by h) is not null from (select h from big where h like 'ab%' limit 1000) s;
select jsonb_agg(jsonb_build_object('k', id, 'v', h)) is not null from big where id < 100000;
with recursive r(n, s) as (select 1, ''::text union all select n+1, s || n::text from r where n < 3000) select length(s) from r order by n desc limit 1;
vacuum analyze big;
select pg_size_pretty(pg_total_relation_size('big')) is not null;
SQL
    echo "psql $a rc $? $(echo $(date +%s.%N) - $t0 | bc) s"
    su postgres -c "$bin/pg_ctl -D $D -m fast -w stop" >/dev/null 2>&1; echo "stop $a rc $?"
    grep -E 'PANIC|FATAL|terminated by signal|gomalloc' "$W/server.$a.log" | head
  done
  cmp "$W/psql.glibc.out" "$W/psql.gm.out" && echo "psql outputs identical"
}

# ---------------------------------------------------------------- other runtimes and probes
# Writes its scripts to $OUT/extra/scripts: ruby, perl ithreads, 1000 Python threads, the
# calloc-reuse reproduction, a C API probe (ctypes), a cgo program.
group_extra() {
  local W=$OUT/extra S=$OUT/extra/scripts; mkdir -p "$W" "$S"
  cat >"$S/rb.rb" <<'GMEOF'
require 'json'; require 'digest'; require 'zlib'; require 'set'
h = {}
300_000.times { |i| h["k#{i}"] = [i, i.to_s * (i % 20), {a: i}] }
s = h.to_json
back = JSON.parse(s)
d = Digest::SHA256.hexdigest(s)
arr = (1..500_000).map { |i| (i * 7919 % 100_003).to_s }.sort.uniq
ths = 8.times.map { |t| Thread.new { x = []; 50_000.times { |i| x << "t#{t}-#{i}" * 3 }; Zlib.deflate(x.join(",")).bytesize } }
sizes = ths.map(&:value)
fibers = 1000.times.map { |i| Fiber.new { a = "f" * i; Fiber.yield a.size; a.size * 2 } }
fs = fibers.map(&:resume).sum + fibers.map(&:resume).sum
GC.start(full_mark: true, immediate_sweep: true)
GC.compact rescue nil
st = Set.new(arr.first(10000))
str = +""; 200_000.times { |i| str << i.to_s }
puts [back.size, d[0, 16], arr.size, sizes.sum > 0, fs, st.size, str.size].inspect
GMEOF
  cat >"$S/pthreads.pl" <<'GMEOF'
use strict; use warnings; use threads; use threads::shared; use Digest::MD5 qw(md5_hex);
my %shared :shared; my @thr;
for my $t (1..16) {
  push @thr, threads->create(sub {
    my %h; my $s = '';
    for my $i (1..100000) { $h{"$t-$i"} = [$i, "x" x ($i % 64)]; $s .= chr(65 + $i % 26) if $i % 7 == 0; }
    { lock(%shared); $shared{$t} = scalar(keys %h) . ":" . md5_hex($s); }
    my @a = sort { $a <=> $b } map { ($_ * 7919) % 100003 } 1..200000;
    return $a[-1];
  });
}
my $sum = 0; $sum += $_->join for @thr;
print join(",", map { $shared{$_} } sort { $a <=> $b } keys %shared), " $sum\n";
GMEOF
  cat >"$S/calloc_reuse.c" <<'GMEOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static long rss_mb(void) { FILE *f = fopen("/proc/self/statm", "r"); long a, b; fscanf(f, "%ld %ld", &a, &b); fclose(f); return b * 4096 / 1048576; }
int main(int argc, char **argv) {
  size_t n = (size_t)atol(argc > 1 ? argv[1] : "1024") << 20;
  for (int i = 0; i < 4; i++) {
    char *p = calloc(1, n);          /* never written: a sparse zero buffer */
    p[0] = 1; p[n - 1] = 1;
    printf("round %d: rss %ld MiB\n", i, rss_mb());
    free(p);
  }
  return 0;
}
GMEOF
  cat >"$S/manythreads.py" <<'GMEOF'
import threading, zlib, lzma, hashlib, sys
N = int(sys.argv[1]); res = [None] * N
data = bytes(range(256)) * 400
def work(i):
    h = hashlib.md5()
    for r in range(20):
        c = zlib.compressobj(1 + (i + r) % 9); z = c.compress(data * (1 + r % 3)) + c.flush()
        h.update(zlib.decompress(z))
        if r % 10 == 0: h.update(lzma.decompress(lzma.compress(data[: 1000 + i], preset=0)))
    res[i] = h.hexdigest()[:4]
ts = [threading.Thread(target=work, args=(i,)) for i in range(N)]
for t in ts: t.start()
for t in ts: t.join()
print(len(set(res)), hashlib.md5("".join(res).encode()).hexdigest())
GMEOF
  cat >"$S/cz.py" <<'GMEOF'
import numpy as np
def rss(): return int([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]) // 1024
for i in range(3):
    a = np.zeros(1 << 30); print(i, rss(), end="; "); del a
print()
GMEOF
  cat >"$S/probe.py" <<'GMEOF'
import ctypes, ctypes.util, errno
libc = ctypes.CDLL(None, use_errno=True)
vp = ctypes.c_void_p; sz = ctypes.c_size_t
for n, r, a in [("malloc", vp, [sz]), ("calloc", vp, [sz, sz]), ("realloc", vp, [vp, sz]), ("free", None, [vp]),
                ("memalign", vp, [sz, sz]), ("aligned_alloc", vp, [sz, sz]), ("valloc", vp, [sz]), ("pvalloc", vp, [sz]),
                ("malloc_usable_size", sz, [vp]), ("reallocarray", vp, [vp, sz, sz]), ("malloc_trim", ctypes.c_int, [sz])]:
    f = getattr(libc, n); f.restype = r; f.argtypes = a
pm = libc.posix_memalign; pm.argtypes = [ctypes.POINTER(vp), sz, sz]; pm.restype = ctypes.c_int
def show(label, v): print(f"{label:40s} {v}")
show("malloc(0) nonnull", libc.malloc(0) is not None)
show("malloc(2**63) null", libc.malloc(2**63) is None, )
show("malloc(2**48) null", libc.malloc(2**48) is None)
show("malloc(-1) null", libc.malloc(2**64-1) is None)
show("calloc overflow null", libc.calloc(2**33, 2**33) is None)
show("calloc(2**62,1) null", libc.calloc(2**62, 1) is None)
show("reallocarray overflow null", libc.reallocarray(None, 2**33, 2**33) is None)
p = libc.malloc(100); q = libc.realloc(p, 2**62); show("realloc huge null, old kept", q is None); libc.free(p)
show("realloc(NULL,0) ", libc.realloc(None, 0) is not None)
p = libc.malloc(10); show("realloc(p,0) returns", libc.realloc(p, 0))
show("usable(NULL)", libc.malloc_usable_size(None))
for al in (8, 16, 64, 4096, 65536, 1 << 20, 2 << 20, 1 << 26):
    out = vp(); rc = pm(ctypes.byref(out), al, 1)
    ok = rc == 0 and out.value % al == 0
    q = libc.realloc(out.value, 5000000); libc.free(q)
    p2 = libc.memalign(al, 3 * al + 1); ok2 = p2 % al == 0; libc.free(p2)
    show(f"posix_memalign/memalign {al}", (rc, ok, ok2))
show("posix_memalign(3) EINVAL", pm(ctypes.byref(vp()), 3, 8) == errno.EINVAL)
show("posix_memalign(2**62 size) ENOMEM", pm(ctypes.byref(vp()), 64, 2**62) == errno.ENOMEM)
show("aligned_alloc(64, 100)", libc.aligned_alloc(64, 100) % 64 == 0)
a = libc.aligned_alloc(3, 100); show("aligned_alloc(3,100) null/EINVAL", (a, ctypes.get_errno()))
v = libc.valloc(1); show("valloc(1) page aligned", v % 4096 == 0); libc.free(v)
v = libc.pvalloc(0); show("pvalloc(0)", v is not None and v % 4096 == 0); libc.free(v)
show("malloc_trim", libc.malloc_trim(0))
# many sizes: usable >= requested and 16-byte aligned
bad = []
for n in list(range(0, 5000)) + [2**k + d for k in range(12, 27) for d in (-1, 0, 1)]:
    p = libc.malloc(n)
    if p is None or p % 16 or libc.malloc_usable_size(p) < n: bad.append(n)
    ctypes.memset(p, 0xAB, n); libc.free(p)
show("size sweep bad", bad[:10])
# calloc after free of dirty memory returns zeros
for n in (24, 1000, 40000, 3 << 20):
    ps = [libc.malloc(n) for _ in range(50)]
    for p in ps: ctypes.memset(p, 0xFF, n)
    for p in ps: libc.free(p)
    cs = [libc.calloc(1, n) for _ in range(50)]
    z = all(ctypes.string_at(c, n).count(0) == n for c in cs)
    for c in cs: libc.free(c)
    show(f"calloc {n} zero after reuse", z)
# realloc grows/shrinks preserve data
p = libc.malloc(10); ctypes.memmove(p, b"0123456789", 10)
for n in (20, 1000, 100000, 5 << 20, 64 << 20, 100, 7, 3 << 20, 16):
    p = libc.realloc(p, n); assert ctypes.string_at(p, 7) == b"0123456", n
show("realloc chain preserves", True)
GMEOF
  cat >"$S/cgo_main.go" <<'GMEOF'
package main

/*
#include <stdlib.h>
#include <string.h>
static void* mk(size_t n, int v) { void* p = malloc(n); if (p) memset(p, v, n); return p; }
static long sum(void* p, size_t n) { long s = 0; unsigned char* c = p; for (size_t i = 0; i < n; i += 64) s += c[i]; return s; }
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

func main() {
	var wg sync.WaitGroup
	res := make([]int64, 16)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			ptrs := make([]unsafe.Pointer, 0, 1000)
			var goheap [][]byte
			for i := 0; i < 20000; i++ {
				n := C.size_t(16 + (i*37)%70000)
				p := C.mk(n, C.int(g))
				res[g] += int64(C.sum(p, n))
				ptrs = append(ptrs, p)
				goheap = append(goheap, make([]byte, 1+(i%5000)))
				if len(ptrs) == cap(ptrs) {
					for _, q := range ptrs { C.free(q) }
					ptrs = ptrs[:0]
					goheap = nil
					runtime.GC()
				}
			}
			for _, q := range ptrs { C.free(q) }
		}(g)
	}
	wg.Wait()
	var t int64
	for _, r := range res { t += r }
	fmt.Println("ok", t)
}
GMEOF
  WORK=$S run ruby-mix "ruby rb.rb"
  WORK=$S run perl-ithreads16 "perl pthreads.pl | md5sum"
  WORK=$S run py-1000-threads "python3 manythreads.py 1000"
  WORK=$S run c-api-probe "python3 probe.py"
  gcc -O2 -o "$W/calloc_reuse" "$S/calloc_reuse.c"
  WORK=$W run calloc-reuse-2GiB "./calloc_reuse 2048"
  WORK=$S run numpy-zeros-8GiB "python3 cz.py"
  WORK=$W run imagemagick "/usr/bin/convert -seed 1 -size 3000x3000 plasma:fractal -blur 0x3 -resize 50% -rotate 33 -quality 90 im.png && /usr/bin/identify -format '%#\n' im.png"
  if command -v go >/dev/null; then
    mkdir -p "$W/cgo" && cp "$S/cgo_main.go" "$W/cgo/main.go" && (cd "$W/cgo" && [ -f go.mod ] || go mod init cgotest >/dev/null 2>&1; go build -o cgotest . )
    WORK=$W/cgo run go-cgo-16goroutines "./cgotest"
  fi
  # swift build / swift test of swift-argument-parser (a bare repo in /opt/swift-packages), the
  # whole toolchain preloaded
  local repo=/opt/swift-packages/apple/swift-argument-parser.git
  if [ -d $repo ]; then
    [ -d "$W/sap" ] || git clone -q $repo "$W/sap"
    local pick='A=glibc; case "${LD_PRELOAD:-}" in *gomalloc*|*gm.so*) A=gm;; esac'
    WORK=$W/sap NORM="grep -E 'Executed [0-9]+ tests' | tail -1 | sed 's/ in .*//'" \
      run swift-test-argparser "$pick; rm -rf ../sap-\$A && swift test --scratch-path ../sap-\$A 2>&1 | tail -40"
  fi
}

if [ $# -eq 0 ]; then set -- python compilers tools git build threads servers postgres extra; fi
for g in "$@"; do "group_$g"; done

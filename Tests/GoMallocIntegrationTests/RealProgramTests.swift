// RealProgramTests.swift — real programs under `gomalloc run`, each compared with itself
// on glibc's malloc: python3, sqlite3, git, gcc, and the Swift toolchain, plus the example
// package that links libgomalloc.
//
// A program that is not installed fails its test (`.ci/run` installs python3, sqlite3, git
// and gcc; sh and swift are there wherever `swift test` runs). Each test runs the same command twice, plainly and as `gomalloc run -- COMMAND`, in
// identical fresh directories, and wants the same exit status, stdout and stderr.
// With GOMALLOC_TEST_PRELOAD=glibc (see DropInTests.swift) the second run is plain too,
// which only checks that the commands are deterministic.
import Foundation
import XCTest

final class RealProgramTests: XCTestCase {
    /// How a command runs "under GoMalloc": through the CLI, with the library the tests use.
    private func underGoMalloc(_ argv: [String]) throws -> [String] {
        switch try DropIn.allocator() {
        case .glibc:
            return argv
        case .gomalloc(let library):
            return [try DropIn.gomallocExecutable(), "run", "--library", library, "--"] + argv
        }
    }

    private func tool(_ name: String) throws -> String {
        try DropIn.tool(name, package: "\(name) (.ci/run installs it)")
    }

    /// A fresh directory, with `setup` run in it.
    private func freshDirectory(_ label: String, _ setup: (URL) throws -> Void = { _ in }) throws -> URL {
        let dir = DropIn.workDir.appendingPathComponent("\(label)-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try setup(dir)
        return dir
    }

    /// Run `argv` plainly and under GoMalloc, each in its own copy of the directory `setup`
    /// prepares, and compare. Returns the GoMalloc run's result.
    @discardableResult
    private func compare(_ label: String, _ argv: [String], environment: [String: String] = [:],
                         compareStderr: Bool = true, timeout: TimeInterval = 600,
                         setup: (URL) throws -> Void = { _ in },
                         file: StaticString = #filePath, line: UInt = #line) throws -> DropIn.Result {
        let env = environment.mapValues { Optional($0) }
        let plainDir = try freshDirectory(label + "-glibc", setup)
        let plain = try DropIn.run(argv[0], Array(argv.dropFirst()), environment: env, directory: plainDir, timeout: timeout)
        XCTAssertTrue(plain.exitedNormally, "\(label) without GoMalloc: \(plain.summary)", file: file, line: line)

        let gmArgv = try underGoMalloc(argv)
        let gmDir = try freshDirectory(label + "-gomalloc", setup)
        let gm = try DropIn.run(gmArgv[0], Array(gmArgv.dropFirst()), environment: env, directory: gmDir, timeout: timeout)
        XCTAssertTrue(gm.exitedNormally, "\(label) under GoMalloc: \(gm.summary)", file: file, line: line)
        XCTAssertEqual(gm.status, plain.status, "\(label): exit status differs\nglibc: \(plain.summary)\ngomalloc: \(gm.summary)",
                       file: file, line: line)
        XCTAssertEqual(gm.stdout, plain.stdout, "\(label): stdout differs", file: file, line: line)
        if compareStderr {
            XCTAssertEqual(gm.stderr, plain.stderr, "\(label): stderr differs", file: file, line: line)
        }
        return gm
    }

    // MARK: - python3

    static let pythonScript = #"""
        import hashlib, sys

        def checksum(obj):
            return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]

        total = 0
        for round in range(3):
            # A large dict of strings to lists, a list of tuples, a set: then drop them all.
            d = {("key-%d-%d" % (round, i)): [i, str(i) * (i % 7), float(i) / 3] for i in range(200000)}
            l = [(i, "v" * (i % 50), bytes(i % 200)) for i in range(200000)]
            s = set(range(0, 1000000, 3))
            total += sum(len(v[1]) for v in d.values()) + sum(len(t[2]) for t in l) + len(s)
            sample = sorted(d.items())[:1000]
            print(round, len(d), len(l), len(s), checksum(sample))
            del d, l, s, sample
        # Many small objects churned through a growing and shrinking list.
        pool = []
        for i in range(500000):
            pool.append({"i": i, "s": "x" * (i % 100)})
            if len(pool) > 10000:
                del pool[: len(pool) // 2]
        big = bytearray(50 * 1024 * 1024)
        big[-1] = 7
        print("pool", len(pool), "big", len(big), big[-1])
        print("total", total)
        """#

    func testPython() throws {
        let python = try tool("python3")
        try compare("python3", [python, "script.py"]) { dir in
            try Self.pythonScript.write(to: dir.appendingPathComponent("script.py"), atomically: true, encoding: .utf8)
        }
    }

    // MARK: - sqlite3

    static let sqliteScript = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE t (id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, value REAL);
        BEGIN;
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
          INSERT INTO t (grp, name, value) SELECT x % 997, printf('row-%08d-%s', x, hex(x * 7919)), x * 0.25 FROM c;
        COMMIT;
        CREATE INDEX t_grp ON t (grp, value);
        CREATE INDEX t_name ON t (name);
        SELECT count(*), sum(grp), total(value) FROM t;
        SELECT grp, count(*), round(avg(value), 3), max(name) FROM t GROUP BY grp ORDER BY grp LIMIT 20;
        SELECT name FROM t WHERE name BETWEEN 'row-00150000' AND 'row-00150010' ORDER BY name;
        SELECT count(DISTINCT substr(name, 14)) FROM t;
        DELETE FROM t WHERE grp % 3 = 0;
        SELECT count(*), sum(length(name)) FROM t;
        UPDATE t SET name = name || '-updated' WHERE id % 10 = 0;
        SELECT grp, group_concat(id, ',') FROM (SELECT grp, id FROM t WHERE grp < 5 ORDER BY id LIMIT 50) GROUP BY grp;
        PRAGMA integrity_check;
        """

    func testSqlite() throws {
        let sqlite = try tool("sqlite3")
        let r = try compare("sqlite3", [sqlite, "-batch", "db.sqlite", ".read script.sql"]) { dir in
            try Self.sqliteScript.write(to: dir.appendingPathComponent("script.sql"), atomically: true, encoding: .utf8)
        }
        XCTAssertTrue(r.stdout.contains("300000|"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("ok\n"), r.stdout)
    }

    // MARK: - git

    /// A script so that every git process (init, add, commit, log, gc and their children)
    /// runs under the library.
    static let gitScript = """
        set -e
        git init -q -b main repo
        cd repo
        i=0
        while [ $i -lt 30 ]; do
          mkdir -p dir$((i % 5))
          seq $i $((i * 200 + 500)) > dir$((i % 5))/file$i.txt
          printf 'commit %d\\n' $i > NOTES
          git add -A
          git commit -q -m "commit number $i"
          i=$((i + 1))
        done
        git mv dir0 moved
        git commit -q -m "move dir0"
        git log --stat --format='%H %s' | head -150
        git log --oneline | wc -l
        git gc -q --aggressive
        git count-objects -v | grep -E '^(count|in-pack|packs)'
        git fsck --no-progress
        git rev-list --all --objects | wc -l
        git diff HEAD~10 --stat | tail -1
        git archive HEAD | wc -c
        """

    func testGit() throws {
        let git = try tool("git")
        _ = git
        let sh = try tool("sh")
        // Fixed identities and dates make the commit hashes reproducible across the two runs.
        let env = [
            "GIT_AUTHOR_NAME": "GoMalloc Test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
            "GIT_COMMITTER_NAME": "GoMalloc Test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
            "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent",
            "LC_ALL": "C",
        ]
        let r = try compare("git", [sh, "-c", Self.gitScript], environment: env)
        XCTAssertEqual(r.status, 0, r.summary)
        XCTAssertTrue(r.stdout.contains("commit number 29"), r.stdout)
    }

    // MARK: - gcc

    static let cSource = """
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>

        struct node { struct node *next; char name[24]; int value; };

        static int cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

        int main(void) {
            struct node *head = NULL;
            for (int i = 0; i < 100000; i++) {
                struct node *n = malloc(sizeof *n);
                snprintf(n->name, sizeof n->name, "node-%d", i);
                n->value = (i * 7919) % 10007;
                n->next = head;
                head = n;
            }
            int *values = malloc(100000 * sizeof(int));
            int k = 0;
            long sum = 0;
            while (head) {
                struct node *next = head->next;
                values[k++] = head->value;
                sum += (long)strlen(head->name);
                free(head);
                head = next;
            }
            qsort(values, (size_t)k, sizeof(int), cmp);
            printf("nodes %d name-bytes %ld min %d median %d max %d\\n", k, sum, values[0], values[k / 2], values[k - 1]);
            free(values);
            return 0;
        }
        """

    func testGcc() throws {
        let gcc = try tool("gcc")
        let sh = try tool("sh")
        // Compile (cc1, as, collect2, ld all run under the library), then run the result.
        let script = "\(gcc) -O2 -Wall -o prog prog.c && ./prog && \(gcc) -O0 -g -c prog.c -o prog.o && echo compiled-again"
        let r = try compare("gcc", [sh, "-c", script]) { dir in
            try Self.cSource.write(to: dir.appendingPathComponent("prog.c"), atomically: true, encoding: .utf8)
        }
        XCTAssertTrue(r.stdout.hasPrefix("nodes 100000 "), r.summary)
        XCTAssertTrue(r.stdout.contains("compiled-again"), r.summary)
    }

    // MARK: - The Swift toolchain

    /// `swift --version` runs the driver and the frontend, Swift programs linked with
    /// libswiftCore: the preloaded library must not replace any Swift runtime symbol.
    func testSwiftVersion() throws {
        let swift = try tool("swift")
        let r = try compare("swift", [swift, "--version"], timeout: 120)
        XCTAssertTrue(r.stdout.contains("Swift version"), r.summary)
    }

    // MARK: - `gomalloc run` itself

    /// Exit statuses and signals pass through; --stats prints the summary; a missing command is 127.
    func testRunPassesStatusThrough() throws {
        let library = try DropIn.requireLibrary("gomalloc run")
        let gomalloc = try DropIn.gomallocExecutable()
        let sh = try tool("sh")
        let exit7 = try DropIn.run(gomalloc, ["run", "--library", library, "--", sh, "-c", "exit 7"], timeout: 60)
        XCTAssertTrue(!exit7.signaled && exit7.status == 7, exit7.summary)

        let killed = try DropIn.run(gomalloc, ["run", "--library", library, "--", sh, "-c", "kill -TERM $$"], timeout: 60)
        XCTAssertTrue(killed.signaled && killed.status == SIGTERM, killed.summary)

        let missing = try DropIn.run(gomalloc, ["run", "--library", library, "--", "/nonexistent/program"], timeout: 60)
        XCTAssertEqual(missing.status, 127, missing.summary)

        let preload = try DropIn.run(gomalloc, ["run", "--library", library, "--maxprocs", "2", "--", sh, "-c", "echo \"$LD_PRELOAD|$GOMALLOC_MAXPROCS\""],
                                     environment: ["LD_PRELOAD": "/nonexistent/other.so"], timeout: 60)
        XCTAssertEqual(preload.stdout, "\(library):/nonexistent/other.so|2\n", preload.summary)

        // (A program that allocates and leaves stderr open at exit: dash leaves with _exit, and
        // coreutils close stderr in an atexit handler, so neither would show the summary.)
        let threads = try DropIn.compile("threads.c")
        let stats = try DropIn.run(gomalloc, ["run", "--stats", "--library", library, "--", threads, "2", "2", "1000"], timeout: 60)
        XCTAssertEqual(stats.stdout, "OK threads\n", stats.summary)
        XCTAssertTrue(stats.stderr.contains("HeapAlloc") && stats.stderr.contains("mcaches: "), stats.summary)
    }

    /// Without --library, `gomalloc run` finds libgomalloc-preload.so next to itself.
    func testRunFindsLibraryNextToExecutable() throws {
        guard case .gomalloc = try DropIn.allocator() else { throw XCTSkip("GOMALLOC_TEST_PRELOAD=glibc") }
        let gomalloc = try DropIn.gomallocExecutable()
        let sibling = DropIn.productsDir.appendingPathComponent("libgomalloc-preload.so").path
        // `swift build` puts both products in one directory: a missing library is a failure.
        XCTAssertTrue(FileManager.default.fileExists(atPath: sibling), "no \(sibling) next to \(gomalloc)")
        let r = try DropIn.run(gomalloc, ["run", "--", "/bin/sh", "-c", "echo $LD_PRELOAD"], timeout: 60)
        XCTAssertEqual(r.stdout, sibling + "\n", r.summary)
    }

    // MARK: - Examples/LinkedServer

    /// Install into a temporary prefix, build the example package against it the way its
    /// README says, and run it: the statistics it prints prove GoMalloc served its allocations.
    func testLinkedServerExample() throws {
        let library = try DropIn.requireLibrary("the linking example")
        let gomalloc = try DropIn.gomallocExecutable()
        let swift = try tool("swift")
        let prefix = DropIn.workDir.appendingPathComponent("example-prefix-\(UUID().uuidString.prefix(8))")
        let install = try DropIn.run(gomalloc, ["install", "--prefix", prefix.path, "--library", library, "--no-ldconfig"], timeout: 60)
        XCTAssertEqual(install.status, 0, install.summary)

        let example = DropIn.packageRoot.appendingPathComponent("Examples/LinkedServer")
        let scratch = DropIn.workDir.appendingPathComponent("example-build-\(UUID().uuidString.prefix(8))")
        let env: [String: String?] = ["PKG_CONFIG_PATH": "\(prefix.path)/lib/pkgconfig"]
        let build = try DropIn.run(swift, ["build", "--package-path", example.path, "--scratch-path", scratch.path,
                                           "-Xlinker", "-L\(prefix.path)/lib", "-Xcc", "-I\(prefix.path)/include"],
                                   environment: env, timeout: 900)
        XCTAssertTrue(build.exitedNormally && build.status == 0, "building Examples/LinkedServer: \(build.summary)")
        guard build.status == 0 else { return }

        let exe = scratch.appendingPathComponent("debug/LinkedServer").path
        let r = try DropIn.run(exe, [], environment: ["LD_LIBRARY_PATH": "\(prefix.path)/lib"], timeout: 300)
        XCTAssertTrue(r.exitedNormally && r.status == 0, r.summary)
        XCTAssertTrue(r.stdout.contains("allocator: GoMalloc"), r.summary)
        XCTAssertTrue(r.stdout.contains("Mallocs"), r.summary)
    }
}

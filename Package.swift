// swift-tools-version: 6.1
//
// GoMalloc: Go's memory allocator (mheap / mcentral / per-P mcache) rebuilt in Swift.
//
// One core, two builds:
//   * `GoMallocCore` (Sources/GoMallocCore) compiles as Embedded Swift with
//     `-no-allocations`; with the C shims in `GoMallocExports` it becomes the
//     drop-in `libgomalloc-preload.so` that depends on libc alone.
//   * `GoMallocCoreHosted` is the same directory (a symlink) built as ordinary
//     Swift; the `GoMalloc` library, the CLI and the tests use it.
//
// Compile-time flags (all our own, never `DEBUG`):
//   GOMALLOC_INTERNAL_CHECKS   cheap O(1) invariant checks; on in debug builds.
//   GOMALLOC_EXPENSIVE_CHECKS  heap walks after mutations; opt-in only
//                              (`-Xswiftc -DGOMALLOC_EXPENSIVE_CHECKS`).
//   GOMALLOC_HOSTED            defined for the hosted (non-Embedded) build.
import PackageDescription

let coreSettings: [SwiftSetting] = [
    .define("GOMALLOC_INTERNAL_CHECKS", .when(configuration: .debug)),
]

let package = Package(
    name: "GoMalloc",
    products: [
        .library(name: "GoMalloc", targets: ["GoMalloc"]),
        .library(name: "gomalloc-preload", type: .dynamic, targets: ["GoMallocExports", "GoMallocCore"]),
        .executable(name: "gomalloc", targets: ["gomalloc"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // pprof's profile.proto for `gomalloc profile` (the CLI only; the core stays libc-only).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.28.0"),
    ],
    targets: [
        // libc, syscalls, thread-locals and the CPU id: the only C the core sees.
        .target(name: "CGoMallocSys"),

        // The allocator core, Embedded build (the drop-in library).
        .target(
            name: "GoMallocCore",
            dependencies: ["CGoMallocSys"],
            path: "Sources/GoMallocCore",
            swiftSettings: coreSettings + [
                .enableExperimentalFeature("Embedded"),
                .unsafeFlags(["-no-allocations"]),
            ]
        ),
        // The C names (malloc, free, ...) forwarding to the core's gm_* entry points.
        .target(
            name: "GoMallocExports",
            dependencies: ["GoMallocCore"],
            linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=Sources/GoMallocExports/exports.map"])]
        ),

        // The same core sources, hosted build (library, CLI, tests).
        .target(
            name: "GoMallocCoreHosted",
            dependencies: ["CGoMallocSys"],
            path: "Sources/GoMallocCoreHosted",
            swiftSettings: coreSettings + [.define("GOMALLOC_HOSTED")]
        ),
        .target(name: "GoMalloc", dependencies: ["GoMallocCoreHosted"]),
        // `gomalloc stacks-demo`'s coroutines: a context switch of our own (x86-64, AArch64;
        // ucontext elsewhere), the round-robin scheduler and the three stack sources.
        .target(name: "CStacksDemo"),
        // zlib for the CLI's gzip output (`gomalloc profile`'s heap.pb.gz).
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .executableTarget(
            name: "gomalloc",
            dependencies: [
                "GoMalloc", "GoMallocCoreHosted",  // the core for its options table (--help)
                "CStacksDemo", "CZlib",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]
        ),

        // Tests: two targets, so that the fast set runs on its own. `swift test` runs both.
        //   GoMallocUnitTests         in this process, seconds: size classes, the page
        //                             allocator, the Swift API against a model, retired spans,
        //                             the scavenger's policy, bad pointers (forked children),
        //                             threads and trim, statistics and the heap view.
        //                               swift test --filter GoMallocUnitTests
        //   GoMallocIntegrationTests  real processes, about a minute: the C programs in
        //                             Tests/CPrograms under the preloaded library, misuse
        //                             reports, real programs (python3, sqlite3, git, gcc,
        //                             swift), stress runs and watchpoint replays, the CLI,
        //                             `gomalloc bench --smoke`, `gomalloc stacks-demo`. Needs
        //                             the built products (`swift build`, which `swift test` does).
        //                               swift test --filter GoMallocIntegrationTests
        // One test class:  swift test --filter GoMallocUnitTests.PageAllocTests
        // Tests/Shared/TestSupport.swift is symlinked into both targets.
        .testTarget(
            name: "GoMallocUnitTests",
            dependencies: ["GoMalloc", "GoMallocCoreHosted"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(
            name: "GoMallocIntegrationTests",
            dependencies: ["GoMalloc", "GoMallocCoreHosted"]
        ),
        // The CLI's pure parts (bench's table and chart, the options help, stacks-demo's
        // report, the heap profile's parser, symbolizer and writers), option parsing and
        // stacks-demo's context switch; runs in seconds:
        //   swift test --filter GoMallocCLITests
        .testTarget(name: "GoMallocCLITests", dependencies: [
            "gomalloc", "GoMallocCoreHosted", "CStacksDemo", "CZlib",
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
    ]
)

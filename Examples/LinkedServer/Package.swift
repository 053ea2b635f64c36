// swift-tools-version: 5.9
//
// LinkedServer: a Swift executable that links GoMalloc as its malloc, the way Swift server
// projects link jemalloc. `gomalloc install` provides libgomalloc.so, gomalloc.h and
// gomalloc.pc; see README.md for the two commands.
import PackageDescription

let package = Package(
    name: "LinkedServer",
    targets: [
        // GoMalloc's C API (gomalloc.h) as a Swift module; pkg-config supplies the -I/-L flags
        // when gomalloc.pc is on its path, and the module map links libgomalloc.
        .systemLibrary(name: "CGoMalloc", pkgConfig: "gomalloc"),
        .executableTarget(
            name: "LinkedServer",
            dependencies: ["CGoMalloc"],
            // The jemalloc way: put -lgomalloc on the link line, ahead of libc.
            linkerSettings: [.linkedLibrary("gomalloc")]
        ),
    ]
)

//! The repository's cargo config gives guests a 64 KiB shadow stack. This component keeps
//! rustc's default 1 MiB so that its recursion exhausts the host's wasm stack limit (a trap the
//! host names "stack overflow") before its own shadow stack runs out.

fn main() {
    println!("cargo:rustc-link-arg=-zstack-size=1048576");
}

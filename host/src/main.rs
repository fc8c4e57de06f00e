//! The `cairn` binary.

/// mimalloc instead of glibc's malloc: the host allocates and frees many small buffers per
/// invocation from two worker threads, where glibc's per-thread arenas cost CPU (a tenth of the
/// profile under load) and fragment (resident memory).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cairn::cli::main()
}

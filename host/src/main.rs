//! The `cairn` binary.

fn main() -> anyhow::Result<()> {
    cairn::cli::main()
}

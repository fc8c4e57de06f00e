//! Builds the guest components (`guests/`, a separate workspace) for `wasm32-wasip2` so that
//! `cargo test` always runs against fresh components, as wasmtime's test-programs do. The nested
//! build has its own target dir under OUT_DIR and none of the outer build's rustflags.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// (constant name, crate artifact file name).
const COMPONENTS: [(&str, &str); 15] = [
    ("ORDER_ORCHESTRATOR", "order_orchestrator.wasm"),
    ("STRIPE_PAYMENTS", "stripe_payments.wasm"),
    ("SENDGRID_EMAIL", "sendgrid_email.wasm"),
    ("SHIPPO_SHIPPING", "shippo_shipping.wasm"),
    ("ADYEN_PAYMENTS", "adyen_payments.wasm"),
    ("STEPS_SERVICE", "steps_service.wasm"),
    ("HOSTILE_LOOP", "hostile_loop.wasm"),
    ("HOSTILE_MEMORY", "hostile_memory.wasm"),
    ("HOSTILE_RECURSION", "hostile_recursion.wasm"),
    ("HOSTILE_NETWORK", "hostile_network.wasm"),
    ("HOSTILE_SNOOP", "hostile_snoop.wasm"),
    ("TAX_PROVIDER", "tax_provider.wasm"),
    ("CHECKOUT_SERVICE", "checkout_service.wasm"),
    ("TAX_STATEFUL", "tax_stateful.wasm"),
    ("RELAY_SERVICE", "relay_service.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let guests = root.join("guests");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out_dir.join("guests-target");

    for watched in [
        "Cargo.toml",
        "Cargo.lock",
        "sdk",
        "orchestrator",
        "providers",
        "testing",
    ] {
        println!("cargo:rerun-if-changed={}", guests.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    // The guests' link flags (stack size) live in the repository's cargo config.
    println!(
        "cargo:rerun-if-changed={}",
        root.join(".cargo/config.toml").display()
    );

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(guests.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("running cargo for the guests");
    assert!(
        status.success(),
        "building the guest components failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    let release = target_dir.join("wasm32-wasip2").join("release");
    let mut consts = String::new();
    writeln!(
        consts,
        "/// Directory holding every built component.\npub const COMPONENTS_DIR: &str = {:?};",
        release.display().to_string()
    )
    .unwrap();
    for (name, file) in COMPONENTS {
        let path = release.join(file);
        assert!(
            path.exists(),
            "expected {} after the guest build",
            path.display()
        );
        writeln!(
            consts,
            "/// `{file}`.\npub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("components.rs"), consts).expect("writing components.rs");
}

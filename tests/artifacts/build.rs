//! Builds the guest components (`guests/`, a separate workspace) for `wasm32-wasip2` so that
//! `cargo test` always runs against fresh components, as wasmtime's test-programs do. The nested
//! build has its own target dir under OUT_DIR and none of the outer build's rustflags. The
//! JavaScript components (`guests/js`) are built with componentize-js from the npm registry
//! (`npm ci`, then `node build.mjs`), into OUT_DIR too.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (constant name, crate artifact file name).
const COMPONENTS: [(&str, &str); 18] = [
    ("ORDER_ORCHESTRATOR", "order_orchestrator.wasm"),
    ("WEBHOOK_PROCESSOR", "webhook_processor.wasm"),
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
    ("HOSTILE_ABUSE", "hostile_abuse.wasm"),
    ("TAX_PROVIDER", "tax_provider.wasm"),
    ("CHECKOUT_SERVICE", "checkout_service.wasm"),
    ("TAX_STATEFUL", "tax_stateful.wasm"),
    ("RELAY_SERVICE", "relay_service.wasm"),
    ("BASKET_EXAMPLE", "basket_example.wasm"),
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
        "webhooks",
        "providers",
        "testing",
        "examples",
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
    let js = build_js(&guests.join("js"), &out_dir.join("js"));
    for (name, file) in JS_COMPONENTS {
        writeln!(
            consts,
            "/// `{file}` (JavaScript, `guests/js`).\npub const {name}: &str = {:?};",
            js.join(file).display().to_string()
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("components.rs"), consts).expect("writing components.rs");
}

/// (constant name, file name) of the JavaScript components that `guests/js/build.mjs` writes.
const JS_COMPONENTS: [(&str, &str); 1] = [("SENDGRID_JS_EMAIL", "sendgrid_js_email.wasm")];

/// Installs the locked npm packages when they changed (`npm ci`) and builds the JavaScript
/// components into `out`.
fn build_js(js: &Path, out: &Path) -> PathBuf {
    for watched in ["package.json", "package-lock.json", "build.mjs", "email"] {
        println!("cargo:rerun-if-changed={}", js.join(watched).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        js.join("node_modules/.package-lock.json").display()
    );
    let installed = js.join("node_modules/.package-lock.json");
    let fresh = match (
        modified(&installed),
        modified(&js.join("package-lock.json")),
    ) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    };
    if !fresh {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(js),
            "npm ci in guests/js (is Node.js installed? `scripts/setup` installs it)",
        );
    }
    // This script reruns on every change to the Rust guests too: build the JavaScript ones
    // again only when one of their inputs is newer than what was built.
    let inputs = ["package-lock.json", "build.mjs", "email", "../../wit"]
        .iter()
        .filter_map(|input| newest(&js.join(input)))
        .max();
    let built = JS_COMPONENTS
        .iter()
        .map(|(_, file)| modified(&out.join(file)))
        .min()
        .flatten();
    if !fresh || built.is_none() || inputs.is_none() || inputs > built {
        run(
            Command::new("node")
                .arg("build.mjs")
                .arg(out)
                .current_dir(js),
            "building the JavaScript components (node guests/js/build.mjs)",
        );
    }
    out.to_path_buf()
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of `path` or, for a directory, of anything under it.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let own = modified(path);
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    entries
        .flatten()
        .filter_map(|entry| newest(&entry.path()))
        .chain(own)
        .max()
}

fn run(command: &mut Command, what: &str) {
    let status = command
        .status()
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    assert!(status.success(), "{what} failed: {status}");
}

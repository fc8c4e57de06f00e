//! The provider template as a third party uses it (issue 18): `templates/provider` copied to a
//! directory outside the repository with a copy of `wit/`, built there on its own both ways
//! docs/providers.md gives, each output deployed through the admin API with its own settings and
//! an order's email sent through it, counted at the fake:
//!
//! - `cargo build --release --target wasm32-wasip2`, its path dependencies pointed at this
//!   checkout;
//! - `cargo component build --release`, on the SDK crates as `cargo package` makes them for
//!   crates.io (each with its WIT inside), unpacked and patched in as a published version would
//!   be fetched.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn::mock::MockConfig;
use cairn_e2e::{Cairn, Options, count, order_input};
use serde_json::json;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Where the template's builds keep their target dir between runs (under this repository's).
fn target_dir() -> PathBuf {
    repo().join("target/provider-template")
}

/// Copies directory `from` into `to`, recursively, but for symbolic links and `target/`.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        // The template's `wit` links to the repository's, copied on its own.
        if kind.is_symlink() || entry.file_name() == "target" {
            continue;
        }
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `cargo args` in `dir`, on the template's target dir, as a shell outside this build
/// would (none of the test's own cargo settings); panics with its stderr if it fails.
fn cargo(dir: &Path, args: &[&str]) {
    let ran = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap_or_else(|e| panic!("cargo {args:?}: {e}"));
    assert!(
        ran.status.success(),
        "cargo {args:?} failed in {} (cargo-component comes from `scripts/setup \
         --cargo-component`):\n{}",
        dir.display(),
        String::from_utf8_lossy(&ran.stderr)
    );
}

/// The SDK crates as `cargo package` makes them for crates.io, unpacked under `dir`:
/// `[patch.crates-io]` entries for them.
fn packaged_sdk(dir: &Path) -> String {
    const CRATES: [&str; 3] = ["cairn-sdk-macros", "cairn-sdk", "cairn-provider"];
    let mut args = vec!["package", "--no-verify", "--allow-dirty"];
    for name in CRATES {
        args.extend(["-p", name]);
    }
    cargo(&repo().join("guests"), &args);
    std::fs::create_dir_all(dir).unwrap();
    let mut patch = String::from("\n[patch.crates-io]\n");
    for name in CRATES {
        let file = target_dir().join(format!("package/{name}-0.1.0.crate"));
        let unpacked = Command::new("tar")
            .arg("xzf")
            .arg(&file)
            .arg("-C")
            .arg(dir)
            .status()
            .expect("tar");
        assert!(unpacked.success(), "tar xzf {}", file.display());
        patch += &format!("{name} = {{ path = \"{}/{name}-0.1.0\" }}\n", dir.display());
    }
    patch
}

/// How a third party builds the template: the two paths docs/providers.md gives.
#[derive(Clone, Copy, Debug)]
enum BuildPath {
    /// `cargo build --release --target wasm32-wasip2`, the SDK a path dependency on a checkout:
    /// rustc writes the component.
    Cargo,
    /// `cargo component build --release`, the SDK a crates.io dependency: a wasm32-wasip1
    /// module, adapted to a component.
    CargoComponent,
}

impl BuildPath {
    /// The command's arguments after `cargo`, and where it leaves the component under the
    /// target dir.
    fn command(self) -> (&'static [&'static str], &'static str) {
        match self {
            BuildPath::Cargo => (
                &["build", "--release", "--target", "wasm32-wasip2"],
                "wasm32-wasip2/release/acme_email.wasm",
            ),
            BuildPath::CargoComponent => (
                &["component", "build", "--release"],
                "wasm32-wasip1/release/acme_email.wasm",
            ),
        }
    }
}

/// The template copied to `dir` with a copy of `wit/`, as docs/providers.md says to, its
/// dependencies on the SDK made as `path` uses them.
fn copy_template(dir: &Path, path: BuildPath) {
    let repo = repo();
    copy_dir(&repo.join("templates/provider"), dir);
    copy_dir(&repo.join("wit"), &dir.join("wit"));
    let manifest = dir.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    match path {
        BuildPath::Cargo => {
            text = text.replace("../../guests", &format!("{}/guests", repo.display()));
        }
        BuildPath::CargoComponent => {
            for (name, at) in [("cairn-sdk", "sdk"), ("cairn-provider", "providers/common")] {
                let local =
                    format!("{name} = {{ path = \"../../guests/{at}\", version = \"0.1\" }}");
                assert!(text.contains(&local), "{name} in the template: {text}");
                text = text.replace(&local, &format!("{name} = \"0.1\""));
            }
            text += &packaged_sdk(&dir.join("../crates"));
        }
    }
    std::fs::write(&manifest, text).unwrap();
}

/// The template in `dir` built by `path`: the component's bytes.
fn build_template(dir: &Path, path: BuildPath) -> Vec<u8> {
    let (args, output) = path.command();
    cargo(dir, args);
    std::fs::read(target_dir().join(output)).unwrap()
}

#[tokio::test]
async fn the_provider_template_builds_outside_the_repository_both_ways_and_sends_an_orders_email() {
    let outside = tempfile::tempdir().unwrap();
    // What the host may deploy from: the two builds' outputs, as they come.
    let out = outside.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut builds = Vec::new();
    for path in [BuildPath::Cargo, BuildPath::CargoComponent] {
        let name = format!("acme-email-{path:?}").to_lowercase();
        let crate_dir = outside.path().join(&name);
        copy_template(&crate_dir, path);
        let file = out.join(format!("{name}.wasm"));
        std::fs::write(&file, build_template(&crate_dir, path)).unwrap();
        builds.push((name, file));
    }
    let cairn = Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (0, 0),
        },
        secret_env: vec![("SENDGRID_API_KEY".into(), "SG.template_key".into())],
        deploy_dir: Some(out.clone()),
        ..Options::default()
    })
    .await;
    let base = cairn.mock.base_url();
    for (sent_before, (name, file)) in builds.iter().enumerate() {
        // Deployed, it becomes the email provider of the next order.
        let deployed = cairn
            .admin_post(
                "/deployments",
                &json!({
                    "path": file,
                    "config": {"api-base": base},
                    "allowPrivate": [base],
                    "secrets": ["SENDGRID_API_KEY"],
                }),
            )
            .await;
        assert_eq!(deployed.status, 201, "{name}: {:?}", deployed.body);
        let id = deployed.body["id"].as_str().unwrap().to_string();
        // Listed with its own name, its package's, beside what it exports: cargo-component
        // writes a `component-name` section, plain cargo none (the SDK's section names it).
        let listed = cairn.admin_get(&format!("/deployments/{id}")).await;
        let exports = listed.body["name"].as_str().unwrap_or_default();
        assert!(exports.contains("cairn:commerce/email@0.1.0"), "{exports}");
        assert_eq!(
            listed.body["componentName"], "acme-email",
            "{name}: {:?}",
            listed.body
        );

        let order = format!("order-{name}");
        let reply = cairn
            .process_order(&order, &order_input("t@example.com"))
            .await;
        assert_eq!(
            reply.body["status"], "confirmed",
            "{name}: {:?}",
            reply.body
        );
        assert_eq!(reply.body["emailSent"], true, "{name}: {:?}", reply.body);
        let stats = cairn.stats().await;
        assert_eq!(
            count(&stats, &format!("/emails/by_order/{order}")),
            1,
            "{stats}"
        );
        let inv = cairn.invocation(&reply).await;
        let email = inv["journal"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "cairn:commerce/email.send-email")
            .expect("the email entry")
            .clone();
        assert_eq!(email["detail"]["effect"]["provider"], id, "{email}");
        // The key went on the wire; the journal has the placeholder only.
        let text = email.to_string();
        assert!(text.contains("{{secret:SENDGRID_API_KEY}}"), "{text}");
        assert!(!text.contains("SG.template_key"), "{text}");
        let sent = cairn.requests("sendgrid").await;
        assert_eq!(sent.len(), sent_before + 1, "{name}: {sent:?}");
        assert_eq!(
            sent[sent_before]["headers"]["authorization"],
            "<redacted:Bearer>"
        );
    }
}

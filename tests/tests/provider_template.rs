//! The provider template as a third party uses it (issue 18): `templates/provider` copied to a
//! directory outside the repository with a copy of `wit/`, its path dependencies pointed at this
//! checkout, built on its own with `cargo build --release --target wasm32-wasip2`, deployed
//! through the admin API with its own settings, and an order's email sent through it, counted at
//! the fake.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn::mock::MockConfig;
use cairn_e2e::{Cairn, Options, count, order_input};
use serde_json::json;

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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

/// The template, copied to `dir` and built there; the component's path.
fn build_template(dir: &Path) -> PathBuf {
    let repo = repo().canonicalize().unwrap();
    copy_dir(&repo.join("templates/provider"), dir);
    copy_dir(&repo.join("wit"), &dir.join("wit"));
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("../../guests", &format!("{}/guests", repo.display()));
    std::fs::write(&manifest, text).unwrap();
    // A target dir of its own, kept between runs (under this repository's target/).
    let target = repo.join("target/provider-template");
    let built = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("cargo build");
    assert!(
        built.status.success(),
        "the template did not build on its own:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    target.join("wasm32-wasip2/release/acme_email.wasm")
}

#[tokio::test]
async fn the_provider_template_builds_outside_the_repository_and_sends_an_orders_email() {
    let outside = tempfile::tempdir().unwrap();
    let component = build_template(&outside.path().join("acme-email"));
    // Its own name, as `wasm-tools metadata add --name acme-email` (this library) writes it.
    let mut stamp = wasm_metadata::AddMetadata::default();
    stamp.name = wasm_metadata::AddMetadataField::Set("acme-email".into());
    let named = stamp.to_wasm(&std::fs::read(&component).unwrap()).unwrap();
    std::fs::write(&component, named).unwrap();
    let cairn = Cairn::start_opts(Options {
        mock: MockConfig {
            decline_rate: 0.0,
            delay_ms: (0, 0),
        },
        secret_env: vec![("SENDGRID_API_KEY".into(), "SG.template_key".into())],
        deploy_dir: Some(component.parent().unwrap().to_path_buf()),
        ..Options::default()
    })
    .await;
    let base = cairn.mock.base_url();
    let deployed = cairn
        .admin_post(
            "/deployments",
            &json!({
                "path": component,
                "config": {"api-base": base},
                "allowPrivate": [base],
                "secrets": ["SENDGRID_API_KEY"],
            }),
        )
        .await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    let id = deployed.body["id"].as_str().unwrap().to_string();
    // Listed with its own name beside what it exports.
    let listed = cairn.admin_get(&format!("/deployments/{id}")).await;
    let exports = listed.body["name"].as_str().unwrap_or_default();
    assert!(exports.contains("cairn:commerce/email@0.1.0"), "{exports}");
    assert_eq!(
        listed.body["componentName"], "acme-email",
        "{:?}",
        listed.body
    );

    let reply = cairn
        .process_order("order-template", &order_input("t@example.com"))
        .await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    assert_eq!(reply.body["emailSent"], true, "{:?}", reply.body);
    let stats = cairn.stats().await;
    assert_eq!(
        count(&stats, "/emails/by_order/order-template"),
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
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["headers"]["authorization"], "<redacted:Bearer>");
}

//! A third party's interface end to end, with no change to the host (issue 11): `acme:tax`
//! (`guests/testing/tax/wit`) is known only to its components. The `Checkout` service imports
//! `acme:tax/calculate`, the tax provider exports it; the host links the import at deployment,
//! pins the provider on each invocation, and journals each call like any other: replayed after a
//! crash, the call is answered from the journal and the provider does not run again (counted in
//! the provider's own log lines). An import that no deployed component exports, and one that
//! the provider world forbids, are refused at deployment with a 400 naming it; a component built
//! against the previous `cairn:durable` version still runs.

use cairn_e2e::{Cairn, Options, logs};
use serde_json::json;

const TAX: &str = "acme:tax/calculate@1.0.0";

#[tokio::test]
async fn a_third_partys_interface_is_linked_and_journaled_like_any_other() {
    let logs = logs::capture();
    // One crash, right after the first entry of the first invocation that makes one.
    let cairn = Cairn::start_opts(Options {
        fail_after_entry: Some(0),
        ..Options::default()
    })
    .await;
    let checkout = json!({"path": test_artifacts::CHECKOUT_SERVICE});
    let early = cairn.admin_post("/deployments", &checkout).await;
    assert_eq!(early.status, 400, "{:?}", early.body);
    let message = early.body["message"].as_str().unwrap();
    assert!(
        message.contains(TAX) && message.contains("no deployed component exports"),
        "{message}"
    );

    let provider = cairn
        .admin_post(
            "/deployments",
            &json!({"path": test_artifacts::TAX_PROVIDER, "config": {"rate-ca": "725"}}),
        )
        .await;
    assert_eq!(provider.status, 201, "{:?}", provider.body);
    assert_eq!(provider.body["kind"], "provider");
    assert_eq!(provider.body["exports"], json!([TAX]));
    assert_eq!(provider.body["activeFor"], json!([TAX]));
    let provider_id = provider.body["id"].as_str().unwrap().to_string();
    let service = cairn.admin_post("/deployments", &checkout).await;
    assert_eq!(service.status, 201, "{:?}", service.body);

    let reply = cairn
        .post("/Checkout/Quote", &json!({"region": "ca", "net": 10_000}))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let id = reply.invocation_id.clone().expect("invocation id");
    let key = format!("{id}-0");
    assert_eq!(
        reply.body,
        json!({"net": 10_000, "tax": 725, "total": 10_725, "rateBp": 725, "key": key})
    );
    let inv = cairn.invocation(&reply).await;
    assert_eq!(
        inv["attempt"], 2,
        "the fail point ended the first attempt: {inv}"
    );
    assert_eq!(inv["providers"][TAX], provider_id.as_str(), "{inv}");
    let journal = inv["journal"].as_array().unwrap();
    assert_eq!(journal.len(), 1, "{inv}");
    assert_eq!(journal[0]["kind"], "call");
    assert_eq!(journal[0]["name"], "acme:tax/calculate.tax");
    assert_eq!(journal[0]["detail"]["args"], json!(["ca", 10_000]), "{inv}");
    assert_eq!(
        journal[0]["detail"]["effect"]["provider"],
        provider_id.as_str()
    );
    assert_eq!(
        journal[0]["detail"]["effect"]["idempotency_key"],
        key.as_str()
    );
    // Two attempts, one call that ran: the second attempt replayed it.
    let quoted = format!("acme-tax: quoted ca under {key}");
    assert_eq!(logs.text().matches(&quoted).count(), 1, "{quoted}");

    // A typed error of the interface reaches the service as a value.
    let unknown = cairn
        .post("/Checkout/Quote", &json!({"region": "mars", "net": 1}))
        .await;
    assert_eq!(unknown.status, 422, "{:?}", unknown.body);
    assert!(
        unknown.body["message"]
            .as_str()
            .unwrap()
            .contains("unknown region mars"),
        "{:?}",
        unknown.body
    );
}

#[tokio::test]
async fn a_provider_importing_what_its_world_forbids_is_refused() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .admin_post(
            "/deployments",
            &json!({"path": test_artifacts::TAX_STATEFUL}),
        )
        .await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.contains("cairn:durable/state@0.1.2")
            && message.contains("cairn:durable/provider world does not allow"),
        "{message}"
    );
    let list = cairn.admin_get("/deployments").await.body;
    assert!(
        !list.to_string().contains("acme:tax"),
        "nothing was deployed: {list}"
    );
}

/// `cairn:durable` 0.1.1 and 0.1.2 only added interfaces and functions: components built
/// against 0.1.0 and 0.1.1 (kept in `tests/fixtures`, built before each bump) deploy and run
/// unchanged.
#[tokio::test]
async fn components_built_against_earlier_durable_versions_still_run() {
    let cairn = Cairn::start().await;
    for version in ["0.1.0", "0.1.1"] {
        let path = format!(
            "{}/fixtures/steps_service-durable-{version}.wasm",
            env!("CARGO_MANIFEST_DIR")
        );
        let bytes = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains(&format!("cairn:durable/run@{version}")),
            "built against {version}"
        );
        assert!(!text.contains("cairn:durable/run@0.1.2"));
        let deployed = cairn.deploy_bytes(bytes, "").await;
        assert_eq!(deployed.status, 201, "{version}: {:?}", deployed.body);
        assert_eq!(deployed.body["kind"], "service");
        let reply = cairn.post("/Steps/Run", &json!({"steps": 3})).await;
        assert_eq!(reply.status, 200, "{version}: {:?}", reply.body);
        assert_eq!(reply.body, json!({"steps": 3, "sum": 3}));
    }
}

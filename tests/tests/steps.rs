//! Durable steps as the guest SDK records them (issue 12), through the `Steps` test service: a
//! step that fails retryably is not recorded and runs again on the next attempt, one that fails
//! terminally is recorded and ends the invocation with its failure.

use cairn_e2e::Cairn;
use serde_json::{Value, json};

async fn with_steps() -> Cairn {
    let cairn = Cairn::start().await;
    let deployed = cairn.deploy_file(test_artifacts::STEPS_SERVICE, None).await;
    assert!(deployed.status.is_success(), "{:?}", deployed.body);
    cairn
}

/// The (name, result) of every entry of the invocation's journal.
fn entries(invocation: &Value) -> Vec<(String, Value)> {
    invocation["journal"]
        .as_array()
        .expect("journal")
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["result"].clone()))
        .collect()
}

#[tokio::test]
async fn a_retryable_step_error_is_not_recorded_and_the_step_runs_again() {
    let cairn = with_steps().await;
    let reply = cairn
        .post("/Steps/Run", &json!({"steps": 2, "retryFirst": true}))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body, json!({"steps": 2, "sum": 1}));
    let inv = cairn.invocation(&reply).await;
    assert_eq!(
        inv["attempt"], 2,
        "the first attempt failed at step-0: {inv}"
    );
    let names: Vec<String> = entries(&inv).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["step-0", "step-1"], "step-0 recorded once: {inv}");
}

#[tokio::test]
async fn a_terminal_step_error_is_recorded_and_is_the_answer() {
    let cairn = with_steps().await;
    let reply = cairn
        .post("/Steps/Run", &json!({"steps": 3, "failAt": 1}))
        .await;
    assert_eq!(reply.status, 422, "{:?}", reply.body);
    assert!(
        reply.body["message"]
            .as_str()
            .unwrap()
            .contains("step-1 refused"),
        "{:?}",
        reply.body
    );
    let inv = cairn.invocation(&reply).await;
    assert_eq!(
        inv["attempt"], 1,
        "a terminal failure is not retried: {inv}"
    );
    let recorded = entries(&inv);
    assert_eq!(recorded.len(), 2, "step-0 and step-1, not step-2: {inv}");
    assert_eq!(recorded[1].0, "step-1");
    let outcome = recorded[1].1.to_string();
    assert!(
        outcome.contains("step-1 refused"),
        "the error is recorded: {outcome}"
    );
}

#[tokio::test]
async fn a_wrong_field_is_a_400_that_names_it() {
    let cairn = with_steps().await;
    let reply = cairn.post("/Steps/Run", &json!({"steps": "three"})).await;
    assert_eq!(reply.status, 400, "{:?}", reply.body);
    let message = reply.body["message"].as_str().unwrap();
    assert!(
        message.starts_with("steps: invalid type: string"),
        "{message}"
    );
}

/// The README's "Write a component" (`guests/examples/basket`): a keyed object with a provider
/// call, a step and state. One charge at the fake, a journal of a call, a step and a state
/// write, and the receipt read back from state by the shared handler.
#[tokio::test]
async fn the_readme_example_charges_once_and_keeps_its_receipt() {
    let cairn = Cairn::start().await;
    let deployed = cairn
        .deploy_file(test_artifacts::BASKET_EXAMPLE, None)
        .await;
    assert!(deployed.status.is_success(), "{:?}", deployed.body);
    let paid = cairn
        .post(
            "/Basket/b-1/Pay",
            &json!({"cents": 1250, "email": "ada@example.com"}),
        )
        .await;
    assert_eq!(paid.status, 200, "{:?}", paid.body);
    let charge = paid.body["charge"].as_str().expect("charge id").to_string();
    assert!(charge.starts_with("ch_"), "{:?}", paid.body);
    let stats = cairn.stats().await;
    assert_eq!(
        cairn_e2e::count(&stats, "/charges/by_order/b-1"),
        1,
        "{stats}"
    );
    let receipt = cairn.post("/Basket/b-1/Receipt", &json!(null)).await;
    assert_eq!(receipt.status, 200, "{:?}", receipt.body);
    assert_eq!(receipt.body, paid.body);
    let names: Vec<String> = entries(&cairn.invocation(&paid).await)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        ["cairn:commerce/payments.create-charge", "number", "set"],
        "a provider call, a step, a state write"
    );
}

//! The order flow end to end (issue 2): real host, real components, fake provider API. Effects are
//! counted at the fake.

use cairn::storage::{ScratchDatabase, Table};
use cairn_e2e::{Cairn, Options, count, order_input};
use serde_json::{Value, json};

#[tokio::test]
async fn twenty_orders_are_confirmed_with_one_charge_label_and_email_each() {
    twenty_orders_confirmed(&Cairn::start().await).await;
}

/// The same on PostgreSQL; after a restart the orders are still there and a repeat charges
/// nothing.
#[tokio::test]
async fn on_postgres_twenty_orders_are_confirmed_and_kept_across_a_restart() {
    let database = ScratchDatabase::create().await.unwrap();
    let cairn = Cairn::start_opts(Options {
        database_url: Some(database.url.clone()),
        ..Options::default()
    })
    .await;
    twenty_orders_confirmed(&cairn).await;
    let before = cairn
        .process_order("order-007", &order_input("alice@example.com"))
        .await;

    let cairn = cairn.restart().await;
    let order = cairn.get_order("order-007").await;
    assert_eq!(order.status, 200, "{:?}", order.body);
    assert_eq!(order.body["chargeId"], before.body["chargeId"]);
    let again = cairn
        .process_order("order-007", &order_input("alice@example.com"))
        .await;
    assert_eq!(again.body, before.body);
    assert_eq!(count(&cairn.stats().await, "/charges/total"), 20);
    // The twenty, the repeat, the read and the repeat after the restart.
    assert_eq!(cairn.count_rows(Table::Invocations).await, 23);
}

async fn twenty_orders_confirmed(cairn: &Cairn) {
    let orders = (0..20).map(|i| async move {
        let id = format!("order-{i:03}");
        (
            id.clone(),
            cairn
                .process_order(&id, &order_input("alice@example.com"))
                .await,
        )
    });
    for (id, reply) in futures::future::join_all(orders).await {
        assert_eq!(reply.status, 200, "{id}: {:?}", reply.body);
        let order = &reply.body;
        assert_eq!(order["orderId"], id.as_str());
        assert_eq!(order["status"], "confirmed", "{order}");
        assert_eq!(order["total"], 5000);
        assert!(
            order["chargeId"].as_str().unwrap().starts_with("ch_"),
            "{order}"
        );
        assert!(order["trackingNumber"].is_string(), "{order}");
        assert!(order["labelUrl"].is_string(), "{order}");
        assert_eq!(order["emailSent"], true);
        assert_eq!(order["failures"], json!([]));
        assert!(reply.invocation_id.unwrap().starts_with("inv_"));
    }
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/succeeded"), 20, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 20, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 20, "{stats}");
    for i in 0..20 {
        let id = format!("order-{i:03}");
        assert_eq!(
            count(&stats, &format!("/charges/by_order/{id}")),
            1,
            "{id}: {stats}"
        );
        assert_eq!(
            count(&stats, &format!("/labels/by_order/{id}")),
            1,
            "{id}: {stats}"
        );
        assert_eq!(
            count(&stats, &format!("/emails/by_order/{id}")),
            1,
            "{id}: {stats}"
        );
    }
}

#[tokio::test]
async fn a_declined_card_fails_the_payment_and_nothing_else_happens() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .process_order("order-declined", &order_input("bob+decline@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "payment_failed", "{}", reply.body);
    let reason = reply.body["failureReason"].as_str().unwrap_or_default();
    assert!(reason.contains("declined"), "reason: {reason}");
    assert_eq!(reply.body["chargeId"], Value::Null);
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/succeeded"), 0, "{stats}");
    assert_eq!(count(&stats, "/charges/declined"), 1, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 0, "{stats}");
}

#[tokio::test]
async fn a_failing_shipping_provider_is_recorded_and_the_order_still_confirms() {
    let cairn = Cairn::start().await;
    cairn
        .fault(json!({"shippo": {"fail_next": 1_000_000, "status": 500}}))
        .await;
    let reply = cairn
        .process_order("order-noship", &order_input("carol@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let order = &reply.body;
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["trackingNumber"], Value::Null);
    assert_eq!(order["labelUrl"], Value::Null);
    assert_eq!(order["emailSent"], true);
    let failures = order["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{order}");
    assert_eq!(failures[0]["step"], "shipping");
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/succeeded"), 1, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 1, "{stats}");
}

#[tokio::test]
async fn processing_an_order_twice_returns_the_same_order_and_charges_once() {
    let cairn = Cairn::start().await;
    let first = cairn
        .process_order("order-twice", &order_input("dan@example.com"))
        .await;
    let second = cairn
        .process_order("order-twice", &order_input("dan@example.com"))
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(first.body, second.body);
    assert_ne!(first.invocation_id, second.invocation_id);
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/labels/total"), 1, "{stats}");
    assert_eq!(count(&stats, "/emails/total"), 1, "{stats}");
}

#[tokio::test]
async fn each_bad_input_is_a_400_naming_the_field_and_charges_nothing() {
    let cairn = Cairn::start().await;
    let valid = order_input("erin@example.com");
    let with = |pointer: &str, value: Value| {
        let mut body = valid.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let without = |object: &str, field: &str| {
        let mut body = valid.clone();
        body.pointer_mut(object)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(field);
        body
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("malformed JSON", b"{\"items\": [".to_vec(), "JSON"),
        (
            "no items",
            with("/items", json!([])).to_string().into_bytes(),
            "items",
        ),
        (
            "zero quantity",
            with("/items/0/quantity", json!(0)).to_string().into_bytes(),
            "quantity",
        ),
        (
            "negative quantity",
            with("/items/0/quantity", json!(-1))
                .to_string()
                .into_bytes(),
            "quantity",
        ),
        (
            "negative price",
            with("/items/0/price", json!(-5)).to_string().into_bytes(),
            "price",
        ),
        (
            "bad email",
            with("/customer/email", json!("not-an-email"))
                .to_string()
                .into_bytes(),
            "email",
        ),
        (
            "missing zip",
            without("/shipping", "zip").to_string().into_bytes(),
            "zip",
        ),
        (
            "missing city",
            without("/shipping", "city").to_string().into_bytes(),
            "city",
        ),
        (
            "missing customer",
            without("", "customer").to_string().into_bytes(),
            "customer",
        ),
    ];
    for (i, (name, body, field)) in cases.into_iter().enumerate() {
        let reply = cairn
            .post_raw(
                &format!("/OrderOrchestrator/bad-{i}/ProcessOrder"),
                Some("application/json"),
                body,
            )
            .await;
        assert_eq!(reply.status, 400, "{name}: {:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "{name}: message {message:?} should name {field}"
        );
        // Nothing was stored for the order.
        let get = cairn.get_order(&format!("bad-{i}")).await;
        assert_eq!(get.status, 404, "{name}: {:?}", get.body);
    }
    let stats = cairn.stats().await;
    assert_eq!(count(&stats, "/charges/total"), 0, "{stats}");
    assert_eq!(count(&stats, "/requests/stripe"), 0, "{stats}");
    assert_eq!(cairn.count_rows(Table::State).await, 0);
}

#[tokio::test]
async fn get_order_is_404_before_and_the_stored_order_after() {
    let cairn = Cairn::start().await;
    let before = cairn.get_order("order-get").await;
    assert_eq!(before.status, 404, "{:?}", before.body);
    assert!(
        before.body["message"]
            .as_str()
            .unwrap()
            .contains("order-get")
    );
    let processed = cairn
        .process_order("order-get", &order_input("fay@example.com"))
        .await;
    let after = cairn.get_order("order-get").await;
    assert_eq!(after.status, 200, "{:?}", after.body);
    assert_eq!(after.body, processed.body);
}

#[tokio::test]
async fn the_journal_lists_every_import_call_in_order_without_secrets() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .process_order("order-journal", &order_input("gus@example.com"))
        .await;
    assert_eq!(reply.status, 200);
    let id = reply.invocation_id.unwrap();
    let inv = cairn.admin_get(&format!("/invocations/{id}")).await;
    assert_eq!(inv.status, 200, "{:?}", inv.body);
    let body = &inv.body;
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["service"], "OrderOrchestrator");
    assert_eq!(body["handler"], "ProcessOrder");
    assert_eq!(body["key"], "order-journal");
    assert_eq!(body["output"]["status"], "confirmed");
    assert!(body["deploymentId"].as_str().unwrap().len() == 64);

    let journal = body["journal"].as_array().unwrap();
    for (i, entry) in journal.iter().enumerate() {
        assert_eq!(entry["index"], i as u64, "indexes are dense and ordered");
    }
    let calls: Vec<&str> = journal
        .iter()
        .filter(|e| e["kind"] == "call")
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        calls,
        [
            "cairn:commerce/payments.create-charge",
            "cairn:commerce/shipping.create-label",
            "cairn:commerce/email.send-email"
        ]
    );
    // The first import is the state read that finds no order; state writes record each status.
    assert_eq!(journal[0]["kind"], "state");
    assert_eq!(journal[0]["name"], "get");
    let writes = journal
        .iter()
        .filter(|e| e["kind"] == "state" && e["name"] == "set")
        .count();
    assert!(writes >= 3, "pending, paid, confirmed: {journal:?}");

    // The provider's own HTTP exchange is shown under its entry, with the secret as a placeholder.
    let charge = journal
        .iter()
        .find(|e| e["name"] == "cairn:commerce/payments.create-charge")
        .unwrap();
    let exchange = &charge["detail"]["effect"]["exchanges"][0];
    assert!(
        exchange["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/v1/charges")
    );
    let text = body.to_string();
    assert!(
        text.contains("{{secret:STRIPE_API_KEY}}"),
        "placeholder shown"
    );
    assert!(
        !text.contains("sk_test_cairn_mock"),
        "the secret never leaves the host"
    );
    assert!(
        charge["detail"]["effect"]["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with(&id)
    );
}

#[tokio::test]
async fn providers_speak_each_api_wire_format_with_the_order_reference() {
    let cairn = Cairn::start().await;
    let reply = cairn
        .process_order("order-wire", &order_input("hal@example.com"))
        .await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);

    let stripe = cairn.requests("stripe").await;
    let charge = stripe
        .iter()
        .find(|r| r["path"] == "/v1/charges")
        .expect("a charge request");
    let body = charge["body"].as_str().unwrap();
    let form: Vec<(String, String)> = serde_urlencoded_pairs(body);
    assert!(
        form.contains(&("metadata[order_id]".into(), "order-wire".into())),
        "{body}"
    );
    assert!(form.contains(&("amount".into(), "5000".into())), "{body}");
    assert!(form.contains(&("currency".into(), "usd".into())), "{body}");
    assert!(
        form.contains(&("source".into(), "tok_visa".into())),
        "{body}"
    );
    let headers = &charge["headers"];
    assert!(headers["idempotency-key"].is_string(), "{headers}");
    assert_eq!(headers["authorization"], "<redacted:Bearer>");

    let sendgrid = cairn.requests("sendgrid").await;
    let mail: Value = serde_json::from_str(sendgrid[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        mail["personalizations"][0]["custom_args"]["order_id"],
        "order-wire"
    );
    assert_eq!(
        mail["personalizations"][0]["to"][0]["email"],
        "hal@example.com"
    );

    let shippo = cairn.requests("shippo").await;
    let label: Value = serde_json::from_str(shippo[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(label["metadata"], "order order-wire");
    assert_eq!(
        shippo[0]["headers"]["authorization"],
        "<redacted:ShippoToken>"
    );
}

fn serde_urlencoded_pairs(body: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

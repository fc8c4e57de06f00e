//! The web console (`/ui` on the admin port, issue 15) in a real browser: Debian's headless
//! Chromium driven through ChromeDriver (WebDriver, `fantoccini`), against a running host with
//! real orders. It logs in with the admin token, lists invocations, shows an order's journal as
//! a timeline with its provider calls' HTTP exchanges (secrets as placeholders), cancels a
//! sleeping invocation with its button and sees it cancelled, and shows deployments and a
//! key's state. Screenshots go to `target/ui-screenshots/`. `scripts/setup --browser` installs
//! Chromium and ChromeDriver.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cairn_e2e::invocations::sleeping;
use cairn_e2e::{ADMIN_TOKEN, Cairn, order_input};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// ChromeDriver on a free port, killed on drop.
struct Driver {
    child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver: run scripts/setup --browser (Debian's chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{url}/status")).await.is_ok() {
                return Driver { child, url };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("chromedriver did not answer on {url}");
    }

    async fn browser(&self) -> Client {
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Saves a screenshot of the page as `target/ui-screenshots/{name}.png`.
async fn screenshot(browser: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element `css` finds once one is there (within 15 s).
async fn text_of(browser: &Client, css: &str) -> String {
    let found = browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await;
    match found {
        Ok(element) => element.text().await.unwrap(),
        Err(e) => {
            let body = browser.find(Locator::Css("body")).await.unwrap();
            panic!("no {css} ({e}) in:\n{}", body.text().await.unwrap());
        }
    }
}

/// Waits until the page's body text contains `wanted`.
async fn until_text(browser: &Client, wanted: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let text = text_of(browser, "body").await;
        if text.contains(wanted) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {wanted:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_console_shows_orders_their_timelines_and_cancels_a_sleeping_invocation() {
    let cairn = Cairn::start().await;
    let deployed = cairn.deploy_file(test_artifacts::STEPS_SERVICE, None).await;
    assert_eq!(deployed.status, 201, "{:?}", deployed.body);
    // An order whose customer name is markup: the console shows it as text.
    let mut input = order_input("ui@example.com");
    input["customer"]["name"] = json!("<img id=\"xss\" src=\"x\">Eve");
    let reply = cairn.process_order("ui-order", &input).await;
    assert_eq!(reply.body["status"], "confirmed", "{:?}", reply.body);
    let order = reply.invocation_id.clone().unwrap();
    let sleeper = cairn
        .send("/Steps/Run", &json!({"steps": 3, "sleepMs": 60_000}))
        .await;
    cairn.invocation_when(&sleeper, "asleep", sleeping).await;

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&cairn.admin("/ui")).await.unwrap();

    // A wrong token is refused on the page; the right one opens the invocations.
    let token = browser.find(Locator::Id("token")).await.unwrap();
    token.send_keys("not-the-token").await.unwrap();
    browser
        .find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until_text(&browser, "refused").await;
    token.clear().await.unwrap();
    token.send_keys(ADMIN_TOKEN).await.unwrap();
    browser
        .find(Locator::Css("#login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rows = text_of(&browser, &format!("tr[data-id=\"{order}\"]")).await;
    assert!(
        rows.contains("OrderOrchestrator/ui-order/ProcessOrder"),
        "{rows}"
    );
    assert!(rows.contains("succeeded"), "{rows}");
    until_text(&browser, &sleeper).await;
    screenshot(&browser, "invocations").await;

    // The order's journal as a timeline; a provider call opens on its HTTP exchange, with the
    // secret as its placeholder.
    browser
        .goto(&cairn.admin(&format!("/ui#/invocation/{order}")))
        .await
        .unwrap();
    text_of(&browser, "#timeline .entry").await;
    let journal = cairn.admin_get(&format!("/invocations/{order}")).await.body;
    let entries = browser
        .find_all(Locator::Css("#timeline .entry"))
        .await
        .unwrap();
    assert_eq!(entries.len(), journal["journal"].as_array().unwrap().len());
    let charge = browser
        .find(Locator::Css("#timeline .entry[data-kind=\"call\"]"))
        .await
        .unwrap();
    charge.click().await.unwrap();
    let details = charge.text().await.unwrap();
    assert!(details.contains("HTTP exchange 1: POST"), "{details}");
    assert!(details.contains("{{secret:STRIPE_API_KEY}}"), "{details}");
    assert!(!details.contains("sk_test"), "no secret value: {details}");
    browser
        .find(Locator::Css("details summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let page = until_text(&browser, "<img id=").await;
    assert!(page.contains("Eve"), "{page}");
    assert!(
        browser.find(Locator::Id("xss")).await.is_err(),
        "markup from the journal is shown, never parsed"
    );
    browser
        .execute(
            "document.getElementById('timeline').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "order-timeline").await;

    // Cancel the sleeping invocation with its button: woken, told, cancelled.
    browser
        .goto(&cairn.admin(&format!("/ui#/invocation/{sleeper}")))
        .await
        .unwrap();
    let cancel = browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id("action-cancel"))
        .await
        .unwrap();
    assert!(cancel.is_enabled().await.unwrap());
    cancel.click().await.unwrap();
    let failure = text_of(&browser, "#failure").await;
    assert!(failure.starts_with("cancelled 409"), "{failure}");
    text_of(&browser, "[data-status=\"failed\"]").await;
    assert!(
        !browser
            .find(Locator::Id("action-cancel"))
            .await
            .unwrap()
            .is_enabled()
            .await
            .unwrap()
    );
    let inv = cairn
        .admin_get(&format!("/invocations/{sleeper}"))
        .await
        .body;
    assert_eq!(inv["failure"]["kind"], "cancelled", "{inv}");
    screenshot(&browser, "cancelled").await;

    // Deployments with their limits, and the order's state.
    browser
        .goto(&cairn.admin("/ui#/deployments"))
        .await
        .unwrap();
    let table = text_of(&browser, "#deployments tr:nth-child(2)").await;
    assert!(!table.is_empty());
    let all = until_text(&browser, "OrderOrchestrator").await;
    assert!(all.contains("Steps") && all.contains("MiB"), "{all}");
    screenshot(&browser, "deployments").await;
    browser
        .goto(&cairn.admin("/ui#/state/OrderOrchestrator/ui-order"))
        .await
        .unwrap();
    let state = text_of(&browser, "#state").await;
    assert!(
        state.contains("order") && state.contains("confirmed"),
        "{state}"
    );
    screenshot(&browser, "state").await;
    browser.close().await.unwrap();
}

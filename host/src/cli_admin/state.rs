//! `cairn state SERVICE KEY`: read, set or clear one object key's state entries, with the
//! key's audit of operator edits.

use anyhow::Context as _;
use serde_json::Value;

use super::format::{cut, table, text};
use super::{AdminArgs, call, url};

#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// The keyed object's service, e.g. `OrderOrchestrator`.
    pub service: String,
    /// The object key, e.g. an order id.
    pub key: String,
    /// Sets entry NAME to a JSON value (`--set 'order={"status":"paid"}'`); needs `--reason`.
    /// Refused while an invocation of the key is unfinished.
    #[arg(long, value_name = "NAME=JSON", conflicts_with = "clear")]
    pub set: Option<String>,
    /// Removes entry NAME; needs `--reason`.
    #[arg(long, value_name = "NAME")]
    pub clear: Option<String>,
    /// Why (kept in the key's audit with the value before and after).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `cairn state SERVICE KEY`: the state of one object key, a row per entry.
pub async fn state(args: StateArgs) -> anyhow::Result<()> {
    let path = format!("/state/{}/{}", args.service, args.key);
    let client = args.admin.client()?;
    let reason = || {
        args.reason
            .clone()
            .context("an edit needs --reason: it goes into the key's audit")
    };
    let request = match (&args.set, &args.clear) {
        (Some(set), _) => {
            let (name, value) = set
                .split_once('=')
                .context("--set takes NAME=JSON, e.g. --set 'count=3'")?;
            let value: Value = serde_json::from_str(value)
                .with_context(|| format!("--set {name}: the value is not JSON"))?;
            client
                .put(url(&args.admin, &format!("{path}/{name}")))
                .json(&serde_json::json!({"value": value, "reason": reason()?}))
        }
        (None, Some(name)) => client
            .delete(url(&args.admin, &format!("{path}/{name}")))
            .query(&[("reason", reason()?)]),
        (None, None) => client.get(url(&args.admin, &path)),
    };
    let body = call(request, &args.admin).await?;
    if args.admin.json {
        println!("{body:#}");
        return Ok(());
    }
    let rows = body["state"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| vec![name.clone(), cut(&value.to_string(), 120)])
        .collect();
    print!("{}", table(&["NAME", "VALUE"], rows));
    if body["truncated"] == Value::Bool(true) {
        println!("(more entries than shown)");
    }
    let audit: Vec<Vec<String>> = body["audit"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                text(&a["at"]),
                text(&a["name"]),
                cut(&a["before"].to_string(), 40),
                cut(&a["after"].to_string(), 40),
                cut(&text(&a["reason"]), 60),
            ]
        })
        .collect();
    if !audit.is_empty() {
        println!("\nedits (newest first)");
        print!(
            "{}",
            table(&["AT", "NAME", "BEFORE", "AFTER", "REASON"], audit)
        );
    }
    Ok(())
}

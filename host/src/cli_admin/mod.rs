//! The admin commands of the `cairn` command line: `cairn deploy PATH.wasm`, `cairn deployments`,
//! `cairn undeploy ID`, `cairn invocations`, `cairn invocation ID`, and the controls of one
//! invocation (`cairn cancel|kill|pause|retry|purge ID`, `cairn resume ID [--deployment D]`), and
//! `cairn state SERVICE KEY` ([`state`]). They talk to a running host's admin API (`--admin URL`,
//! `CAIRN_ADMIN_URL`, default `http://127.0.0.1:9070`) and print aligned tables ([`format`];
//! `--json` prints the API's JSON instead).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context as _;
use serde_json::Value;

mod format;
mod state;

use format::{cut, table, text, time};
pub use state::{StateArgs, state};

#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Base URL of the host's admin API.
    #[arg(
        long = "admin",
        env = "CAIRN_ADMIN_URL",
        default_value = "http://127.0.0.1:9070"
    )]
    pub admin: String,
    /// Print the admin API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The host's data dir, whose `admin-token` file holds the token when `CAIRN_ADMIN_TOKEN`
    /// is not set.
    #[arg(long, env = "CAIRN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

impl AdminArgs {
    /// An HTTP client that sends the admin token (`CAIRN_ADMIN_TOKEN`, else the token file).
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) =
            crate::config::read_admin_token(&self.data_dir, std::env::var("CAIRN_ADMIN_TOKEN").ok())
        {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .context("CAIRN_ADMIN_TOKEN: not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }
}

#[derive(clap::Args, Debug)]
pub struct DeployArgs {
    /// The component (`.wasm`): a service or a provider.
    pub path: PathBuf,
    /// Memory cap of each instance, in MiB (default: the host's).
    #[arg(long)]
    pub memory_mib: Option<u64>,
    /// Guest execution time per call, in milliseconds (default: the host's).
    #[arg(long)]
    pub cpu_ms: Option<u64>,
    /// A provider's own configuration, `NAME=VALUE` (repeatable), e.g. `api-base=https://…`.
    /// Any of `--config`, `--allow`, `--secret` replaces the role's settings for this provider.
    #[arg(long = "config", value_name = "NAME=VALUE")]
    pub config: Vec<String>,
    /// An origin the provider may reach, `https://host:port` (repeatable; default: the origin of
    /// `api-base`).
    #[arg(long = "allow", value_name = "ORIGIN")]
    pub allow: Vec<String>,
    /// An origin the provider may reach although it is (or resolves to) a loopback, private or
    /// link-local address, e.g. a fake on `http://127.0.0.1:8090` (repeatable).
    #[arg(long = "allow-private", value_name = "ORIGIN")]
    pub allow_private: Vec<String>,
    /// A host environment variable granted to the provider as `{{secret:NAME}}` (repeatable);
    /// the host reads its value, it is never sent.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// Run a provider deployed without settings with its role's secret (`STRIPE_API_KEY`...),
    /// as the host's bundled components do.
    #[arg(long)]
    pub inherit_secrets: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

impl DeployArgs {
    /// The `X-Cairn-Provider-Settings` header value, when provider settings are given.
    fn provider_settings(&self) -> anyhow::Result<Option<String>> {
        if self.config.is_empty()
            && self.allow.is_empty()
            && self.allow_private.is_empty()
            && self.secrets.is_empty()
            && !self.inherit_secrets
        {
            return Ok(None);
        }
        let mut config = serde_json::Map::new();
        for pair in &self.config {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("--config {pair:?}: expected NAME=VALUE"))?;
            config.insert(name.to_string(), Value::String(value.to_string()));
        }
        let settings = if self.inherit_secrets {
            serde_json::json!({"inheritSecrets": true})
        } else {
            serde_json::json!({
                "config": config,
                "allow": self.allow,
                "allowPrivate": self.allow_private,
                "secrets": self.secrets,
            })
        };
        Ok(Some(settings.to_string()))
    }
}

#[derive(clap::Args, Debug)]
pub struct IdArgs {
    pub id: String,
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    pub id: String,
    /// Run it on this deployment of its service (a fix), instead of the one it was pinned to.
    #[arg(long)]
    pub deployment: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// A control of one invocation, by its admin route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Cancel,
    Kill,
    Pause,
    Retry,
    Purge,
}

#[derive(clap::Args, Debug)]
pub struct InvocationsArgs {
    /// running, paused, succeeded or failed.
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long)]
    pub service: Option<String>,
    /// The object key.
    #[arg(long)]
    pub key: Option<String>,
    /// Created since: a time ago (`15m`, `2h`, `1d`) or an RFC 3339 time
    /// (`2026-12-02T10:00:00Z`).
    #[arg(long, value_parser = point_in_time)]
    pub since: Option<SystemTime>,
    /// Created before: a time ago or an RFC 3339 time, as `--since`.
    #[arg(long, value_parser = point_in_time)]
    pub until: Option<SystemTime>,
    /// Most invocations listed (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// `--since`, `--until`: a duration before now, or a point in time.
fn point_in_time(raw: &str) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(raw) {
        return SystemTime::now()
            .checked_sub(ago)
            .ok_or_else(|| format!("{raw} ago is before the epoch"));
    }
    humantime::parse_rfc3339_weak(raw).map_err(|_| {
        format!(
            "{raw:?}: expected a time ago (15m, 2h, 1d) or an RFC 3339 time (2026-12-02T10:00:00Z)"
        )
    })
}

/// Sends a request to the admin API; the JSON answer, or the API's error as an error.
async fn call(request: reqwest::RequestBuilder, admin: &AdminArgs) -> anyhow::Result<Value> {
    let resp = request
        .send()
        .await
        .with_context(|| format!("cannot reach the admin API at {}", admin.admin))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status == reqwest::StatusCode::UNAUTHORIZED {
        anyhow::bail!(
            "{status}: the admin API wants its token: set CAIRN_ADMIN_TOKEN, or --data-dir / \
             CAIRN_DATA_DIR to the host's data dir (its admin-token file)"
        );
    }
    if !status.is_success() {
        anyhow::bail!(
            "{} ({}): {}",
            status,
            text(&body["error"]),
            text(&body["message"])
        );
    }
    Ok(body)
}

fn url(admin: &AdminArgs, path: &str) -> String {
    format!("{}{path}", admin.admin.trim_end_matches('/'))
}

pub async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.path).with_context(|| format!("reading {}", args.path.display()))?;
    let mut query = Vec::new();
    if let Some(mib) = args.memory_mib {
        query.push(("memoryMib", mib));
    }
    if let Some(ms) = args.cpu_ms {
        query.push(("cpuMs", ms));
    }
    let mut request = args
        .admin
        .client()?
        .post(url(&args.admin, "/deployments"))
        .query(&query)
        .header("content-type", "application/wasm")
        .body(bytes);
    if let Some(settings) = args.provider_settings()? {
        request = request.header(crate::http_api::deployments::SETTINGS_HEADER, settings);
    }
    let body = call(request, &args.admin).await?;
    if args.admin.json {
        println!("{body:#}");
        return Ok(());
    }
    println!(
        "deployed {} {} as {} (active)",
        text(&body["kind"]),
        text(&body["name"]),
        text(&body["id"])
    );
    print!("{}", deployments_table(std::slice::from_ref(&body)));
    Ok(())
}

pub async fn deployments(admin: AdminArgs) -> anyhow::Result<()> {
    let body = call(admin.client()?.get(url(&admin, "/deployments")), &admin).await?;
    if admin.json {
        println!("{body:#}");
        return Ok(());
    }
    let rows = body["deployments"].as_array().cloned().unwrap_or_default();
    print!("{}", deployments_table(&rows));
    Ok(())
}

pub async fn undeploy(args: IdArgs) -> anyhow::Result<()> {
    let path = format!("/deployments/{}", args.id);
    let body = call(
        args.admin.client()?.delete(url(&args.admin, &path)),
        &args.admin,
    )
    .await?;
    if args.admin.json {
        println!("{body:#}");
    } else {
        println!(
            "deleted {} {} {}",
            text(&body["kind"]),
            text(&body["name"]),
            args.id
        );
    }
    Ok(())
}

pub async fn invocations(args: InvocationsArgs) -> anyhow::Result<()> {
    let mut query = vec![("limit", args.limit.to_string())];
    for (name, at) in [("since", args.since), ("until", args.until)] {
        if let Some(at) = at {
            let ms = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            query.push((name, ms.to_string()));
        }
    }
    for (name, value) in [
        ("status", &args.status),
        ("service", &args.service),
        ("key", &args.key),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let request = args
        .admin
        .client()?
        .get(url(&args.admin, "/invocations"))
        .query(&query);
    let body = call(request, &args.admin).await?;
    if args.admin.json {
        println!("{body:#}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = body["invocations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|inv| {
            vec![
                text(&inv["id"]),
                text(&inv["service"]),
                text(&inv["key"]),
                text(&inv["handler"]),
                text(&inv["status"]),
                text(&inv["attempt"]),
                time(&inv["createdAt"]),
                cut(&text(&inv["failure"]["message"]), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "ID", "SERVICE", "KEY", "HANDLER", "STATUS", "ATTEMPT", "CREATED", "FAILURE"
            ],
            rows
        )
    );
    Ok(())
}

pub async fn invocation(args: IdArgs) -> anyhow::Result<()> {
    let path = format!("/invocations/{}", args.id);
    let inv = call(
        args.admin.client()?.get(url(&args.admin, &path)),
        &args.admin,
    )
    .await?;
    if args.admin.json {
        println!("{inv:#}");
        return Ok(());
    }
    let target = match inv["key"].as_str() {
        Some(key) => format!("{}/{key}/{}", text(&inv["service"]), text(&inv["handler"])),
        None => format!("{}/{}", text(&inv["service"]), text(&inv["handler"])),
    };
    let mut fields = vec![
        ("invocation", text(&inv["id"])),
        ("target", target),
        ("status", text(&inv["status"])),
        ("attempt", text(&inv["attempt"])),
        ("created", time(&inv["createdAt"])),
        ("deployment", text(&inv["deploymentId"])),
    ];
    for (role, id) in inv["providers"].as_object().into_iter().flatten() {
        fields.push(("provider", format!("{role} = {}", text(id))));
    }
    fields.push(("input", cut(&inv["input"].to_string(), 200)));
    if inv["failure"].is_object() {
        let f = &inv["failure"];
        let failure = format!(
            "{} {}: {}",
            text(&f["kind"]),
            text(&f["code"]),
            text(&f["message"])
        );
        fields.push(("failure", failure));
    } else {
        fields.push(("output", cut(&inv["output"].to_string(), 200)));
    }
    for (name, value) in fields {
        println!("{name:<11} {value}");
    }
    let rows: Vec<Vec<String>> = inv["journal"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                text(&e["index"]),
                text(&e["kind"]),
                text(&e["name"]),
                format!(
                    "{:.1}",
                    e["durationUs"].as_f64().unwrap_or_default() / 1000.0
                ),
                cut(&e["result"].to_string(), 80),
            ]
        })
        .collect();
    println!("\njournal ({} entries)", rows.len());
    print!("{}", table(&["#", "KIND", "NAME", "MS", "RESULT"], rows));
    Ok(())
}

/// `cairn cancel|kill|pause|retry|purge ID`.
pub async fn control(args: IdArgs, control: Control) -> anyhow::Result<()> {
    let client = args.admin.client()?;
    let base = format!("/invocations/{}", args.id);
    let action = match control {
        Control::Cancel => "cancel",
        Control::Kill => "kill",
        Control::Pause => "pause",
        Control::Retry => "retry",
        Control::Purge => "",
    };
    let request = match control {
        Control::Purge => client.delete(url(&args.admin, &base)),
        _ => client.post(url(&args.admin, &format!("{base}/{action}"))),
    };
    let body = call(request, &args.admin).await?;
    print_controlled(&body, &args.admin);
    Ok(())
}

/// `cairn resume ID [--deployment D]`.
pub async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let path = format!("/invocations/{}/resume", args.id);
    let request = args
        .admin
        .client()?
        .post(url(&args.admin, &path))
        .json(&serde_json::json!({"deployment": args.deployment}));
    let body = call(request, &args.admin).await?;
    print_controlled(&body, &args.admin);
    Ok(())
}

fn print_controlled(body: &Value, admin: &AdminArgs) {
    if admin.json {
        println!("{body:#}");
        return;
    }
    let status = if body["purged"] == Value::Bool(true) {
        "purged".to_string()
    } else {
        text(&body["status"])
    };
    let row = vec![
        text(&body["id"]),
        status,
        text(&body["attempt"]),
        cut(&text(&body["failure"]["message"]), 80),
    ];
    print!(
        "{}",
        table(&["ID", "STATUS", "ATTEMPT", "FAILURE"], vec![row])
    );
}

fn deployments_table(deployments: &[Value]) -> String {
    let rows = deployments
        .iter()
        .map(|d| {
            let limits = &d["effectiveLimits"];
            vec![
                text(&d["id"]).chars().take(16).collect(),
                text(&d["kind"]),
                text(&d["name"]),
                text(&d["componentName"]),
                text(&d["size"]),
                if d["active"] == Value::Bool(true) {
                    "yes".into()
                } else {
                    "".into()
                },
                format!(
                    "{} MiB, {} ms",
                    text(&limits["memoryMib"]),
                    text(&limits["cpuMs"])
                ),
                time(&d["createdAt"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "KIND",
            "NAME",
            "COMPONENT",
            "BYTES",
            "ACTIVE",
            "LIMITS",
            "CREATED",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_until_take_a_time_ago_or_a_point_in_time() {
        let ago = SystemTime::now()
            .duration_since(point_in_time("15m").unwrap())
            .unwrap();
        assert!((899..=905).contains(&ago.as_secs()), "{ago:?}");
        let at = point_in_time("2025-11-25T16:45:01Z").unwrap();
        let ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert_eq!(ms, 1_764_089_101_000);
        assert!(point_in_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}

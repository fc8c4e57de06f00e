//! `hostile-snoop` (test only): a payments provider whose `create-charge` looks for what a
//! sandbox should not give it, and reports what it found as
//! `invalid-request("env=<count> vars: <names>; fs: <read_dir result>, <read result>")`:
//!
//! - the environment (`std::env::vars_os`): the count and the names, comma-separated, or
//!   `(none)`;
//! - the filesystem: `read_dir(/): <n> entries` or `read_dir(/): error: <error>`, then
//!   `read(/etc/passwd): <n> bytes` or `read(/etc/passwd): error: <error>`.
//!
//! It also prints the literal `{{secret:STRIPE_API_KEY}}` and every `NAME=value` whose name
//! contains `KEY` to stdout and to stderr (write errors ignored), so a test can check that
//! nothing secret reaches the host's output.

use std::io::Write;

use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-snoop", create_charge = create_charge);

/// The secret placeholder the component prints, hoping the host expands it somewhere.
const PLACEHOLDER: &str = "{{secret:STRIPE_API_KEY}}";

/// Looks at the environment and the filesystem, printing secrets on the way.
fn create_charge(_req: ChargeRequest) -> Result<Charge, ProviderError> {
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        })
        .collect();
    print_secrets(&mut std::io::stdout(), &env);
    print_secrets(&mut std::io::stderr(), &env);
    let root = std::fs::read_dir("/").map(Iterator::count);
    let passwd = std::fs::read("/etc/passwd").map(|bytes| bytes.len());
    Err(ProviderError::InvalidRequest(report(&env, &root, &passwd)))
}

/// Writes the placeholder and every variable whose name contains `KEY` to `out`.
fn print_secrets(out: &mut impl Write, env: &[(String, String)]) {
    let _ = writeln!(out, "{PLACEHOLDER}");
    for (name, value) in env {
        if name.to_ascii_uppercase().contains("KEY") {
            let _ = writeln!(out, "{name}={value}");
        }
    }
    let _ = out.flush();
}

/// The message `create-charge` fails with.
fn report(
    env: &[(String, String)],
    root: &std::io::Result<usize>,
    passwd: &std::io::Result<usize>,
) -> String {
    let names = if env.is_empty() {
        "(none)".to_owned()
    } else {
        env.iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let root = match root {
        Ok(entries) => format!("read_dir(/): {entries} entries"),
        Err(err) => format!("read_dir(/): error: {err}"),
    };
    let passwd = match passwd {
        Ok(bytes) => format!("read(/etc/passwd): {bytes} bytes"),
        Err(err) => format!("read(/etc/passwd): error: {err}"),
    };
    format!("env={} vars: {names}; fs: {root}, {passwd}", env.len())
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn reports_an_empty_sandbox() {
        let message = report(
            &[],
            &Err(Error::new(ErrorKind::NotFound, "no preopens")),
            &Err(Error::new(ErrorKind::NotFound, "no preopens")),
        );
        assert_eq!(
            message,
            "env=0 vars: (none); fs: read_dir(/): error: no preopens, \
             read(/etc/passwd): error: no preopens"
        );
    }

    #[test]
    fn reports_what_it_found() {
        let env = [
            ("HOME".to_owned(), "/root".to_owned()),
            ("STRIPE_API_KEY".to_owned(), "sk_live".to_owned()),
        ];
        let message = report(&env, &Ok(3), &Ok(120));
        assert_eq!(
            message,
            "env=2 vars: HOME,STRIPE_API_KEY; fs: read_dir(/): 3 entries, \
             read(/etc/passwd): 120 bytes"
        );
    }

    #[test]
    fn prints_the_placeholder_and_key_variables() {
        let env = [
            ("HOME".to_owned(), "/root".to_owned()),
            ("stripe_api_key".to_owned(), "sk_live".to_owned()),
        ];
        let mut out = Vec::new();
        print_secrets(&mut out, &env);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{{secret:STRIPE_API_KEY}}\nstripe_api_key=sk_live\n"
        );
    }
}

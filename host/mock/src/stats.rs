//! Effect counters of the fake (`GET /_mock/stats`): charges per order and per idempotency key,
//! refunds per charge, labels and emails per order, requests per provider, idempotent replays.
//! Tests count effects here instead of trusting what the host says it did.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::Provider;

/// The whole `GET /_mock/stats` document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub charges: ChargeStats,
    pub refunds: RefundStats,
    pub labels: EffectStats,
    pub emails: EffectStats,
    pub requests: RequestStats,
    /// Responses sent with `Idempotent-Replayed: true`.
    pub replays: u64,
    /// Labels voided (Shippo refunds), by order.
    #[serde(default)]
    pub label_refunds: EffectStats,
    /// Webhook deliveries made (redeliveries included, forged ones not).
    #[serde(default)]
    pub webhooks_sent: u64,
}

/// Charge attempts that reached the effect stage (past auth, idempotency and validation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeStats {
    /// `succeeded + declined`.
    pub total: u64,
    pub succeeded: u64,
    pub declined: u64,
    /// `metadata[order_id]` → number of **successful** charges for that order.
    pub by_order: BTreeMap<String, u64>,
    /// `Idempotency-Key` → number of charge objects (succeeded or failed) created under it.
    pub by_idempotency_key: BTreeMap<String, u64>,
}

/// Refunds created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundStats {
    pub total: u64,
    /// Charge id → number of refunds created against it.
    pub by_charge: BTreeMap<String, u64>,
}

/// Labels bought or emails accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectStats {
    pub total: u64,
    /// Order id → number of effects carrying it.
    pub by_order: BTreeMap<String, u64>,
}

/// Requests received per provider (every request, including rejected and faulted ones).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestStats {
    pub stripe: u64,
    pub sendgrid: u64,
    pub shippo: u64,
    #[serde(default)]
    pub adyen: u64,
}

impl RequestStats {
    pub(crate) fn bump(&mut self, provider: Provider) {
        match provider {
            Provider::Stripe => self.stripe += 1,
            Provider::Sendgrid => self.sendgrid += 1,
            Provider::Shippo => self.shippo += 1,
            Provider::Adyen => self.adyen += 1,
        }
    }
}

impl Stats {
    /// A charge object was created (succeeded when `succeeded`, otherwise declined).
    pub(crate) fn charge(
        &mut self,
        succeeded: bool,
        order_id: Option<&str>,
        idempotency_key: Option<&str>,
    ) {
        self.charges.total += 1;
        if succeeded {
            self.charges.succeeded += 1;
            if let Some(order) = order_id {
                *self.charges.by_order.entry(order.to_string()).or_default() += 1;
            }
        } else {
            self.charges.declined += 1;
        }
        if let Some(key) = idempotency_key {
            *self
                .charges
                .by_idempotency_key
                .entry(key.to_string())
                .or_default() += 1;
        }
    }

    pub(crate) fn refund(&mut self, charge_id: &str) {
        self.refunds.total += 1;
        *self
            .refunds
            .by_charge
            .entry(charge_id.to_string())
            .or_default() += 1;
    }

    pub(crate) fn label(&mut self, order_id: Option<&str>) {
        EffectStats::bump(&mut self.labels, order_id.into_iter());
    }

    pub(crate) fn label_refund(&mut self, order_id: Option<&str>) {
        EffectStats::bump(&mut self.label_refunds, order_id.into_iter());
    }

    /// One accepted message; `order_ids` are the distinct orders its personalizations carry.
    pub(crate) fn email<'a>(&mut self, order_ids: impl Iterator<Item = &'a str>) {
        EffectStats::bump(&mut self.emails, order_ids);
    }
}

impl EffectStats {
    fn bump<'a>(&mut self, order_ids: impl Iterator<Item = &'a str>) {
        self.total += 1;
        for order in order_ids {
            *self.by_order.entry(order.to_string()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_to_the_documented_shape() {
        let mut stats = Stats::default();
        stats.charge(true, Some("A-1"), Some("k1"));
        stats.charge(false, Some("A-2"), Some("k2"));
        stats.charge(true, None, None);
        stats.refund("ch_1");
        stats.label(Some("A-1"));
        stats.email(["A-1", "A-3"].into_iter());
        stats.requests.bump(Provider::Shippo);
        stats.replays = 2;
        stats.label_refund(Some("A-1"));
        stats.webhooks_sent = 4;
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "charges": {"total": 3, "succeeded": 2, "declined": 1,
                            "by_order": {"A-1": 1},
                            "by_idempotency_key": {"k1": 1, "k2": 1}},
                "refunds": {"total": 1, "by_charge": {"ch_1": 1}},
                "labels": {"total": 1, "by_order": {"A-1": 1}},
                "emails": {"total": 1, "by_order": {"A-1": 1, "A-3": 1}},
                "requests": {"stripe": 0, "sendgrid": 0, "shippo": 1, "adyen": 0},
                "replays": 2,
                "label_refunds": {"total": 1, "by_order": {"A-1": 1}},
                "webhooks_sent": 4
            })
        );
        let back: Stats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);
    }
}

use cairn_sdk::{Failure, ObjectContext, SharedContext, StepError};
use serde::{Deserialize, Serialize};

mod bindings {
    cairn_sdk::generate!({ path: "../../../wit", import: "cairn:commerce/payments@0.1.0" });
}
use bindings::cairn::commerce::{payments, types::ChargeRequest};

#[derive(Deserialize)]
struct Pay {
    cents: u64,
    email: String,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    charge: String,
    number: u64,
}

struct Basket;

#[cairn_sdk::object(rename_all = "PascalCase")]
impl Basket {
    fn pay(ctx: &ObjectContext, pay: Pay) -> Result<Receipt, Failure> {
        let charge = payments::create_charge(&ChargeRequest {
            amount: pay.cents,
            currency: "usd".into(),
            payment_method: None,
            description: format!("Basket {}", ctx.key()),
            order_id: ctx.key().into(),
            customer_email: Some(pay.email),
        })
        .map_err(|e| Failure::terminal(402, format!("{e:?}")))?;
        let number = ctx.run("number", || Ok::<_, StepError<Failure>>(now_ms()))?;
        let receipt = Receipt {
            charge: charge.id,
            number,
        };
        ctx.set("receipt", &receipt)?;
        Ok(receipt)
    }

    #[shared]
    fn receipt(ctx: &SharedContext) -> Result<Option<Receipt>, Failure> {
        Ok(ctx.get("receipt")?)
    }
}

/// Not deterministic: a step records it once.
fn now_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

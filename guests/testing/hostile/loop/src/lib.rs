//! `hostile-loop` (test only): a payments provider whose `create-charge` never returns. It
//! spins on a counter the optimizer cannot see through, calling nothing, so only the host's
//! CPU limit (epoch or fuel interruption) can end the call.

use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-loop", create_charge = create_charge);

/// Spins forever.
fn create_charge(_req: ChargeRequest) -> Result<Charge, ProviderError> {
    let mut spins = 0_u64;
    loop {
        spins = core::hint::black_box(spins.wrapping_add(1));
    }
}

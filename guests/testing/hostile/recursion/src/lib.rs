//! `hostile-recursion` (test only): a payments provider whose `create-charge` recurses without
//! bound. Each frame keeps a small array alive across the recursive call and uses the call's
//! result, so the recursion cannot become a loop (no tail call); only a stack limit can end the
//! call, with a trap.

use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-recursion", create_charge = create_charge);

/// Descends until the stack runs out.
fn create_charge(_req: ChargeRequest) -> Result<Charge, ProviderError> {
    let depth = descend(0);
    Err(ProviderError::Unavailable(format!(
        "hostile-recursion returned from depth {depth}"
    )))
}

/// Calls itself forever; every frame holds a 64-byte array that the optimizer must keep.
#[inline(never)]
#[expect(
    unconditional_recursion,
    reason = "this component exists to exhaust the stack"
)]
fn descend(depth: u64) -> u64 {
    let mut frame = [0_u8; 64];
    frame[0] = depth.to_le_bytes()[0];
    let frame = core::hint::black_box(frame);
    let below = descend(depth.wrapping_add(1));
    core::hint::black_box(&frame);
    below ^ u64::from(frame[0])
}

//! `hostile-memory` (test only): a payments provider whose `create-charge` allocates memory
//! without bound: 1 MiB buffers filled with non-zero bytes (so every page is touched), kept
//! forever. Only the host's memory limit can end the call (the allocation fails and the guest
//! traps).

use hostile_common::{Charge, ChargeRequest, ProviderError};

hostile_common::payments_provider!(name = "hostile-memory", create_charge = create_charge);

/// The size of each buffer.
const CHUNK: usize = 1 << 20;

/// Hoards buffers forever.
fn create_charge(_req: ChargeRequest) -> Result<Charge, ProviderError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![0xA5; CHUNK]);
        core::hint::black_box(&hoard);
    }
}

use cairn_sdk::{Failure, SharedContext};

struct Counter;

#[cairn_sdk::object]
impl Counter {
    #[shared]
    fn reset(ctx: &SharedContext) -> Result<(), Failure> {
        ctx.set("total", &0)?;
        Ok(())
    }
}

fn main() {}

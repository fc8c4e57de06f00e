use cairn_sdk::{Failure, ObjectContext};

struct Counter;

#[cairn_sdk::object]
impl Counter {
    #[shared]
    fn get(ctx: &ObjectContext) -> Result<u32, Failure> {
        Ok(ctx.get::<u32>("total")?.unwrap_or(0))
    }
}

fn main() {}

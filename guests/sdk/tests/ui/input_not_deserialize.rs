use cairn_sdk::{Failure, ObjectContext};

struct Delta {
    by: i64,
}

struct Counter;

#[cairn_sdk::object]
impl Counter {
    fn add(_ctx: &ObjectContext, delta: Delta) -> Result<i64, Failure> {
        Ok(delta.by)
    }
}

fn main() {}

use cairn_sdk::{Failure, ObjectContext};

struct Counter;

#[cairn_sdk::object]
impl Counter {
    #[handler(name = "Add")]
    fn add(_ctx: &ObjectContext) -> Result<(), Failure> {
        Ok(())
    }

    #[handler(name = "Add")]
    fn add_twice(_ctx: &ObjectContext) -> Result<(), Failure> {
        Ok(())
    }
}

fn main() {}

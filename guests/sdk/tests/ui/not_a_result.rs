use cairn_sdk::{Context, Failure};

struct Clock;

#[cairn_sdk::service]
impl Clock {
    fn now(_ctx: &Context) -> u64 {
        let _ = Failure::bad_request("unused");
        0
    }
}

fn main() {}

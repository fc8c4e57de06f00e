use cairn_sdk::{Context, Failure};

struct Mailer;

#[cairn_sdk::service]
impl Mailer {
    fn count(ctx: &Context) -> Result<u32, Failure> {
        Ok(ctx.get::<u32>("sent")?.unwrap_or(0))
    }
}

fn main() {}

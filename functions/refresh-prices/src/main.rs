use lambda_runtime::{service_fn, Error};
use refresh_prices::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = refresh_prices::from_env().await?;
    lambda_runtime::run(service_fn(|ev| handle(ev, &deps))).await
}

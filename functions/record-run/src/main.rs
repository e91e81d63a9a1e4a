use lambda_runtime::{service_fn, Error};
use record_run::handler::handle;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = record_run::from_env().await?;
    lambda_runtime::run(service_fn(|ev| handle(ev, &deps))).await
}

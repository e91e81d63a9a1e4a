use job_events::handler::handle;
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = job_events::from_env().await?;
    lambda_runtime::run(service_fn(|ev| handle(ev, &deps))).await
}

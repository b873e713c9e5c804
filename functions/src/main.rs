//! One bootstrap binary for every API function: SAM gives each function its own handler
//! name (`_HANDLER`), role and scaling; this binary serves the action that name selects.
//! Configuration and AWS clients are built once here, at cold start.

use lambda_http::{service_fn, Error, Request};
use studios_shared::http::{handle, Action};
use studios_shared::{App, Config};

#[tokio::main]
async fn main() -> Result<(), Error> {
    studios_shared::telemetry::init();
    let handler = std::env::var("_HANDLER").unwrap_or_default();
    let action = Action::from_handler(&handler)
        .ok_or_else(|| format!("unknown handler '{handler}' (set by the function's Handler)"))?;
    let config = Config::from_env()?;
    let app = App::from_env(config).await;
    let app = &app;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, std::convert::Infallible>(handle(app, action, req).await)
    }))
    .await
}

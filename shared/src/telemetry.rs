//! JSON logs; lambda_runtime opens a span per invocation carrying the request id, and
//! the formatter includes the current span, so every line carries it.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        // Lambda captures both streams; locally, stdout stays for what users read.
        .with_writer(std::io::stderr)
        .try_init();
}

//! Logs and traces as every example has them: logs on stderr (`RUST_LOG`, or `info` with the
//! audit trail), and with `OTEL_TRACES_EXPORTER=console` the gatekeeper's OpenTelemetry spans
//! (each authentication and tool call; Cargo feature `otel`) printed on stdout as they end.
//! A real deployment installs its own exporter (OTLP, ...) the same way.
//!
//! Not an example on its own: the examples include it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{
    Layer as _, filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

/// Flushes the spans still buffered when the example ends.
pub(crate) struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the logs and, as `OTEL_TRACES_EXPORTER` says (`console` or `none`, the
/// OpenTelemetry names), the spans.
pub(crate) fn init() -> Result<Telemetry, String> {
    let logs = tracing_subscriber::fmt::layer().with_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "info,mcp_gatekeeper::audit=info".into()),
    );
    let exporter = std::env::var("OTEL_TRACES_EXPORTER").unwrap_or_default();
    let provider = match exporter.as_str() {
        "" | "none" => None,
        "console" => Some(
            SdkTracerProvider::builder()
                .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
                .build(),
        ),
        other => {
            return Err(format!(
                "OTEL_TRACES_EXPORTER={other}: the examples know `console` and `none`"
            ));
        }
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("mcp-gatekeeper-example"))
            .with_filter(Targets::new().with_target(
                mcp_gatekeeper::otel::TARGET,
                tracing_subscriber::filter::LevelFilter::INFO,
            ))
    });
    tracing_subscriber::registry().with(logs).with(spans).init();
    Ok(Telemetry(provider))
}

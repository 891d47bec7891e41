//! A tonic server and client traced by `GrpcServerLayer` and
//! `GrpcClientLayer`: `rpc.*` attributes, the gRPC status on the spans, and
//! one trace across the call (context in the call metadata).
//!
//! ```text
//! cargo run -p examples --bin grpc
//! ```
//!
//! The service is the demo's `shop.auth.Auth/Verify`; an expired token shows
//! an UNAUTHENTICATED call (an error on the client span only).

use otel_integrations::grpc::{GrpcClient, GrpcClientLayer};
use std::time::Duration;
use tower_layer::Layer;

/// Logs in with `token`: the client span of the call is this span's child.
#[tracing::instrument(skip(traced))]
async fn login(
    traced: GrpcClient<tonic::transport::Channel>,
    token: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut client = tonic::client::Grpc::new(traced);
    client.ready().await?;
    let reply = client
        .unary(
            tonic::Request::new(examples::shop::VerifyRequest {
                token: token.to_owned(),
            }),
            http::uri::PathAndQuery::from_static("/shop.auth.Auth/Verify"),
            tonic_prost::ProstCodec::<examples::shop::VerifyRequest, examples::shop::VerifyReply>::default(),
        )
        .await;
    Ok(match reply {
        Ok(r) => format!("verified as {}", r.into_inner().user),
        Err(status) => format!("{:?} {}", status.code(), status.message()),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = otel_core::Telemetry::from_env()
        .with_service_name("grpc-example")
        // Print the spans (and export nothing else) for this example.
        .without_exporter()
        .with_console_exporter()
        .init()?;
    let provider = telemetry
        .provider()
        .cloned()
        .ok_or("telemetry is disabled (OTEL_SDK_DISABLED)")?;
    let addr = examples::shop::start_auth(&provider).await?;

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let traced = GrpcClientLayer::new().layer(channel);
    for token in ["user-ada", "expired-1"] {
        println!("{token}: {}", login(traced.clone(), token).await?);
    }
    telemetry.shutdown(Duration::from_secs(5))?;
    Ok(())
}

//! The W3C Trace Context test-harness service, built only on our propagators.
//!
//! `cargo run -p examples --bin w3c-service` (listens on 127.0.0.1:$PORT, default 5000)
//!
//! The harness POSTs `[{"url": "...", "arguments": [...]}, ...]` to `/test`; for each
//! element, in order, the service POSTs the JSON of `arguments` to `url`, carrying
//! `traceparent`, `tracestate` and `baggage` from a new child span of the incoming
//! context, and answers once every callback has completed. With `PORT=0` it picks a
//! free port; the first line it prints is always `listening on ADDR`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let port = match std::env::var("PORT") {
        Ok(p) => match p.parse::<u16>() {
            Ok(p) => p,
            Err(_) => {
                eprintln!("PORT={p:?} is not a port number (0-65535)");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => 5000,
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => {
            eprintln!("cannot read the bound address: {e}");
            return ExitCode::FAILURE;
        }
    }
    examples::w3c::serve(listener).await;
    ExitCode::SUCCESS
}

//! The receivers' decompression of one request (400 realistic spans, as the
//! load generator sends them), paired: the collector's whole-buffer path
//! (libdeflate for a single gzip member, zstd's one-call decoder when the
//! frame states its size) beside the streaming decoders tonic's gRPC server
//! runs (flate2's `GzDecoder` / zstd's stream copied into a `BytesMut`
//! reserved at twice the compressed size, then the exact-size copy the
//! handler made so spans do not hold tonic's read buffer).
//!
//! `cargo bench -p benches --bench intake`

use benches::loadgen::Template;
use benches::paired::{PairedGroup, PairedRow, print_paired};
use bytes::{BufMut as _, Bytes, BytesMut};
use criterion::Criterion;
use otel_collector::sidecar::decompress::{Encoding, decompress};
use std::hint::black_box;
use std::io::Write as _;

const MAX: usize = 4 << 20;

/// The streaming path: the decoder copied into a `BytesMut`, then into a buffer of exactly the message.
fn streamed(reader: impl std::io::Read, compressed: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(compressed * 2);
    let mut writer = (&mut out).writer();
    let mut reader = reader;
    std::io::copy(&mut reader, &mut writer).expect("valid input");
    Bytes::copy_from_slice(&out)
}

fn intake(c: &mut Criterion) {
    let request = Template::new(50).with_ids(1).to_vec();
    let gzip = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(&request).expect("in memory");
        e.finish().expect("in memory")
    };
    let zstd = zstd::bulk::compress(&request, 3).expect("in memory");
    assert_eq!(
        decompress(Encoding::Gzip, gzip.clone(), MAX).ok().as_deref(),
        Some(&request[..])
    );
    assert_eq!(streamed(flate2::read::GzDecoder::new(&gzip[..]), gzip.len()), request);
    println!(
        "request: {} bytes, {} gzip (level 6), {} zstd (level 3)",
        request.len(),
        gzip.len(),
        zstd.len()
    );
    let mut g = PairedGroup::new(c, "intake");
    g.bench(
        "gunzip",
        || {
            black_box(
                decompress(Encoding::Gzip, black_box(gzip.clone()), MAX)
                    .map(|b| b.len())
                    .ok(),
            );
        },
        || {
            black_box(streamed(flate2::read::GzDecoder::new(black_box(&gzip[..])), gzip.len()).len());
        },
    );
    g.bench(
        "unzstd",
        || {
            black_box(
                decompress(Encoding::Zstd, black_box(zstd.clone()), MAX)
                    .map(|b| b.len())
                    .ok(),
            );
        },
        || {
            let decoder = zstd::stream::read::Decoder::new(black_box(&zstd[..])).expect("valid input");
            black_box(streamed(decoder, zstd.len()).len());
        },
    );
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    intake(&mut c);
    c.final_summary();
    print_paired(
        "receiving a compressed 400-span request: ours / tonic's streaming decode + copy",
        &[
            PairedRow {
                label: "gzip",
                id: "intake/gunzip",
                target: None,
            },
            PairedRow {
                label: "zstd",
                id: "intake/unzstd",
                target: None,
            },
        ],
        ["", ""],
    );
}

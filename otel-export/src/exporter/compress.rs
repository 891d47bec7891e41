//! Request body compression, whole buffers at a time: gzip with libdeflate
//! (byte-for-byte a gzip stream any reader takes, built faster than a
//! streaming deflate at the same level), zstd with the zstd library.
//!
//! Levels default as the Go Collector's: gzip at 6 (`zlib.DefaultCompression`
//! in `configcompression`; the gRPC exporter's `grpc/encoding/gzip` uses
//! `gzip.DefaultCompression`, which is level 6), zstd at 3 (the zstd
//! library's default).

use super::Compression;
use std::cell::RefCell;

/// The gzip level when none is set.
pub const DEFAULT_GZIP_LEVEL: i32 = 6;
/// The zstd level when none is set.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl Compression {
    /// The levels this compression takes and its default level, as the Go
    /// Collector's; `None` for no compression.
    pub fn levels(self) -> Option<(std::ops::RangeInclusive<i32>, i32)> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some((1..=9, DEFAULT_GZIP_LEVEL)),
            Compression::Zstd => Some((1..=22, DEFAULT_ZSTD_LEVEL)),
            Compression::Snappy => None,
        }
    }
}

/// The levels each compression accepts, for error messages.
pub(crate) fn accepted_levels(compression: Compression) -> String {
    match compression.levels() {
        None => "no level (this compression has none)".to_owned(),
        Some((range, default)) => format!(
            "{} (fastest) to {} (smallest), or -1 for the default ({default})",
            range.start(),
            range.end()
        ),
    }
}

/// `level` for `compression`, checked; `None` or -1 is the default.
pub(crate) fn resolve_level(compression: Compression, level: Option<i32>) -> Option<i32> {
    match (compression.levels(), level) {
        (None, None | Some(-1)) => Some(0),
        (None, Some(_)) => None,
        (Some((_, default)), None | Some(-1)) => Some(default),
        (Some((range, _)), Some(l)) => range.contains(&l).then_some(l),
    }
}

thread_local! {
    /// One libdeflate compressor per thread and level (its state is a few
    /// hundred KiB; building it per request would cost more than small
    /// requests take to compress).
    static GZIP: RefCell<Option<(i32, libdeflater::Compressor)>> = const { RefCell::new(None) };
    /// Where gzip and zstd write before the result is copied out at its own
    /// size. The compression bound is more than the input's size; a fresh
    /// buffer that large per request cost page faults (the kernel zeroing
    /// every page touched) and a shrinking copy after.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer larger than this is not kept after use.
const SCRATCH_KEPT: usize = 32 << 20;

/// Runs `write` on this thread's scratch buffer of `bound` bytes and returns
/// the `n` bytes it says it wrote, after `prefix` zero bytes, in a buffer of
/// exactly that size.
fn via_scratch(
    prefix: usize,
    bound: usize,
    write: impl FnOnce(&mut [u8]) -> Result<usize, String>,
) -> Result<Vec<u8>, String> {
    SCRATCH.with(|cell| {
        let mut scratch = cell.borrow_mut();
        if scratch.len() < bound {
            scratch.resize(bound, 0);
        }
        let written = write(&mut scratch[..bound]).map(|n| {
            let mut out = Vec::with_capacity(prefix + n);
            out.resize(prefix, 0);
            out.extend_from_slice(&scratch[..n]);
            out
        });
        if scratch.len() > SCRATCH_KEPT {
            *scratch = Vec::new();
        }
        written
    })
}

/// Compresses `raw` into a new buffer that starts with `prefix` zero bytes
/// (room for a gRPC frame header), then the compressed bytes.
pub(crate) fn compress(compression: Compression, level: i32, raw: &[u8], prefix: usize) -> Result<Vec<u8>, String> {
    match compression {
        Compression::None => {
            let mut out = Vec::with_capacity(prefix + raw.len());
            out.resize(prefix, 0);
            out.extend_from_slice(raw);
            Ok(out)
        }
        Compression::Gzip => GZIP.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(l, _)| *l != level) {
                let lvl = libdeflater::CompressionLvl::new(level).map_err(|e| format!("gzip level {level}: {e:?}"))?;
                *cell = Some((level, libdeflater::Compressor::new(lvl)));
            }
            let Some((_, compressor)) = cell.as_mut() else {
                return Err("gzip compressor missing".to_owned());
            };
            let bound = compressor.gzip_compress_bound(raw.len());
            via_scratch(prefix, bound, |out| {
                compressor
                    .gzip_compress(raw, out)
                    .map_err(|e| format!("gzip failed: {e:?}"))
            })
        }),
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let bound = zstd::zstd_safe::compress_bound(raw.len());
            via_scratch(prefix, bound, |out| {
                zstd::bulk::compress_to_buffer(raw, out, level).map_err(|e| format!("zstd failed: {e}"))
            })
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => Err("zstd compression needs otel-export's `zstd` feature".to_owned()),
        #[cfg(feature = "snappy")]
        Compression::Snappy => {
            use std::io::Write as _;
            let mut out = Vec::with_capacity(prefix + snap::raw::max_compress_len(raw.len()) + raw.len() / 8 + 64);
            out.resize(prefix, 0);
            let mut w = snap::write::FrameEncoder::new(out);
            w.write_all(raw).map_err(|e| format!("snappy failed: {e}"))?;
            let mut out = w.into_inner().map_err(|e| format!("snappy failed: {e}"))?;
            fit(&mut out);
            Ok(out)
        }
        #[cfg(not(feature = "snappy"))]
        Compression::Snappy => Err("snappy compression needs otel-export's `snappy` feature".to_owned()),
    }
}

/// Gives back the room the compression bound reserved: the body may wait in
/// a queue or for retries, and should hold only its own bytes meanwhile.
fn fit(out: &mut Vec<u8>) {
    if out.capacity() > out.len() + out.len() / 4 + 4096 {
        out.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read as _;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn snappy_is_framed_and_round_trips() {
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let out = compress(Compression::Snappy, 0, &data, 5).unwrap();
        assert!(out[5..].starts_with(b"\xff\x06\x00\x00sNaPpY"));
        let mut back = Vec::new();
        snap::read::FrameDecoder::new(&out[5..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(resolve_level(Compression::Snappy, None), Some(0));
        assert_eq!(resolve_level(Compression::Snappy, Some(3)), None);
    }

    #[test]
    fn a_small_request_after_a_large_one_holds_only_its_own_bytes() {
        // The scratch buffer is kept between calls on a thread: what a
        // later, smaller request returns is its own output alone.
        let large: Vec<u8> = (0..400_000u32).flat_map(|i| (i * 7919).to_le_bytes()).collect();
        let small = b"a small request, compressed after a large one".repeat(3);
        for compression in [Compression::Gzip, Compression::Zstd] {
            let level = resolve_level(compression, None).unwrap();
            let big = compress(compression, level, &large, 5).unwrap();
            let out = compress(compression, level, &small, 5).unwrap();
            assert!(out.len() < big.len() / 100, "{compression:?}");
            assert_eq!(out.capacity(), out.len(), "{compression:?}");
            assert_eq!(&out[..5], &[0; 5]);
            let back = match compression {
                Compression::Gzip => {
                    let mut d = flate2::read::GzDecoder::new(&out[5..]);
                    let mut back = Vec::new();
                    d.read_to_end(&mut back).unwrap();
                    // Nothing after the gzip member.
                    let mut rest = Vec::new();
                    d.into_inner().read_to_end(&mut rest).unwrap();
                    assert!(rest.is_empty());
                    back
                }
                _ => zstd::bulk::decompress(&out[5..], small.len()).unwrap(),
            };
            assert_eq!(back, small);
        }
    }

    #[test]
    fn levels_default_as_go_and_are_checked() {
        assert_eq!(resolve_level(Compression::Gzip, None), Some(6));
        assert_eq!(resolve_level(Compression::Gzip, Some(-1)), Some(6));
        assert_eq!(resolve_level(Compression::Gzip, Some(1)), Some(1));
        assert_eq!(resolve_level(Compression::Gzip, Some(10)), None);
        assert_eq!(resolve_level(Compression::Gzip, Some(0)), None);
        assert_eq!(resolve_level(Compression::Zstd, None), Some(3));
        assert_eq!(resolve_level(Compression::Zstd, Some(19)), Some(19));
        assert_eq!(resolve_level(Compression::None, Some(5)), None);
    }

    proptest! {
        #[test]
        fn gzip_round_trips_through_a_standard_reader(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            level in 1i32..=9,
            prefix in 0usize..8,
        ) {
            let out = compress(Compression::Gzip, level, &data, prefix).unwrap();
            prop_assert!(out[..prefix].iter().all(|b| *b == 0));
            prop_assert_eq!(gunzip(&out[prefix..]), data);
        }

        #[test]
        fn zstd_round_trips(data in proptest::collection::vec(any::<u8>(), 0..20_000), level in 1i32..=9) {
            let out = compress(Compression::Zstd, level, &data, 5).unwrap();
            prop_assert_eq!(zstd::bulk::decompress(&out[5..], data.len() + 1).unwrap(), data);
        }
    }
}

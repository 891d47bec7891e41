//! Request bodies as the receivers read them (public for the benches only): gzip, zstd and snappy, as the
//! Go Collector accepts them on both transports, decompressed whole and never
//! past a size limit.
//!
//! A request is one buffer, so gzip goes through libdeflate in one call
//! when the body is a single member (what every OTLP client sends); bodies
//! of several members (`cat a.gz b.gz`) and anything libdeflate refuses take
//! the streaming decoder, which gives the precise error.

use std::cell::RefCell;
use std::io::Read as _;

/// A body encoding both receivers take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// gzip, one member or several.
    Gzip,
    /// zstd, one frame or several.
    Zstd,
    /// snappy, framed or one block.
    Snappy,
}

/// The names a client may send, as `grpc-accept-encoding` lists them.
pub const ACCEPTED: &str = "gzip,zstd,snappy";

impl Encoding {
    /// The encoding named by `Content-Encoding` / `grpc-encoding` (already
    /// trimmed and lower-cased), or `None` when it is not one we read.
    pub(crate) fn from_name(name: &str) -> Option<Encoding> {
        Some(match name {
            "" | "identity" => Encoding::Identity,
            "gzip" | "x-gzip" => Encoding::Gzip,
            "zstd" => Encoding::Zstd,
            // Framed or block, as the Go Collector reads `snappy`.
            "snappy" | "x-snappy-framed" => Encoding::Snappy,
            _ => return None,
        })
    }
}

/// Why a body could not be decompressed.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Over the limit once decompressed.
    TooLarge(usize),
    /// Not valid data of its encoding.
    Broken(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::TooLarge(max) => write!(f, "the decompressed body is larger than {max} bytes"),
            Error::Broken(e) => write!(f, "cannot decompress the body: {e}"),
        }
    }
}

/// `raw` decompressed (at most `max` bytes); `Identity` leaves it as it is.
pub fn decompress(encoding: Encoding, raw: Vec<u8>, max: usize) -> Result<Vec<u8>, Error> {
    match encoding {
        Encoding::Identity if raw.len() > max => Err(Error::TooLarge(max)),
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => gunzip(&raw, max),
        Encoding::Zstd => unzstd(&raw, max),
        Encoding::Snappy => unsnappy(&raw, max),
    }
}

/// Reads at most `max` decompressed bytes.
fn bounded_read(mut reader: impl std::io::Read, max: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    (&mut reader)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Error::Broken(e.to_string()))?;
    if out.len() > max {
        return Err(Error::TooLarge(max));
    }
    Ok(out)
}

thread_local! {
    static INFLATER: RefCell<libdeflater::Decompressor> = RefCell::new(libdeflater::Decompressor::new());
}

/// Gunzips every member of `raw` (`cat a.gz b.gz` is one valid gzip body).
pub fn gunzip(raw: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    match gunzip_single_member(raw, max) {
        Some(out) => Ok(out),
        None => bounded_read(flate2::read::MultiGzDecoder::new(raw), max),
    }
}

/// `raw` decompressed in one call when it is one gzip member that ends
/// where `raw` ends; `None` for anything else (the caller streams then).
fn gunzip_single_member(raw: &[u8], max: usize) -> Option<Vec<u8>> {
    const MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];
    let n = raw.len();
    if n < 18 || !raw.starts_with(&MAGIC) {
        return None;
    }
    // Every member starts with the magic: where it never appears again,
    // there is no second member.
    let mut from = 1;
    while let Some(at) = memchr::memchr(MAGIC[0], &raw[from..]) {
        let at = from + at;
        if raw[at..].starts_with(&MAGIC) {
            return None;
        }
        from = at + 1;
    }
    // The trailer: CRC-32 and size (mod 2^32) of the decompressed data.
    let crc = u32::from_le_bytes([raw[n - 8], raw[n - 7], raw[n - 6], raw[n - 5]]);
    let size = u32::from_le_bytes([raw[n - 4], raw[n - 3], raw[n - 2], raw[n - 1]]) as usize;
    if size > max {
        return None;
    }
    let mut out = vec![0u8; size];
    let written = INFLATER.with(|d| d.borrow_mut().gzip_decompress(raw, &mut out)).ok()?;
    // libdeflate checked the member's own trailer; it is `raw`'s last eight
    // bytes only when the member ends where `raw` does.
    (written == size && libdeflater::crc32(&out) == crc).then_some(out)
}

/// Every zstd frame of `raw`; one frame that states its size is
/// decompressed in one call.
fn unzstd(raw: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(raw)
        && size <= max as u64
        && let Ok(out) = zstd::bulk::decompress(raw, size as usize)
        && out.len() as u64 == size
    {
        // One frame of that size; a body of several frames fails the bulk
        // call (no room) and is streamed below.
        return Ok(out);
    }
    let decoder = zstd::stream::read::Decoder::new(raw).map_err(|e| Error::Broken(e.to_string()))?;
    bounded_read(decoder, max)
}

/// A snappy body, framed (it starts with the stream identifier chunk) or a
/// single block.
fn unsnappy(raw: &[u8], max: usize) -> Result<Vec<u8>, Error> {
    const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
    if raw.starts_with(STREAM_IDENTIFIER) {
        return bounded_read(snap::read::FrameDecoder::new(raw), max);
    }
    let len = snap::raw::decompress_len(raw).map_err(|e| Error::Broken(format!("not snappy: {e}")))?;
    if len > max {
        return Err(Error::TooLarge(max));
    }
    snap::raw::Decoder::new()
        .decompress_vec(raw)
        .map_err(|e| Error::Broken(format!("not snappy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn two_gzip_members_of_equal_size_are_both_read() {
        let mut two = gzip(b"abcd");
        two.extend(gzip(b"tail"));
        assert_eq!(gunzip(&two, 100).unwrap(), b"abcdtail");
        // Identical members: the last trailer matches the first member's data.
        let mut same = gzip(b"abcd");
        same.extend(gzip(b"abcd"));
        assert_eq!(gunzip(&same, 100).unwrap(), b"abcdabcd");
    }

    #[test]
    fn one_member_takes_the_one_call_path_and_bytes_after_it_do_not() {
        let data: Vec<u8> = (0..50_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let one = gzip(&data);
        assert_eq!(gunzip_single_member(&one, 1 << 20), Some(data.clone()));
        // Garbage after the member: the streaming decoder decides (and refuses).
        let mut tail = one.clone();
        tail.extend_from_slice(b"garbage!");
        assert_eq!(gunzip_single_member(&tail, 1 << 20), None);
        assert!(gunzip(&tail, 1 << 20).is_err());
        // A trailer that lies about the size cannot make it write past the limit.
        let mut lying = one.clone();
        let n = lying.len();
        lying[n - 4..].copy_from_slice(&10u32.to_le_bytes());
        assert_eq!(gunzip_single_member(&lying, 1 << 20), None);
        assert!(gunzip(&lying, 1 << 20).is_err());
        assert_eq!(gunzip(&one, 1000), Err(Error::TooLarge(1000)));
    }

    #[test]
    fn every_encoding_is_read_and_bounded() {
        let data: Vec<u8> = b"span ".iter().copied().cycle().take(10_000).collect();
        let framed = {
            use std::io::Write as _;
            let mut w = snap::write::FrameEncoder::new(Vec::new());
            w.write_all(&data).unwrap();
            w.into_inner().unwrap()
        };
        let block = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        let zstd_one = zstd::bulk::compress(&data, 3).unwrap();
        let mut zstd_two = zstd_one.clone();
        zstd_two.extend(zstd::bulk::compress(b"tail", 3).unwrap());
        let mut both = data.clone();
        both.extend_from_slice(b"tail");
        let cases = [
            (Encoding::Identity, data.clone(), data.clone()),
            (Encoding::Gzip, gzip(&data), data.clone()),
            (Encoding::Zstd, zstd_one, data.clone()),
            (Encoding::Zstd, zstd_two, both),
            (Encoding::Snappy, framed, data.clone()),
            (Encoding::Snappy, block, data.clone()),
        ];
        for (encoding, raw, want) in cases {
            assert_eq!(
                decompress(encoding, raw.clone(), 1 << 20).as_ref(),
                Ok(&want),
                "{encoding:?}"
            );
            assert_eq!(
                decompress(encoding, raw, 100),
                Err(Error::TooLarge(100)),
                "{encoding:?}"
            );
        }
        for name in ["br", "deflate", "lz4"] {
            assert_eq!(Encoding::from_name(name), None);
        }
    }

    proptest! {
        #[test]
        fn gunzip_takes_any_gzip_and_refuses_the_rest(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            prop_assert_eq!(gunzip(&gzip(&data), 1 << 20).unwrap(), data.clone());
            // Two members, as `cat a.gz b.gz` makes.
            let mut two = gzip(&data);
            two.extend(gzip(b"tail"));
            let mut both = data.clone();
            both.extend_from_slice(b"tail");
            prop_assert_eq!(gunzip(&two, 1 << 20).unwrap(), both);
            // Too large for the limit, and bytes that are not gzip: errors, never a panic.
            if data.len() > 10 {
                prop_assert!(gunzip(&gzip(&data), 10).is_err());
            }
            let _ = gunzip(&garbage, 1 << 20);
        }

        #[test]
        fn any_bytes_under_any_encoding_never_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<usize>(),
        ) {
            for encoding in [Encoding::Gzip, Encoding::Zstd, Encoding::Snappy] {
                let _ = decompress(encoding, raw.clone(), 1 << 16);
            }
            // A damaged gzip member: an error or the right bytes, never others.
            let data = b"the quick brown fox jumps over the lazy dog".repeat(8);
            let mut bad = gzip(&data);
            let at = flip % bad.len();
            bad[at] ^= 0x5a;
            if let Ok(out) = gunzip(&bad, 1 << 16) {
                // A header byte (mtime, OS) can change without harm.
                prop_assert_eq!(out, data);
            }
        }
    }
}

//! Protobuf wire format: the few primitives OTLP needs, for writing and for
//! reading without building intermediate structs.

/// Wire type of varint fields.
pub const VARINT: u8 = 0;
/// Wire type of 64-bit fixed fields.
pub const FIXED64: u8 = 1;
/// Wire type of length-delimited fields (bytes, strings, messages).
pub const LEN: u8 = 2;
/// Wire type of 32-bit fixed fields.
pub const FIXED32: u8 = 5;

/// Bytes a varint of `v` takes.
#[inline(always)]
pub const fn varint_len(v: u64) -> usize {
    if v < 0x80 {
        return 1;
    }
    // 1 byte per started group of 7 bits; `| 1` makes 0 take one byte.
    ((64 - (v | 1).leading_zeros()) as usize).div_ceil(7)
}

/// Bytes the tag of field `field` takes.
#[inline(always)]
pub const fn tag_len(field: u32) -> usize {
    varint_len((field as u64) << 3)
}

/// Bytes a length-delimited field with `content` bytes takes.
#[inline(always)]
pub const fn len_field_len(field: u32, content: usize) -> usize {
    tag_len(field) + varint_len(content as u64) + content
}

/// Appends a varint.
#[inline(always)]
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        buf.push(v as u8);
        return;
    }
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a field tag.
#[inline(always)]
pub fn put_tag(buf: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(buf, u64::from(field) << 3 | u64::from(wire_type));
}

/// Appends the tag and length of a length-delimited field; the caller writes the content.
#[inline(always)]
pub fn put_len_header(buf: &mut Vec<u8>, field: u32, len: usize) {
    if field < 16 && len < 0x80 {
        // The common case, one small tag byte and one length byte, in one write.
        buf.extend_from_slice(&[(field as u8) << 3 | LEN, len as u8]);
        return;
    }
    put_tag(buf, field, LEN);
    put_varint(buf, len as u64);
}

/// Appends a length-delimited field.
#[inline(always)]
pub fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len_header(buf, field, bytes.len());
    buf.extend_from_slice(bytes);
}

/// Appends a fixed64 field.
#[inline(always)]
pub fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends a fixed32 field.
#[inline(always)]
pub fn put_fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    put_tag(buf, field, FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A field read from a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field<'a> {
    /// A varint (also bools, enums, signed ints as two's complement).
    Varint(u64),
    /// 8 little-endian bytes.
    Fixed64(u64),
    /// Length-delimited content.
    Bytes(&'a [u8]),
    /// 4 little-endian bytes.
    Fixed32(u32),
}

/// Why a protobuf message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The message ends inside a field.
    Truncated,
    /// A varint longer than 10 bytes.
    VarintOverflow,
    /// A wire type protobuf does not define (or the deprecated groups).
    BadWireType(u8),
    /// Field number 0.
    ZeroField,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("protobuf message is truncated"),
            WireError::VarintOverflow => f.write_str("protobuf varint is longer than 10 bytes"),
            WireError::BadWireType(t) => write!(f, "protobuf wire type {t} is not supported"),
            WireError::ZeroField => f.write_str("protobuf field number 0 is invalid"),
        }
    }
}

impl std::error::Error for WireError {}

/// Iterates the fields of one message, borrowing its bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads the fields of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The byte offset of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(WireError::Truncated)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    /// The next field and its number, `None` at the end.
    ///
    /// # Errors
    ///
    /// When the bytes are not a well-formed protobuf message.
    #[inline]
    pub fn next_field(&mut self) -> Option<Result<(u32, Field<'a>), WireError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u32, Field<'a>), WireError> {
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).map_err(|_| WireError::VarintOverflow)?;
        if field == 0 {
            return Err(WireError::ZeroField);
        }
        let value = match (key & 7) as u8 {
            VARINT => Field::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Field::Fixed64(u64::from_le_bytes(a))
            }
            LEN => {
                let n = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Field::Bytes(self.take(n)?)
            }
            FIXED32 => {
                let b = self.take(4)?;
                let mut a = [0u8; 4];
                a.copy_from_slice(b);
                Field::Fixed32(u32::from_le_bytes(a))
            }
            other => return Err(WireError::BadWireType(other)),
        };
        Ok((field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [(0u64, 1), (127, 1), (128, 2), (16383, 2), (16384, 3), (u64::MAX, 10)] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), n);
        }
        assert_eq!(tag_len(15), 1);
        assert_eq!(tag_len(16), 2);
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert_eq!(
            Reader::new(&[0x0a, 0x05, 1, 2]).next_field(),
            Some(Err(WireError::Truncated))
        );
        assert_eq!(Reader::new(&[0x0b]).next_field(), Some(Err(WireError::BadWireType(3))));
        assert_eq!(Reader::new(&[0x00, 0x00]).next_field(), Some(Err(WireError::ZeroField)));
        let overlong = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(
            Reader::new(&overlong).next_field(),
            Some(Err(WireError::VarintOverflow))
        );
    }

    impl<'a> Iterator for Reader<'a> {
        type Item = Result<(u32, Field<'a>), WireError>;
        fn next(&mut self) -> Option<Self::Item> {
            self.next_field()
        }
    }

    proptest! {
        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            while let Some(Ok(_)) = r.next_field() {}
        }

        #[test]
        fn fields_round_trip(v in any::<u64>(), f in 1u32..1000, s in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut b = Vec::new();
            put_tag(&mut b, f, VARINT);
            put_varint(&mut b, v);
            put_bytes(&mut b, f + 1, &s);
            put_fixed64(&mut b, f + 2, v);
            put_fixed32(&mut b, f + 3, v as u32);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.next_field(), Some(Ok((f, Field::Varint(v)))));
            prop_assert_eq!(r.next_field(), Some(Ok((f + 1, Field::Bytes(&s)))));
            prop_assert_eq!(r.next_field(), Some(Ok((f + 2, Field::Fixed64(v)))));
            prop_assert_eq!(r.next_field(), Some(Ok((f + 3, Field::Fixed32(v as u32)))));
            prop_assert_eq!(r.next_field(), None);
        }
    }
}

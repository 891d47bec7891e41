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

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, lengths of short fields and small numbers take one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
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

    #[inline(always)]
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

    #[inline(always)]
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

/// Field numbers of the OTLP trace messages (opentelemetry-proto's
/// `trace/v1`, `common/v1`, `resource/v1`, `collector/trace/v1`) and of the
/// `google.rpc` messages an OTLP/gRPC error carries: the one place the
/// encoder, the decoders and the collector name them.
pub mod field {
    /// `ExportTraceServiceRequest`.
    pub mod request {
        /// `repeated ResourceSpans resource_spans`.
        pub const RESOURCE_SPANS: u32 = 1;
    }
    /// `ExportTraceServiceResponse`.
    pub mod response {
        /// `ExportTracePartialSuccess partial_success`.
        pub const PARTIAL_SUCCESS: u32 = 1;
    }
    /// `ExportTracePartialSuccess`.
    pub mod partial_success {
        /// `int64 rejected_spans`.
        pub const REJECTED_SPANS: u32 = 1;
        /// `string error_message`.
        pub const ERROR_MESSAGE: u32 = 2;
    }
    /// `ResourceSpans`.
    pub mod resource_spans {
        /// `Resource resource`.
        pub const RESOURCE: u32 = 1;
        /// `repeated ScopeSpans scope_spans`.
        pub const SCOPE_SPANS: u32 = 2;
        /// `string schema_url`.
        pub const SCHEMA_URL: u32 = 3;
    }
    /// `Resource`.
    pub mod resource {
        /// `repeated KeyValue attributes`.
        pub const ATTRIBUTES: u32 = 1;
        /// `uint32 dropped_attributes_count`.
        pub const DROPPED_ATTRIBUTES_COUNT: u32 = 2;
    }
    /// `ScopeSpans`.
    pub mod scope_spans {
        /// `InstrumentationScope scope`.
        pub const SCOPE: u32 = 1;
        /// `repeated Span spans`.
        pub const SPANS: u32 = 2;
        /// `string schema_url`.
        pub const SCHEMA_URL: u32 = 3;
    }
    /// `InstrumentationScope`.
    pub mod scope {
        /// `string name`.
        pub const NAME: u32 = 1;
        /// `string version`.
        pub const VERSION: u32 = 2;
        /// `repeated KeyValue attributes`.
        pub const ATTRIBUTES: u32 = 3;
        /// `uint32 dropped_attributes_count`.
        pub const DROPPED_ATTRIBUTES_COUNT: u32 = 4;
    }
    /// `Span`.
    pub mod span {
        /// `bytes trace_id`.
        pub const TRACE_ID: u32 = 1;
        /// `bytes span_id`.
        pub const SPAN_ID: u32 = 2;
        /// `string trace_state`.
        pub const TRACE_STATE: u32 = 3;
        /// `bytes parent_span_id`.
        pub const PARENT_SPAN_ID: u32 = 4;
        /// `string name`.
        pub const NAME: u32 = 5;
        /// `SpanKind kind`.
        pub const KIND: u32 = 6;
        /// `fixed64 start_time_unix_nano`.
        pub const START_TIME: u32 = 7;
        /// `fixed64 end_time_unix_nano`.
        pub const END_TIME: u32 = 8;
        /// `repeated KeyValue attributes`.
        pub const ATTRIBUTES: u32 = 9;
        /// `uint32 dropped_attributes_count`.
        pub const DROPPED_ATTRIBUTES_COUNT: u32 = 10;
        /// `repeated Event events`.
        pub const EVENTS: u32 = 11;
        /// `uint32 dropped_events_count`.
        pub const DROPPED_EVENTS_COUNT: u32 = 12;
        /// `repeated Link links`.
        pub const LINKS: u32 = 13;
        /// `uint32 dropped_links_count`.
        pub const DROPPED_LINKS_COUNT: u32 = 14;
        /// `Status status`.
        pub const STATUS: u32 = 15;
        /// `fixed32 flags`.
        pub const FLAGS: u32 = 16;
    }
    /// `Span.Event`.
    pub mod event {
        /// `fixed64 time_unix_nano`.
        pub const TIME: u32 = 1;
        /// `string name`.
        pub const NAME: u32 = 2;
        /// `repeated KeyValue attributes`.
        pub const ATTRIBUTES: u32 = 3;
        /// `uint32 dropped_attributes_count`.
        pub const DROPPED_ATTRIBUTES_COUNT: u32 = 4;
    }
    /// `Span.Link`.
    pub mod link {
        /// `bytes trace_id`.
        pub const TRACE_ID: u32 = 1;
        /// `bytes span_id`.
        pub const SPAN_ID: u32 = 2;
        /// `string trace_state`.
        pub const TRACE_STATE: u32 = 3;
        /// `repeated KeyValue attributes`.
        pub const ATTRIBUTES: u32 = 4;
        /// `uint32 dropped_attributes_count`.
        pub const DROPPED_ATTRIBUTES_COUNT: u32 = 5;
        /// `fixed32 flags`.
        pub const FLAGS: u32 = 6;
    }
    /// `Status`.
    pub mod status {
        /// `string message`.
        pub const MESSAGE: u32 = 2;
        /// `StatusCode code`.
        pub const CODE: u32 = 3;
    }
    /// `KeyValue`.
    pub mod key_value {
        /// `string key`.
        pub const KEY: u32 = 1;
        /// `AnyValue value`.
        pub const VALUE: u32 = 2;
    }
    /// `AnyValue` (a oneof).
    pub mod any_value {
        /// `string string_value`.
        pub const STRING: u32 = 1;
        /// `bool bool_value`.
        pub const BOOL: u32 = 2;
        /// `int64 int_value`.
        pub const INT: u32 = 3;
        /// `double double_value`.
        pub const DOUBLE: u32 = 4;
        /// `ArrayValue array_value`.
        pub const ARRAY: u32 = 5;
        /// `KeyValueList kvlist_value`.
        pub const KVLIST: u32 = 6;
        /// `bytes bytes_value`.
        pub const BYTES: u32 = 7;
    }
    /// `ArrayValue` and `KeyValueList`.
    pub mod array_value {
        /// `repeated AnyValue values` (or `repeated KeyValue values`).
        pub const VALUES: u32 = 1;
    }
    /// `google.rpc.Status`.
    pub mod rpc_status {
        /// `int32 code`.
        pub const CODE: u32 = 1;
        /// `string message`.
        pub const MESSAGE: u32 = 2;
        /// `repeated google.protobuf.Any details`.
        pub const DETAILS: u32 = 3;
    }
    /// `google.protobuf.Any`.
    pub mod any {
        /// `string type_url`.
        pub const TYPE_URL: u32 = 1;
        /// `bytes value`.
        pub const VALUE: u32 = 2;
    }
    /// `google.rpc.RetryInfo`.
    pub mod retry_info {
        /// `google.protobuf.Duration retry_delay`.
        pub const RETRY_DELAY: u32 = 1;
    }
    /// `google.protobuf.Duration`.
    pub mod duration {
        /// `int64 seconds`.
        pub const SECONDS: u32 = 1;
        /// `int32 nanos`.
        pub const NANOS: u32 = 2;
    }
}

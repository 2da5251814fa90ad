//! A published message as the broker holds it: the raw content-header bytes from the publisher (sent unchanged
//! on delivery), the properties (read in place, or decoded when something needs them all), and the body as
//! shared `Bytes`, so one allocation serves every queue the message reaches.

use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use once_cell::race::OnceBox;
use std::sync::Arc;

/// A message's properties, decoded, or to be decoded from its content header on first use. Most messages go
/// out with their raw header untouched, so they are not decoded on the way (a header with a table is, when
/// published): the decoded form is ~300 bytes, its allocation the largest cost of draining a backlog and a
/// tenth of a publish's.
/// (`OnceBox`, not `OnceLock`: setting a `OnceLock` at construction goes through its `Once`, a measurable
/// cost on every publish.)
#[derive(Debug)]
pub struct Props(OnceBox<BasicProperties>);

impl Props {
    pub fn new(p: BasicProperties) -> Props {
        Props(OnceBox::with_value(Box::new(p)))
    }

    /// Decoded from the message's content header when first asked for.
    pub fn lazy() -> Props {
        Props(OnceBox::new())
    }

    fn get(&self, header: &[u8]) -> &BasicProperties {
        self.0.get_or_init(|| {
            // A lazy header was checked when the message was published and by its record's checksum since.
            Box::new(match crate::protocol::decode_content_header(header) {
                Some((_, p)) => p,
                None => {
                    // Its shape was checked when it was read back; only a headers table can be wrong.
                    tracing::error!(
                        header_bytes = header.len(),
                        "a stored message's properties do not decode; it goes on without them"
                    );
                    BasicProperties::default()
                }
            })
        })
    }
}

impl Default for Props {
    fn default() -> Props {
        Props::new(BasicProperties::default())
    }
}

impl From<BasicProperties> for Props {
    fn from(p: BasicProperties) -> Props {
        Props::new(p)
    }
}

#[derive(Debug)]
pub struct Message {
    pub exchange: Arc<str>,
    pub routing_key: Arc<str>,
    /// The content-header payload (class id, weight, body size, property flags and properties).
    pub header: Bytes,
    /// Boxed inside: the parsed properties are ~300 bytes and a message moves several times between its
    /// header frame and its Arc; a pointer keeps those moves cheap. Read them with `props()`.
    pub properties: Props,
    pub body: Bytes,
    /// Its `x-death` header was written by this broker when it dead-lettered the message, not by a client
    /// (RabbitMQ 4.x reads back only its own).
    pub broker_deaths: bool,
}

/// The names the last record decoded in a batch carried (see [`Message::decode_record_sharing`]).
#[derive(Default)]
pub struct LastNames {
    exchange: Option<Arc<str>>,
    routing_key: Option<Arc<str>>,
}

/// `raw` as a string, sharing `last` when it holds the same one (and checking UTF-8 only when it does not);
/// `None` when `raw` is not UTF-8.
pub fn share_str(last: &mut Option<Arc<str>>, raw: &[u8]) -> Option<Arc<str>> {
    match last {
        Some(s) if s.as_bytes() == raw => Some(s.clone()),
        _ => {
            let s: Arc<str> = Arc::from(std::str::from_utf8(raw).ok()?);
            Some(last.insert(s).clone())
        }
    }
}

impl Message {
    /// A journal event about this message in `vhost`.
    pub fn journal_event(
        &self,
        kind: crate::journal::Kind,
        vhost: &Arc<str>,
    ) -> crate::journal::Event {
        crate::journal::Event::about(kind, vhost, self.props(), &self.exchange, &self.routing_key)
    }

    pub fn props(&self) -> &BasicProperties {
        self.properties.get(&self.header)
    }

    pub fn persistent(&self) -> bool {
        self.delivery_mode() == Some(2)
    }

    // The properties the broker itself reads on every publish, read in place while they are undecoded: the
    // raw header and the decoded properties always say the same (whoever changes one re-encodes the other).

    pub fn delivery_mode(&self) -> Option<u8> {
        match self.properties.0.get() {
            Some(p) => *p.delivery_mode(),
            None => {
                crate::protocol::octet_property(&self.header, crate::protocol::bit::DELIVERY_MODE)
            }
        }
    }

    pub fn priority(&self) -> Option<u8> {
        match self.properties.0.get() {
            Some(p) => *p.priority(),
            None => crate::protocol::octet_property(&self.header, crate::protocol::bit::PRIORITY),
        }
    }

    pub fn expiration(&self) -> Option<&str> {
        self.short(crate::protocol::bit::EXPIRATION, |p| p.expiration())
    }

    pub fn reply_to(&self) -> Option<&str> {
        self.short(crate::protocol::bit::REPLY_TO, |p| p.reply_to())
    }

    pub fn user_id(&self) -> Option<&str> {
        self.short(crate::protocol::bit::USER_ID, |p| p.user_id())
    }

    /// The headers table: decoding the properties only when there is one.
    pub fn headers(&self) -> Option<&amq_protocol::types::FieldTable> {
        if self.properties.0.get().is_none() && !crate::protocol::has_headers(&self.header) {
            return None;
        }
        self.props().headers().as_ref()
    }

    fn short(
        &self,
        bit: u32,
        decoded: impl Fn(&BasicProperties) -> &Option<amq_protocol::types::ShortString>,
    ) -> Option<&str> {
        match self.properties.0.get() {
            Some(p) => decoded(p).as_ref().map(|s| s.as_str()),
            None => crate::protocol::short_property(&self.header, bit),
        }
    }

    pub fn body_size(&self) -> usize {
        self.body.len()
    }
}

pub type MessageRef = Arc<Message>;

impl Message {
    /// A copy with its headers changed by `f` and the content header re-encoded (the raw bytes can no longer
    /// be forwarded unchanged). Used for x-delivery-count and the like, never on the plain publish path.
    pub fn with_headers(&self, f: impl FnOnce(&mut amq_protocol::types::FieldTable)) -> Message {
        let mut headers = self.props().headers().clone().unwrap_or_default();
        f(&mut headers);
        let properties = self.props().clone().with_headers(headers);
        let header = crate::protocol::encode_content_header(self.body.len() as u64, &properties);
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header,
            properties: Props::new(properties),
            body: self.body.clone(),
            broker_deaths: self.broker_deaths,
        }
    }
}

/// `s` cut to a short string's 255 bytes, on a character boundary.
pub fn short(s: &str) -> &str {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why a stored message record could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupt message record: {0}")]
pub struct RecordError(&'static str);

/// The fixed header at the start of every stored message record: what a queue needs to hold the message
/// in its index without its body, so recovery reads no bodies back (see `store::RecoveredMessage::head`).
/// One record can serve several queues (a persistent message routed to several durable queues is written
/// once), so it holds only what is the same for all of them; each queue adds its own TTL at recovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta {
    pub priority: u8,
    /// When the message was published, in Unix milliseconds (a queue's message TTL counts from here);
    /// 0 when unknown (records of the first format, whose `expires_at` already includes the queue TTL).
    pub published_at: u64,
    /// When the message's own expiration property makes it expire, in Unix milliseconds; 0 for never.
    pub expires_at: u64,
    pub body_len: u32,
}

/// Record format versions, the first byte of every record. Version 1 had no `published_at` and stored the
/// queue's TTL in `expires_at`; it is still read.
const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;
/// Version 2's layout, for a message whose x-death header the broker wrote (`Message::broker_deaths`).
const RECORD_V2_DEATHS: u8 = 3;

impl RecordMeta {
    pub const LEN: usize = 22;
    const LEN_V1: usize = 14;

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_V2);
        out.push(self.priority);
        out.extend_from_slice(&self.published_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
    }

    /// Reads the header from a record's first bytes; `None` if they are not a record this version wrote.
    pub fn decode(b: &[u8]) -> Option<RecordMeta> {
        let u64_at = |i: usize| Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?));
        let u32_at = |i: usize| Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?));
        match *b.first()? {
            RECORD_V1 => Some(RecordMeta {
                priority: *b.get(1)?,
                published_at: 0,
                expires_at: u64_at(2)?,
                body_len: u32_at(10)?,
            }),
            RECORD_V2 | RECORD_V2_DEATHS => Some(RecordMeta {
                priority: *b.get(1)?,
                published_at: u64_at(2)?,
                expires_at: u64_at(10)?,
                body_len: u32_at(18)?,
            }),
            _ => None,
        }
    }

    /// The length of the header this record starts with.
    fn len_of(b: &[u8]) -> usize {
        if b.first() == Some(&RECORD_V1) {
            Self::LEN_V1
        } else {
            Self::LEN
        }
    }

    /// The message's expiry deadline in a queue whose message TTL is `queue_ttl` (Unix ms; 0 for never).
    pub fn deadline(&self, queue_ttl: Option<u64>) -> u64 {
        let by_queue = match (queue_ttl, self.published_at) {
            (Some(ttl), at) if at > 0 => at.saturating_add(ttl).max(1),
            _ => 0,
        };
        match (self.expires_at, by_queue) {
            (0, q) => q,
            (m, 0) => m,
            (m, q) => m.min(q),
        }
    }
}

impl Message {
    /// The message as a store record: the fixed [`RecordMeta`] (its `body_len` is filled in here), then
    /// exchange, routing key, raw content header, body.
    pub fn encode_record(&self, meta: RecordMeta) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            RecordMeta::LEN
                + 2
                + self.exchange.len()
                + self.routing_key.len()
                + 8
                + self.header.len()
                + self.body.len(),
        );
        RecordMeta {
            body_len: self.body.len().min(u32::MAX as usize) as u32,
            ..meta
        }
        .encode(&mut out);
        if self.broker_deaths {
            out[0] = RECORD_V2_DEATHS;
        }
        for s in [&*self.exchange, &*self.routing_key] {
            let s = short(s);
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        out.extend_from_slice(&(self.header.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&self.body);
        out
    }

    /// Decode a record written by `encode_record`; the body shares `rec`'s allocation.
    pub fn decode_record(rec: bytes::Bytes) -> Result<Message, RecordError> {
        Message::decode_record_sharing(rec, &mut LastNames::default())
    }

    /// `decode_record` for a batch: the exchange and routing key are shared with the last record's when
    /// they are the same (a backlog's messages mostly are), so a batch allocates each once.
    pub fn decode_record_sharing(
        rec: bytes::Bytes,
        last: &mut LastNames,
    ) -> Result<Message, RecordError> {
        if RecordMeta::decode(&rec).is_none() {
            return Err(RecordError("unknown record version"));
        }
        let mut pos = RecordMeta::len_of(&rec);
        let take = |pos: &mut usize, n: usize| -> Result<std::ops::Range<usize>, RecordError> {
            let r = *pos..pos.checked_add(n).ok_or(RecordError("length overflow"))?;
            if r.end > rec.len() {
                return Err(RecordError("truncated"));
            }
            *pos = r.end;
            Ok(r)
        };
        let xl = rec[take(&mut pos, 1)?.start] as usize;
        let exchange = share_str(&mut last.exchange, &rec[take(&mut pos, xl)?])
            .ok_or(RecordError("exchange not UTF-8"))?;
        let kl = rec[take(&mut pos, 1)?.start] as usize;
        let routing_key = share_str(&mut last.routing_key, &rec[take(&mut pos, kl)?])
            .ok_or(RecordError("routing key not UTF-8"))?;
        let hl = take(&mut pos, 4)?;
        let hl = u32::from_be_bytes([
            rec[hl.start],
            rec[hl.start + 1],
            rec[hl.start + 2],
            rec[hl.start + 3],
        ]) as usize;
        let header = rec.slice(take(&mut pos, hl)?);
        let body = rec.slice(pos..);
        if !crate::protocol::content_header_valid(&header) {
            return Err(RecordError("content header does not decode"));
        }
        Ok(Message {
            exchange,
            routing_key,
            header,
            properties: Props::lazy(),
            body,
            broker_deaths: rec.first() == Some(&RECORD_V2_DEATHS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message whose properties are read in place answers as one whose properties were decoded, and is
    /// decoded only when asked for a table it has.
    #[test]
    fn undecoded_properties_read_as_decoded_ones() {
        let mut table = amq_protocol::types::FieldTable::default();
        table.insert("CC".into(), amq_protocol::types::AMQPValue::LongLongInt(1));
        let cases = [
            BasicProperties::default(),
            BasicProperties::default()
                .with_content_type("text/plain".into())
                .with_delivery_mode(2)
                .with_priority(7)
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_expiration("60000".into())
                .with_user_id("guest".into()),
            BasicProperties::default()
                .with_delivery_mode(1)
                .with_headers(table)
                .with_expiration("5".into()),
        ];
        for p in cases {
            let header = crate::protocol::encode_content_header(3, &p);
            let message = |properties| Message {
                exchange: "ex".into(),
                routing_key: "rk".into(),
                header: header.clone(),
                properties,
                body: Bytes::from_static(b"abc"),
                broker_deaths: false,
            };
            let (lazy, decoded) = (message(Props::lazy()), message(Props::new(p.clone())));
            for m in [&lazy, &decoded] {
                assert_eq!(m.delivery_mode(), *p.delivery_mode());
                assert_eq!(m.persistent(), *p.delivery_mode() == Some(2));
                assert_eq!(m.priority(), *p.priority());
                assert_eq!(m.expiration(), p.expiration().as_ref().map(|s| s.as_str()));
                assert_eq!(m.reply_to(), p.reply_to().as_ref().map(|s| s.as_str()));
                assert_eq!(m.user_id(), p.user_id().as_ref().map(|s| s.as_str()));
            }
            assert!(lazy.properties.0.get().is_none(), "read in place: {p:?}");
            assert_eq!(lazy.headers(), p.headers().as_ref());
            // Decoded now exactly when it has a table.
            assert_eq!(lazy.properties.0.get().is_some(), p.headers().is_some());
            assert_eq!(lazy.props(), &p);
        }
    }

    #[test]
    fn a_batch_shares_names_that_repeat() {
        let mut last = None;
        let a = share_str(&mut last, b"orders").expect("utf-8");
        let b = share_str(&mut last, b"orders").expect("utf-8");
        assert!(Arc::ptr_eq(&a, &b));
        let c = share_str(&mut last, b"invoices").expect("utf-8");
        assert_eq!(&*c, "invoices");
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(share_str(&mut last, b"\xff").is_none());
        assert!(Arc::ptr_eq(last.as_ref().expect("kept"), &c));

        let props = BasicProperties::default();
        let m = Message {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            header: crate::protocol::encode_content_header(1, &props),
            properties: Props::new(props),
            body: Bytes::from_static(b"x"),
            broker_deaths: false,
        };
        let rec = Bytes::from(m.encode_record(RecordMeta {
            priority: 0,
            published_at: 0,
            expires_at: 0,
            body_len: 0,
        }));
        let mut names = LastNames::default();
        let one = Message::decode_record_sharing(rec.clone(), &mut names).expect("decodes");
        let two = Message::decode_record_sharing(rec, &mut names).expect("decodes");
        assert!(Arc::ptr_eq(&one.routing_key, &two.routing_key));
        assert!(Arc::ptr_eq(&one.exchange, &two.exchange));
    }

    #[test]
    fn record_round_trip() {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id("m1".into());
        let m = Message {
            exchange: "ex".into(),
            routing_key: "rk".into(),
            header: crate::protocol::encode_content_header(3, &props),
            properties: Props::new(props),
            body: Bytes::from_static(b"abc"),
            broker_deaths: false,
        };
        let meta = RecordMeta {
            priority: 3,
            published_at: 1_699_999_999_000,
            expires_at: 1_700_000_000_000,
            body_len: 0,
        };
        let rec = m.encode_record(meta);
        assert_eq!(
            RecordMeta::decode(&rec),
            Some(RecordMeta {
                body_len: 3,
                ..meta
            })
        );
        let d = Message::decode_record(Bytes::from(rec)).unwrap();
        assert_eq!(
            (&*d.exchange, &*d.routing_key, &d.body[..]),
            ("ex", "rk", &b"abc"[..])
        );
        assert_eq!(d.header, m.header);
        assert!(d.persistent());
        assert!(Message::decode_record(Bytes::from_static(&[5, b'a'])).is_err());
        assert_eq!(meta.deadline(Some(500)), 1_699_999_999_500);
        assert_eq!(meta.deadline(None), 1_700_000_000_000);
    }

    #[test]
    fn first_format_records_still_decode() {
        let mut v1 = vec![1u8, 4];
        v1.extend_from_slice(&77u64.to_be_bytes());
        v1.extend_from_slice(&9u32.to_be_bytes());
        let m = RecordMeta::decode(&v1).unwrap();
        assert_eq!(
            (m.priority, m.published_at, m.expires_at, m.body_len),
            (4, 0, 77, 9)
        );
        assert_eq!(
            m.deadline(Some(10)),
            77,
            "a v1 deadline already includes the queue TTL"
        );
    }
}

//! Content assembly as a state machine without I/O: basic.publish, then one content header, then body frames
//! until the declared size, with RabbitMQ's error (code, text, class and method) for every frame that comes
//! out of turn. Driven by the connection with frames; returns the complete message when the last byte
//! arrives. Memory follows the bytes received, never the size a header declares.

use crate::error::{AmqpError, AmqpResult};
use crate::protocol;
use crate::queue::message::Props;
use bytes::{Bytes, BytesMut};

/// basic.publish's arguments, kept until the content is complete.
#[derive(Debug)]
pub struct PublishStart {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub immediate: bool,
    /// Not a publish but a content-bearing method only a server sends (basic.deliver, get-ok, return), by
    /// method id: RabbitMQ takes its content like a publish's and only then refuses it.
    pub refused: Option<u16>,
}

impl PublishStart {
    /// The server-only content method `method_id` of class basic, sent by a client.
    pub fn refused(method_id: u16) -> PublishStart {
        PublishStart {
            exchange: String::new(),
            routing_key: String::new(),
            mandatory: false,
            immediate: false,
            refused: Some(method_id),
        }
    }
}

/// A publish whose header has arrived and whose body is arriving.
#[derive(Debug)]
pub struct Assembling {
    start: PublishStart,
    header: Bytes,
    properties: Props,
    size: u64,
    body: BytesMut,
    /// The single body frame, kept without copying when the body arrives in one frame.
    single: Option<Bytes>,
}

/// A complete message, ready to route.
#[derive(Debug)]
pub struct Complete {
    pub start: PublishStart,
    /// The content-header payload, forwarded unchanged on delivery.
    pub header: Bytes,
    /// Undecoded when the header has no table (see `protocol::lazy_body_size`).
    pub properties: Props,
    pub body: Bytes,
}

/// Where a channel is in receiving a message's content.
#[derive(Debug, Default)]
pub enum Assembly {
    /// Expecting a method frame.
    #[default]
    Idle,
    /// basic.publish arrived: a content header must come next.
    Header(Box<PublishStart>),
    /// The header arrived: body frames until the declared size.
    Body(Box<Assembling>),
    /// A body overran its declared size. RabbitMQ drops the message without a word and then refuses every
    /// method on the channel as an unexpected frame; content frames are ignored.
    Wedged,
}

const HEADER_EXPECTED: &str =
    "expected content header for class 60, got non content header frame instead";
const BODY_EXPECTED: &str = "expected content body, got non content body frame instead";
const METHOD_EXPECTED: &str = "expected method frame, got non method frame instead";

/// Bodies up to this size get their whole buffer at once; larger ones grow with what arrives, so a header
/// promising a huge body costs nothing until the bytes come.
const PREALLOCATE_MAX: u64 = 64 * 1024;

impl Assembly {
    /// The basic method whose content is pending (publish, or a refused server-only one), for errors.
    fn method_id(&self) -> u16 {
        let start = match self {
            Assembly::Header(p) => Some(&**p),
            Assembly::Body(a) => Some(&a.start),
            Assembly::Idle | Assembly::Wedged => None,
        };
        start.and_then(|p| p.refused).unwrap_or(40)
    }

    /// A method frame is about to be handled: refused while content is pending (505, hard).
    pub fn check_method(&self) -> AmqpResult<()> {
        match self {
            Assembly::Idle => Ok(()),
            Assembly::Header(_) => {
                Err(AmqpError::unexpected_frame(HEADER_EXPECTED).on(60, self.method_id()))
            }
            Assembly::Body(_) | Assembly::Wedged => {
                Err(AmqpError::unexpected_frame(BODY_EXPECTED).on(60, self.method_id()))
            }
        }
    }

    /// basic.publish arrived (after `check_method`).
    pub fn start(&mut self, p: PublishStart) {
        *self = Assembly::Header(Box::new(p));
    }

    /// Whether content frames are to be ignored (a wedged channel).
    pub fn is_wedged(&self) -> bool {
        matches!(self, Assembly::Wedged)
    }

    /// Drop whatever was being assembled (the channel is closing).
    pub fn reset(&mut self) {
        *self = Assembly::Idle;
    }

    /// A content header frame. Bodies larger than `max_size` are refused with RabbitMQ's 406.
    pub fn header(&mut self, payload: Bytes, max_size: u64) -> AmqpResult<Option<Complete>> {
        let method = self.method_id();
        match self {
            Assembly::Idle => return Err(AmqpError::unexpected_frame(METHOD_EXPECTED)),
            Assembly::Body(_) => {
                return Err(AmqpError::unexpected_frame(BODY_EXPECTED).on(60, method))
            }
            Assembly::Wedged => return Ok(None),
            Assembly::Header(_) => {}
        }
        let class = protocol::peek_header_class(&payload);
        if class != 60 {
            return Err(AmqpError::unexpected_frame(format!(
                "expected content header for class 60, got one for class {class} instead"
            ))
            .on(60, method));
        }
        if protocol::nesting::header_too_deep(&payload) {
            *self = Assembly::Idle;
            return Err(AmqpError::syntax_error(format!(
                "message headers nested more than {} levels deep",
                protocol::nesting::MAX_DEPTH
            ))
            .on(60, method));
        }
        // Most headers carry no table: they are checked in place and their properties decoded only if
        // something asks for one the broker does not read in place (their ~300-byte allocation was a tenth
        // of a publish's cost).
        let (size, properties) = match protocol::lazy_body_size(&payload) {
            Some(size) => (size, Props::lazy()),
            None => protocol::decode_content_header(&payload)
                .map(|(size, p)| (size, Props::new(p)))
                .ok_or_else(|| {
                    AmqpError::frame_error("cannot decode content header").on(60, method)
                })?,
        };
        if size > max_size {
            *self = Assembly::Idle;
            return Err(AmqpError::precondition_failed(format!(
                "message size {size} is larger than configured max size {max_size}"
            ))
            .on(60, method));
        }
        let Assembly::Header(start) = std::mem::take(self) else {
            return Ok(None);
        };
        let a = Assembling {
            start: *start,
            header: payload,
            properties,
            size,
            body: BytesMut::new(),
            single: None,
        };
        if size == 0 {
            return Ok(Some(a.finish()));
        }
        *self = Assembly::Body(Box::new(a));
        Ok(None)
    }

    /// A content body frame; returns the message when its last byte arrived.
    pub fn body(&mut self, payload: Bytes) -> AmqpResult<Option<Complete>> {
        let a = match self {
            Assembly::Idle => return Err(AmqpError::unexpected_frame(METHOD_EXPECTED)),
            Assembly::Header(p) => {
                let method = p.refused.unwrap_or(40);
                return Err(AmqpError::unexpected_frame(HEADER_EXPECTED).on(60, method));
            }
            Assembly::Wedged => return Ok(None),
            Assembly::Body(a) => a,
        };
        let have = a.body.len() as u64 + a.single.as_ref().map_or(0, |b| b.len() as u64);
        let len = payload.len() as u64;
        if have + len > a.size {
            *self = Assembly::Wedged;
            return Ok(None);
        }
        if have == 0 && len == a.size {
            a.single = Some(payload);
        } else {
            if let Some(first) = a.single.take() {
                a.body.extend_from_slice(&first);
            }
            if a.body.is_empty() && a.size <= PREALLOCATE_MAX {
                a.body.reserve(a.size as usize);
            }
            a.body.extend_from_slice(&payload);
        }
        if have + len < a.size {
            return Ok(None);
        }
        let Assembly::Body(a) = std::mem::take(self) else {
            return Ok(None);
        };
        Ok(Some(a.finish()))
    }
}

impl Assembling {
    fn finish(self) -> Complete {
        Complete {
            start: self.start,
            header: self.header,
            properties: self.properties,
            body: match self.single {
                Some(b) => b,
                None => self.body.freeze(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ReplyCode;

    fn start() -> PublishStart {
        PublishStart {
            exchange: "x".into(),
            routing_key: "k".into(),
            mandatory: false,
            immediate: false,
            refused: None,
        }
    }

    fn header(size: u64) -> Bytes {
        protocol::encode_content_header(size, &amq_protocol::protocol::BasicProperties::default())
    }

    #[test]
    fn assembles_across_frames_and_in_one() {
        let mut a = Assembly::default();
        a.check_method().unwrap();
        a.start(start());
        assert!(a.header(header(5), 100).unwrap().is_none());
        assert!(a.body(Bytes::from_static(b"he")).unwrap().is_none());
        let m = a.body(Bytes::from_static(b"llo")).unwrap().unwrap();
        assert_eq!(&m.body[..], b"hello");
        assert!(matches!(a, Assembly::Idle));

        a.start(start());
        a.header(header(3), 100).unwrap();
        let body = Bytes::from_static(b"abc");
        let m = a.body(body.clone()).unwrap().unwrap();
        assert_eq!(
            m.body.as_ptr(),
            body.as_ptr(),
            "a one-frame body is not copied"
        );

        a.start(start());
        assert_eq!(a.header(header(0), 100).unwrap().unwrap().body.len(), 0);
    }

    #[test]
    fn frames_out_of_turn_get_rabbitmq_errors() {
        let mut a = Assembly::default();
        let e = a.body(Bytes::from_static(b"x")).unwrap_err();
        assert_eq!(
            (e.code, e.text.as_str()),
            (ReplyCode::UnexpectedFrame, METHOD_EXPECTED)
        );
        a.start(start());
        let e = a.check_method().unwrap_err();
        assert_eq!(
            (e.text.as_str(), e.class_id, e.method_id),
            (HEADER_EXPECTED, 60, 40)
        );
        let e = a.body(Bytes::from_static(b"x")).unwrap_err();
        assert_eq!(e.text, HEADER_EXPECTED);
        a.header(header(4), 100).unwrap();
        assert_eq!(a.header(header(4), 100).unwrap_err().text, BODY_EXPECTED);
        assert_eq!(a.check_method().unwrap_err().text, BODY_EXPECTED);
    }

    #[test]
    fn oversized_messages_and_overruns() {
        let mut a = Assembly::default();
        a.start(start());
        let e = a.header(header(101), 100).unwrap_err();
        assert_eq!(e.code, ReplyCode::PreconditionFailed);
        assert_eq!(
            e.text,
            "message size 101 is larger than configured max size 100"
        );
        a.start(start());
        a.header(header(2), 100).unwrap();
        assert!(a.body(Bytes::from_static(b"abc")).unwrap().is_none());
        assert!(a.is_wedged());
        assert!(
            a.body(Bytes::from_static(b"a")).unwrap().is_none(),
            "ignored"
        );
        assert_eq!(a.check_method().unwrap_err().text, BODY_EXPECTED);
    }

    #[test]
    fn a_promised_body_does_not_allocate_its_size() {
        let mut a = Assembly::default();
        a.start(start());
        a.header(header(1 << 30), u64::MAX).unwrap();
        a.body(Bytes::from(vec![0u8; 10])).unwrap();
        let Assembly::Body(b) = &a else {
            panic!("still assembling")
        };
        assert!(b.body.capacity() < 1 << 20);
    }
}

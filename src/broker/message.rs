//! A published message as the broker holds it: the raw content-header bytes from the publisher (sent unchanged
//! on delivery), the decoded properties (for routing, validation and TTL), and the body as shared `Bytes`, so
//! one allocation serves every queue the message reaches.

use amq_protocol::protocol::BasicProperties;
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug)]
pub struct Message {
    pub exchange: Arc<str>,
    pub routing_key: Box<str>,
    /// The content-header payload (class id, weight, body size, property flags and properties).
    pub header: Bytes,
    pub properties: BasicProperties,
    pub body: Bytes,
}

impl Message {
    pub fn persistent(&self) -> bool {
        self.properties.delivery_mode() == &Some(2)
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
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        f(&mut headers);
        let properties = self.properties.clone().with_headers(headers);
        let header = crate::protocol::encode_content_header(self.body.len() as u64, &properties);
        Message {
            exchange: self.exchange.clone(),
            routing_key: self.routing_key.clone(),
            header,
            properties,
            body: self.body.clone(),
        }
    }
}

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

//! The channel lifecycle as a pure state machine: for a frame on a channel number, given whether that channel
//! is open, closing (the broker sent channel.close and waits for close-ok) or absent, what the connection
//! must do — open it, dispatch the method, answer close-ok, forget the channel, ignore the frame, or fail
//! with RabbitMQ's error. No I/O; the connection carries out the step.

use crate::error::AmqpError;

/// A channel number's state on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No channel with this number is open.
    Absent,
    Open,
    /// The broker sent channel.close and waits for close-ok; everything else is ignored.
    Closing,
}

/// What to do with a method frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// channel.open on a free number.
    Open,
    /// Hand the method to the channel (its class handlers).
    Dispatch,
    /// The client closed the channel: release it, answer close-ok, forget it.
    ClientClose,
    /// channel.close while the broker's own close is pending: answer close-ok, keep waiting.
    CloseOk,
    /// The client's close-ok to the broker's close: forget the channel.
    Forget,
    /// channel.flow: answer flow-ok (active only).
    Flow,
    /// access.request (deprecated): answer request-ok.
    Access,
    Ignore,
}

const CHANNEL: u16 = 20;
const ACCESS: u16 = 30;

/// The step for method `class.method` on a channel in `phase`.
pub fn on_method(phase: Phase, class: u16, method: u16) -> Result<Step, AmqpError> {
    let second_open = || AmqpError::channel_error("second 'channel.open' seen").on(20, 10);
    match (phase, class, method) {
        (Phase::Absent, CHANNEL, 10) => Ok(Step::Open),
        (Phase::Absent, _, _) => {
            Err(AmqpError::channel_error("expected 'channel.open'").on(class, method))
        }
        (Phase::Closing, CHANNEL, 10) => Err(second_open()),
        (Phase::Closing, CHANNEL, 40) => Ok(Step::CloseOk),
        (Phase::Closing, CHANNEL, 41) => Ok(Step::Forget),
        (Phase::Closing, _, _) => Ok(Step::Ignore),
        (Phase::Open, CHANNEL, 10) => Err(second_open()),
        (Phase::Open, CHANNEL, 40) => Ok(Step::ClientClose),
        // A close-ok nobody asked for: RabbitMQ's 503.
        (Phase::Open, CHANNEL, 41) => {
            Err(AmqpError::command_invalid("unimplemented method").on(class, method))
        }
        (Phase::Open, CHANNEL, 20) => Ok(Step::Flow),
        (Phase::Open, ACCESS, 10) => Ok(Step::Access),
        (Phase::Open, _, _) => Ok(Step::Dispatch),
    }
}

/// Whether a content frame on a channel in `phase` is processed (`Ok(true)`), ignored (`Ok(false)`), or an
/// error (no such channel).
pub fn on_content(phase: Phase) -> Result<bool, AmqpError> {
    match phase {
        Phase::Absent => Err(AmqpError::channel_error("expected 'channel.open'")),
        Phase::Open => Ok(true),
        Phase::Closing => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions() {
        assert_eq!(on_method(Phase::Absent, 20, 10), Ok(Step::Open));
        let e = on_method(Phase::Absent, 50, 10).unwrap_err();
        assert_eq!(
            (e.text.as_str(), e.class_id, e.method_id),
            ("expected 'channel.open'", 50, 10)
        );
        assert!(e.is_hard());
        assert_eq!(on_method(Phase::Open, 50, 10), Ok(Step::Dispatch));
        assert_eq!(on_method(Phase::Open, 20, 40), Ok(Step::ClientClose));
        assert_eq!(
            on_method(Phase::Open, 20, 10).unwrap_err().text,
            "second 'channel.open' seen"
        );
        assert_eq!(on_method(Phase::Closing, 60, 40), Ok(Step::Ignore));
        assert_eq!(on_method(Phase::Closing, 20, 40), Ok(Step::CloseOk));
        assert_eq!(on_method(Phase::Closing, 20, 41), Ok(Step::Forget));
        assert_eq!(on_content(Phase::Closing), Ok(false));
        assert!(on_content(Phase::Absent).is_err());
    }
}

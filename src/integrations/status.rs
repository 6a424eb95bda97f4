//! An integration's lifecycle states.

/// Where an integration is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Created, not linked to a chat yet (or linked by `/start` but not confirmed by its owner).
    Pending,
    /// Alerts are delivered.
    Active,
    /// Alerts are refused until the chat sends `/start` again (or unblocks the bot).
    Paused,
    /// Final: its tokens no longer work.
    Revoked,
}

impl Status {
    /// The status of a stored form.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Status::Pending,
            Status::Active,
            Status::Paused,
            Status::Revoked,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Stored and shown form.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Paused => "paused",
            Status::Revoked => "revoked",
        }
    }
}

/// `status_detail` of an integration paused by `/stop` in its chat.
pub const PAUSED_IN_CHAT: &str = "stopped-in-chat";
/// `status_detail` of an integration paused because the bot was blocked or removed.
pub const PAUSED_BOT_BLOCKED: &str = "bot-blocked";

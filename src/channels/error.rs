//! Provider errors classified by what the caller must do about them (CHANNELS.md).
use std::time::Duration;

/// A failed provider call, by scope: this message, this recipient, or the whole account.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ChannelError {
    /// The account is over its rate: freeze it for `retry_after`, then send again (not an attempt).
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// Wait the provider asked for.
        retry_after: Duration,
    },
    /// One recipient is over its pair rate (WhatsApp 131056): retry that message later; the
    /// account goes on with others.
    #[error("recipient rate limited; retry after {retry_after:?}")]
    RecipientLimited {
        /// Base of the back-off (the caller raises it per attempt).
        retry_after: Duration,
    },
    /// The provider flagged the sender's quality (WhatsApp 131048): the account slows down for
    /// `retry_after` and the message is retried.
    #[error("sender throttled for quality; slowing down for {retry_after:?}")]
    Throttled {
        /// How long the account pauses.
        retry_after: Duration,
    },
    /// Not sent: the send's pacing turn is further away than the caller would wait. Queue it for
    /// then; nothing reached the provider (not an attempt).
    #[error("paced: its turn is in {wait:?}")]
    Deferred {
        /// Time until the turn.
        wait: Duration,
    },
    /// A Telegram group became a supergroup: resend to the new chat id.
    #[error("chat migrated to {new_chat_id}")]
    Migrated {
        /// The supergroup's id.
        new_chat_id: i64,
    },
    /// The message can never be delivered as is (bad chat, blocked, bad payload).
    #[error("{code}: {detail}")]
    Permanent {
        /// Stable code, e.g. `chat-not-found`.
        code: &'static str,
        /// Provider's description.
        detail: String,
    },
    /// The account's credentials were rejected: stop the account and alert.
    #[error("account unauthorized: {detail}")]
    Unauthorized {
        /// Provider's description.
        detail: String,
    },
    /// Worth retrying with backoff (5xx, timeouts, network).
    #[error("{code}: {detail}")]
    Transient {
        /// Stable code, e.g. `provider-unavailable`.
        code: &'static str,
        /// What happened.
        detail: String,
    },
}

impl ChannelError {
    /// Whether a later attempt may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ChannelError::RateLimited { .. }
                | ChannelError::Deferred { .. }
                | ChannelError::RecipientLimited { .. }
                | ChannelError::Throttled { .. }
                | ChannelError::Migrated { .. }
                | ChannelError::Transient { .. }
        )
    }

    /// The stable code recorded as the message's `last_error_code`.
    pub fn code(&self) -> &'static str {
        match self {
            ChannelError::RateLimited { .. } => "rate-limited",
            ChannelError::Deferred { .. } => "paced",
            ChannelError::RecipientLimited { .. } => "recipient-rate-limited",
            ChannelError::Throttled { .. } => "quality-throttled",
            ChannelError::Migrated { .. } => "chat-migrated",
            ChannelError::Permanent { code, .. } | ChannelError::Transient { code, .. } => code,
            ChannelError::Unauthorized { .. } => "account-unauthorized",
        }
    }
}

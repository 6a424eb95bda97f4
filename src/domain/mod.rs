//! Shared domain types: channel kinds, message states, validated recipients.
pub mod ids;
pub mod phone;

use serde::{Deserialize, Serialize};

pub use ids::{CampaignId, ChannelId, ContactId, IntegrationId, MediaId, MessageId, UserId};
pub use phone::{PhoneError, PhoneNumber};

/// Where a message is in its life: `(pending →) queued → sending → sent`, or `failed`, or
/// `skipped`. `pending` is a campaign recipient its campaign has not released yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// A campaign recipient waiting for its campaign to release it (paused campaigns keep them).
    Pending,
    /// Accepted and waiting for (another) delivery attempt.
    Queued,
    /// A worker holds it and is talking to the provider.
    Sending,
    /// The provider accepted it.
    Sent,
    /// Gave up: permanent error or attempts exhausted.
    Failed,
    /// Not sent on purpose (opted out, duplicate, quota).
    Skipped,
}

impl MessageStatus {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Queued => "queued",
            MessageStatus::Sending => "sending",
            MessageStatus::Sent => "sent",
            MessageStatus::Failed => "failed",
            MessageStatus::Skipped => "skipped",
        }
    }
}

/// A provider's report on a message it accepted (WhatsApp's status webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Receipt {
    /// Accepted by the provider (we knew from the send's answer).
    Sent,
    /// On the recipient's device.
    Delivered,
    /// Opened by the recipient.
    Read,
    /// The provider gave up after accepting it.
    Failed,
}

impl Receipt {
    /// The provider's name for it; `None` for statuses we do not track.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "sent" => Receipt::Sent,
            "delivered" => Receipt::Delivered,
            "read" => Receipt::Read,
            "failed" => Receipt::Failed,
            _ => return None,
        })
    }

    /// The name recorded in the message's events.
    pub fn as_str(self) -> &'static str {
        match self {
            Receipt::Sent => "sent",
            Receipt::Delivered => "delivered",
            Receipt::Read => "read",
            Receipt::Failed => "failed",
        }
    }
}

/// Where a campaign is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Created, not started.
    Draft,
    /// Started; its recipient list is being built in the background (a large audience).
    Preparing,
    /// Started with a future `scheduled_at`.
    Scheduled,
    /// Releasing recipients.
    Running,
    /// Stopped by its owner; resumable.
    Paused,
    /// Every recipient reached a final state.
    Completed,
    /// Stopped for good; unsent recipients are skipped.
    Cancelled,
}

impl CampaignStatus {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignStatus::Draft => "draft",
            CampaignStatus::Preparing => "preparing",
            CampaignStatus::Scheduled => "scheduled",
            CampaignStatus::Running => "running",
            CampaignStatus::Paused => "paused",
            CampaignStatus::Completed => "completed",
            CampaignStatus::Cancelled => "cancelled",
        }
    }

    /// The status named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [
            CampaignStatus::Draft,
            CampaignStatus::Preparing,
            CampaignStatus::Scheduled,
            CampaignStatus::Running,
            CampaignStatus::Paused,
            CampaignStatus::Completed,
            CampaignStatus::Cancelled,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// Whether a channel account can send: `active`, or stopped by the provider refusing its
/// credentials (`unauthorized`) or by this server (`error`: unreadable credentials, unknown kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelStatus {
    /// Connected and sending.
    Active,
    /// The provider rejected its credentials; replace them to resume.
    Unauthorized,
    /// This server cannot run it (see `status_detail`).
    Error,
}

impl ChannelStatus {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelStatus::Active => "active",
            ChannelStatus::Unauthorized => "unauthorized",
            ChannelStatus::Error => "error",
        }
    }
}

/// What one entry of a message's history (`message_events.kind`) records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKind {
    /// Accepted into the queue.
    Queued,
    /// One delivery attempt; its outcome says how it ended.
    Attempt,
    /// Not sent on purpose (a listener's veto).
    Skipped,
    /// Given up (permanent error, attempts exhausted, or the provider's later report).
    Failed,
    /// A dead letter sent again by its owner.
    Replayed,
    /// Put back for a later attempt (after a transient failure).
    RetryScheduled,
    /// The provider reported delivery or reading (outcome: `delivered`, `read`).
    Status,
}

impl HistoryKind {
    /// The name stored in the database and used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Queued => "queued",
            HistoryKind::Attempt => "attempt",
            HistoryKind::Skipped => "skipped",
            HistoryKind::Failed => "failed",
            HistoryKind::Replayed => "replayed",
            HistoryKind::RetryScheduled => "retry_scheduled",
            HistoryKind::Status => "status",
        }
    }
}

/// Telegram parse modes accepted by `sendMessage`.
pub const PARSE_MODES: [&str; 3] = ["HTML", "MarkdownV2", "Markdown"];

/// A Telegram chat: a numeric chat id or a public `@username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelegramChat(String);

impl TelegramChat {
    /// Accepts `-?digits` (up to 20) or `@` followed by 5–32 of `A-Za-z0-9_`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let numeric = {
            let digits = s.strip_prefix('-').unwrap_or(s);
            !digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit())
        };
        let username = s.strip_prefix('@').is_some_and(|u| {
            (5..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if numeric || username {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not a Telegram chat id (an integer) or @username"
            ))
        }
    }

    /// Group, supergroup and channel ids are negative; usernames are public groups or channels.
    pub fn is_group(&self) -> bool {
        self.0.starts_with('-') || self.0.starts_with('@')
    }
}

impl AsRef<str> for TelegramChat {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The roles a user can hold, strongest first.
pub const ROLES: [&str; 3] = ["admin", "operator", "viewer"];

/// Parses an ISO 3166 region code (`ES`, `mx`).
pub fn region(code: &str) -> Option<phonenumber::country::Id> {
    code.trim().to_ascii_uppercase().parse().ok()
}

/// For PATCH-like bodies: a key set to `null` is `Some(None)` (clear it), a missing key is
/// `None` (leave it), with `#[serde(default, deserialize_with = "crate::domain::double_option")]`.
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(Some(Option::deserialize(d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids_and_usernames_parse() {
        assert!(TelegramChat::parse("123456").is_ok());
        assert!(
            TelegramChat::parse("-1001234567890")
                .expect("group")
                .is_group()
        );
        assert!(
            TelegramChat::parse("@my_channel")
                .expect("username")
                .is_group()
        );
        for bad in ["", "-", "12a", "@abc", "hello", "1 2"] {
            assert!(TelegramChat::parse(bad).is_err(), "{bad}");
        }
    }
}

//! The parts of Telegram's `Update` that Pregonero acts on; other fields are ignored.
use serde::Deserialize;

/// One incoming update (from `getUpdates` or a webhook call).
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    /// Increasing id; `getUpdates` confirms everything below `offset`.
    pub update_id: i64,
    /// A new message in a chat with the bot.
    pub message: Option<IncomingMessage>,
    /// The bot's own membership changed (in private chats: blocked or unblocked).
    pub my_chat_member: Option<ChatMemberUpdated>,
}

/// A message sent to the bot.
#[derive(Debug, Clone, Deserialize)]
pub struct IncomingMessage {
    /// Id within the chat.
    pub message_id: i64,
    /// Where it was sent.
    pub chat: Chat,
    /// Its text, if it is a text message.
    pub text: Option<String>,
}

/// A chat.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// Chat id (negative for groups).
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Group title.
    pub title: Option<String>,
    /// A private chat's first name.
    pub first_name: Option<String>,
}

impl Chat {
    /// A name to show for the chat.
    pub fn display_name(&self) -> String {
        self.title
            .clone()
            .or_else(|| self.first_name.clone())
            .unwrap_or_else(|| format!("{} chat", self.kind))
    }
}

/// `my_chat_member`: the bot's status in a chat changed.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMemberUpdated {
    /// The chat.
    pub chat: Chat,
    /// The bot's new membership.
    pub new_chat_member: ChatMember,
}

/// A membership.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMember {
    /// `creator`, `administrator`, `member`, `restricted`, `left` or `kicked`.
    pub status: String,
}

impl ChatMember {
    /// Whether the bot can no longer write to the chat (blocked by the user, or removed).
    pub fn is_gone(&self) -> bool {
        matches!(self.status.as_str(), "kicked" | "left")
    }
}

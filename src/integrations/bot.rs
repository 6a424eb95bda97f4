//! What the bot does with incoming updates: `/start <code>` links a chat, `/start` alone starts
//! Pingui's chat-first flow or resumes a paused chat, `/stop` pauses, and a block pauses too.
//!
//! Replies are conversational: they go straight to the bot's running account (paced like every
//! send, retried a few times) instead of the message ledger, because one of them carries a
//! one-time setup token that must not rest in the database. A lost reply is fixed by the user
//! sending the command again.
use std::time::Duration;

use actix_web::post;
use futures::future::BoxFuture;

use super::{
    PAUSED_BOT_BLOCKED, PAUSED_IN_CHAT, Status,
    repo::{self, NewIntegration},
    tokens,
};
use crate::domain::ChannelId;
use crate::{
    channels::{
        OutboundMessage, UpdateSink,
        repo::{self as channels_repo, ChannelRow},
        telegram::{Chat, Update},
    },
    crypto,
    state::AppState,
    telemetry::redact,
};

/// Tries of a bot reply on retryable errors.
const REPLY_TRIES: u32 = 3;
/// A reply waits this long at most for its pacing turn before it counts as a failed try.
const REPLY_HORIZON: Duration = Duration::from_secs(30);

/// Handles the updates of every bot; shared by the pollers and the webhook route.
#[derive(Clone)]
pub struct BotUpdates {
    state: AppState,
}

impl BotUpdates {
    /// A handler that works on `state` (its database, clock, tokens and actors).
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Acts on one update of bot `channel_id`. Errors are infrastructure errors (database): the
    /// caller must not confirm the update, so Telegram delivers it again.
    pub async fn handle(&self, channel_id: &ChannelId, update: Update) -> anyhow::Result<()> {
        let Some(channel) = channels_repo::find(&self.state.db, channel_id).await? else {
            return Ok(());
        };
        if let Some(member) = update.my_chat_member {
            self.membership(&channel, &member.chat, member.new_chat_member.is_gone())
                .await?;
        }
        if let Some(msg) = update.message
            && let Some(text) = msg.text
            && let Some((command, arg)) = parse_command(&text, channel.username.as_deref())
        {
            match command.as_str() {
                "start" => self.start(&channel, &msg.chat, arg.as_deref()).await?,
                "stop" => self.stop(&channel, &msg.chat).await?,
                "status" => self.status(&channel, &msg.chat).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn start(
        &self,
        channel: &ChannelRow,
        chat: &Chat,
        code: Option<&str>,
    ) -> anyhow::Result<()> {
        let chat_id = chat.id.to_string();
        let now = self.state.clock.now();
        let db = &self.state.db;
        if let Some(code) = code {
            let valid = !code.is_empty()
                && code.len() <= 64
                && code
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            let hash = crypto::hash_token(code);
            let found = if valid {
                repo::by_link_code(db, &channel.id, &hash).await?
            } else {
                None
            };
            let reply = match found {
                None => "This link is not valid: it may have been used already. Ask for a new one."
                    .to_owned(),
                Some(i) if i.link_expires_at.is_none_or(|t| t <= now) => {
                    "This link has expired. Ask for a new one.".to_owned()
                }
                Some(i) => {
                    if repo::link_with_code(db, &i.id, &hash, &chat_id, now).await? {
                        tracing::info!(integration_id = %i.id, chat = %redact(&chat_id), "chat linked by deep link");
                        format!(
                            "✅ This chat is now linked to “{}”. Its alerts will arrive here. Send /stop to pause them.",
                            i.name
                        )
                    } else {
                        "This link is not valid: it may have been used already. Ask for a new one."
                            .to_owned()
                    }
                }
            };
            self.reply(channel, &chat_id, reply);
            return Ok(());
        }

        let existing = repo::in_chat(db, &channel.id, &chat_id).await?;
        let resumed = repo::transition_chat(
            db,
            &channel.id,
            &chat_id,
            repo::ChatChange {
                from: Status::Paused,
                only_detail: None,
                to: Status::Active,
                detail: None,
            },
            now,
        )
        .await?;
        if resumed > 0 {
            tracing::info!(chat = %redact(&chat_id), resumed, "integrations resumed by /start");
            self.reply(
                channel,
                &chat_id,
                format!("▶️ Resumed: alerts from {resumed} integration(s) will arrive here again."),
            );
            return Ok(());
        }
        if existing.iter().any(|i| i.status == Status::Active.as_str()) {
            let names: Vec<_> = existing
                .iter()
                .filter(|i| i.status == Status::Active.as_str())
                .map(|i| i.name.as_str())
                .collect();
            self.reply(
                channel,
                &chat_id,
                format!(
                    "This chat already receives alerts from: {}.",
                    names.join(", ")
                ),
            );
            return Ok(());
        }
        // Pingui's flow: the chat comes first; its owner's application finishes the set-up.
        let pending = match existing
            .into_iter()
            .find(|i| i.status == Status::Pending.as_str())
        {
            Some(i) => i,
            None => {
                let quota = super::plan_quota(&self.state, &channel.owner_id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                repo::insert(
                    db,
                    NewIntegration {
                        owner_id: channel.owner_id.clone(),
                        channel_id: channel.id.clone(),
                        name: chat.display_name(),
                        chat_id: Some(chat_id.clone()),
                        scopes: tokens::INTEGRATION_SCOPES.join(" "),
                        daily_quota: quota,
                        link: None,
                    },
                    now,
                )
                .await?
            }
        };
        let ttl = chrono::Duration::seconds(
            i64::try_from(self.state.settings.alerts.setup_token_ttl_secs).unwrap_or(900),
        );
        let setup = super::issue_token(
            &self.state,
            &pending.id,
            tokens::KIND_SETUP,
            tokens::INTEGRATION_CREATE,
            Some(ttl),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(integration_id = %pending.id, chat = %redact(&chat_id), "chat-started integration pending");
        let base = self
            .state
            .settings
            .telegram
            .public_url
            .clone()
            .unwrap_or_default();
        self.reply(
            channel,
            &chat_id,
            format!(
                "👋 This chat is registered (integration {id}, pending).\n\nTo finish, your application calls\nPOST {base}/api/createIntegration\nwith the header\nAuthorization: Bearer {token}\n\nThe answer holds the token that sends alerts here. This set-up token works once and expires in {mins} minutes.",
                id = pending.id,
                base = base.trim_end_matches('/'),
                token = setup.token,
                mins = ttl.num_minutes().max(1),
            ),
        );
        Ok(())
    }

    async fn stop(&self, channel: &ChannelRow, chat: &Chat) -> anyhow::Result<()> {
        let chat_id = chat.id.to_string();
        let paused = repo::transition_chat(
            &self.state.db,
            &channel.id,
            &chat_id,
            repo::ChatChange {
                from: Status::Active,
                only_detail: None,
                to: Status::Paused,
                detail: Some(PAUSED_IN_CHAT),
            },
            self.state.clock.now(),
        )
        .await?;
        tracing::info!(chat = %redact(&chat_id), paused, "integrations paused by /stop");
        let reply = if paused > 0 {
            format!("⏸ Paused {paused} integration(s). Send /start to resume.")
        } else {
            "Nothing to pause in this chat.".to_owned()
        };
        self.reply(channel, &chat_id, reply);
        Ok(())
    }

    async fn status(&self, channel: &ChannelRow, chat: &Chat) -> anyhow::Result<()> {
        let chat_id = chat.id.to_string();
        let rows = repo::in_chat(&self.state.db, &channel.id, &chat_id).await?;
        let reply = if rows.is_empty() {
            "No integration is linked to this chat. Send /start to register it.".to_owned()
        } else {
            rows.iter()
                .map(|i| format!("• {} — {}", i.name, i.status))
                .collect::<Vec<_>>()
                .join("\n")
        };
        self.reply(channel, &chat_id, reply);
        Ok(())
    }

    /// The bot was blocked/removed (`gone`) or allowed back.
    async fn membership(
        &self,
        channel: &ChannelRow,
        chat: &Chat,
        gone: bool,
    ) -> anyhow::Result<()> {
        let chat_id = chat.id.to_string();
        let now = self.state.clock.now();
        // Blocked: pause the active ones. Unblocked: resume only what the block paused.
        let change = if gone {
            repo::ChatChange {
                from: Status::Active,
                only_detail: None,
                to: Status::Paused,
                detail: Some(PAUSED_BOT_BLOCKED),
            }
        } else {
            repo::ChatChange {
                from: Status::Paused,
                only_detail: Some(PAUSED_BOT_BLOCKED),
                to: Status::Active,
                detail: None,
            }
        };
        let changed =
            repo::transition_chat(&self.state.db, &channel.id, &chat_id, change, now).await?;
        tracing::info!(chat = %redact(&chat_id), gone, changed, "bot membership changed");
        Ok(())
    }

    /// Sends `text` to the chat in the background, paced like every send of the bot.
    fn reply(&self, channel: &ChannelRow, chat_id: &str, text: String) {
        let running = self.state.outbox.running.clone();
        let registry = self.state.registry.clone();
        let channel_id = channel.id.clone();
        let chat_id = chat_id.to_owned();
        actix::spawn(async move {
            let msg = OutboundMessage {
                id: None,
                recipient: chat_id.clone(),
                text,
                parse_mode: None,
                media: None,
                template: None,
            };
            for attempt in 1..=REPLY_TRIES {
                // Not running here any more (deleted meanwhile): nothing to reply through.
                let Some(sender) = running.get(&channel_id) else {
                    return;
                };
                sender.revive(&registry).await;
                let result = sender.deliver(&msg, REPLY_HORIZON).await;
                match result {
                    Ok(_) => return,
                    Err(e) if e.is_retryable() && attempt < REPLY_TRIES => {
                        actix::clock::sleep(Duration::from_secs(u64::from(attempt))).await;
                    }
                    Err(e) => {
                        tracing::warn!(%channel_id, chat = %redact(&chat_id), code = e.code(), "bot reply not delivered");
                        return;
                    }
                }
            }
        });
    }
}

/// What the Telegram webhook answers when it has handled an update: an empty JSON object.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct TelegramWebhookAck {}

/// Receive a Telegram bot update (Telegram's webhook calls).
///
/// The `X-Telegram-Bot-Api-Secret-Token` header must match the secret registered with
/// `setWebhook`; a 5xx answer makes Telegram send the update again.
#[utoipa::path(
    tag = "webhooks",
    params(
        ("channel_id" = String, Path, description = "The Telegram bot (channel account) the update is for"),
        ("X-Telegram-Bot-Api-Secret-Token" = Option<String>, Header, description = "The secret registered with `setWebhook` for this bot"),
    ),
    request_body(content = Object, content_type = "application/json", description = "A Telegram `Update`"),
    responses(
        (status = 200, description = "Handled (or ignored: not a command, or an unknown bot)", body = TelegramWebhookAck),
        (status = 400, description = "`invalid-update`: the body is not a Telegram update"),
        (status = 401, description = "`invalid-webhook-secret`: missing or wrong X-Telegram-Bot-Api-Secret-Token"),
        (status = 413, description = "`payload-too-large`"),
        (status = 500, description = "`internal-error`: not handled; Telegram sends it again"),
    )
)]
#[post("/telegram/webhook/{channel_id}")]
pub async fn telegram_webhook(
    req: actix_web::HttpRequest,
    path: actix_web::web::Path<ChannelId>,
    body: actix_web::web::Bytes,
    state: actix_web::web::Data<AppState>,
) -> Result<actix_web::HttpResponse, crate::error::ApiError> {
    use crate::error::ApiError;
    let channel_id = path.into_inner();
    let expected = crate::channels::updates::webhook_secret(
        &state.cipher.derive(super::WEBHOOK_KEY_PURPOSE),
        &channel_id,
    );
    let given = req
        .headers()
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !crypto::constant_time_eq(given, expected.as_bytes()) {
        return Err(ApiError::Unauthorized(
            "invalid-webhook-secret",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token".into(),
        ));
    }
    let update: Update = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest("invalid-update", e.to_string()))?;
    BotUpdates::new(state.get_ref().clone())
        .handle(&channel_id, update)
        .await
        .map_err(ApiError::Unexpected)?;
    Ok(actix_web::HttpResponse::Ok().json(TelegramWebhookAck {}))
}

impl UpdateSink for BotUpdates {
    fn handle(
        &self,
        channel_id: ChannelId,
        update: Update,
    ) -> BoxFuture<'static, anyhow::Result<()>> {
        let this = self.clone();
        Box::pin(async move { BotUpdates::handle(&this, &channel_id, update).await })
    }
}

/// `/cmd[@bot] [arg]` → (`cmd`, `arg`), ignoring commands addressed to another bot.
pub(crate) fn parse_command(
    text: &str,
    bot_username: Option<&str>,
) -> Option<(String, Option<String>)> {
    let mut parts = text.trim().splitn(2, char::is_whitespace);
    let head = parts.next()?.strip_prefix('/')?;
    let (command, target) = match head.split_once('@') {
        Some((c, t)) => (c, Some(t)),
        None => (head, None),
    };
    if let (Some(target), Some(me)) = (target, bot_username)
        && !target.eq_ignore_ascii_case(me)
    {
        return None;
    }
    let arg = parts
        .next()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| a.split_whitespace().next().unwrap_or(a).to_owned());
    Some((command.to_ascii_lowercase(), arg))
}

#[cfg(test)]
mod tests {
    use super::parse_command;

    #[test]
    fn commands_parse_like_telegram_sends_them() {
        assert_eq!(
            parse_command("/start abc_-1", Some("pingbot")),
            Some(("start".into(), Some("abc_-1".into())))
        );
        assert_eq!(
            parse_command("/start@PingBot xyz", Some("pingbot")),
            Some(("start".into(), Some("xyz".into())))
        );
        assert_eq!(parse_command("/start@otherbot xyz", Some("pingbot")), None);
        assert_eq!(
            parse_command("  /stop  ", Some("pingbot")),
            Some(("stop".into(), None))
        );
        assert_eq!(parse_command("hello", Some("pingbot")), None);
    }
}

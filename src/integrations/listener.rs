//! Integrations' part in a message's life: alert quotas at admission, a migrated chat followed,
//! an unreachable chat's integrations paused.
use chrono::NaiveDate;
use futures::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbBackend, DbErr, Statement};

use super::{PAUSED_BOT_BLOCKED, Status, repo};
use crate::{
    clock::Clock,
    outbox::{
        Outbox, Pending,
        hooks::{AccountDown, Down, Listener, Outcome, Quotas},
        repo::{MessageRow, NewMessage},
    },
};

/// Integrations' daily alert quotas.
pub struct AlertQuotas;

impl Quotas for AlertQuotas {
    fn take(
        &self,
        backend: DbBackend,
        integration_id: &str,
        day: NaiveDate,
        n: i32,
    ) -> Option<Statement> {
        Some(if n == 1 {
            // Also starts a new day's count.
            repo::take_quota(backend, integration_id, day)
        } else {
            repo::take_quota_n(backend, integration_id, day, n)
        })
    }
}

/// The integrations listener.
pub struct IntegrationsListener {
    /// "Now" for the pause's timestamp.
    pub clock: Clock,
}

impl Listener for IntegrationsListener {
    fn name(&self) -> &'static str {
        "integrations"
    }

    fn record<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        msg: &'a MessageRow,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            if let Outcome::Migrated { to } = outcome {
                repo::move_chat(txn, &msg.channel_id, &msg.recipient, to).await?;
            }
            Ok(())
        })
    }

    /// A chat the bot can no longer write to pauses its integrations (resumed by `/start` or an
    /// unblock), so their alerts are refused with a clear error instead of failing one by one.
    fn after<'a>(
        &'a self,
        outbox: &'a Outbox,
        msg: &'a MessageRow,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Outcome::Failed { code, .. } = outcome else {
                return Ok(());
            };
            let code = code.as_str();
            if !matches!(
                code,
                "bot-blocked" | "bot-kicked" | "user-deactivated" | "chat-not-found"
            ) {
                return Ok(());
            }
            let paused = repo::transition_chat(
                &outbox.db,
                &msg.channel_id,
                &msg.recipient,
                repo::ChatChange {
                    from: Status::Active,
                    only_detail: None,
                    to: Status::Paused,
                    detail: Some(if code == "chat-not-found" {
                        "chat-not-found"
                    } else {
                        PAUSED_BOT_BLOCKED
                    }),
                },
                self.clock.now(),
            )
            .await?;
            if paused > 0 {
                tracing::info!(channel_id = %msg.channel_id, chat = %crate::telemetry::redact(&msg.recipient), paused, code, "integrations paused: chat unreachable");
            }
            Ok(())
        })
    }

    /// One of the owner's accounts went down (a WhatsApp Web number logged out, taken over,
    /// barred): the owner hears it in the chat of their first active integration, if they have
    /// one. It goes through the outbox like any alert, without taking from the daily quota.
    fn account_down<'a>(
        &'a self,
        outbox: &'a Outbox,
        down: &'a AccountDown<'a>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let integrations = repo::list_for(&outbox.db, down.owner_id, None).await?;
            let Some((integration, chat)) = integrations.into_iter().find_map(|i| {
                let chat = i.chat_id.clone()?;
                (i.status == Status::Active.as_str()).then_some((i, chat))
            }) else {
                return Ok(());
            };
            if &integration.channel_id == down.channel_id {
                return Ok(());
            }
            let name = crate::channels::repo::find(&outbox.db, down.channel_id)
                .await?
                .map(|c| c.name)
                .unwrap_or_else(|| down.channel_id.to_string());
            let message = NewMessage {
                owner_id: down.owner_id.clone(),
                channel_id: integration.channel_id.clone(),
                recipient: chat,
                body: match down.kind {
                    Down::NeedsOwner => {
                        format!("⚠️ Pregonero: «{name}» cannot send. {}", down.reason)
                    }
                    Down::Unreachable => format!(
                        "⚠️ Pregonero: «{name}» is disconnected ({}). It reconnects by itself; its messages wait.",
                        down.reason
                    ),
                    Down::Back => format!("✅ Pregonero: «{name}» is connected again."),
                },
                parse_mode: None,
                media_id: None,
                idempotency_key: None,
                request_hash: None,
                integration_id: Some(integration.id.clone()),
            };
            crate::outbox::admit(
                outbox,
                Pending {
                    message,
                    quota: None,
                },
            )
            .await?;
            tracing::info!(channel_id = %down.channel_id, integration_id = %integration.id, "owner told that an account is down");
            Ok(())
        })
    }
}

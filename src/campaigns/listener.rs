//! Campaigns' part in the message lifecycle: an account that went down (a WhatsApp Web number
//! logged out, taken over or barred) pauses its campaigns, so they resume where they stopped
//! once the owner has mended it, instead of failing every recipient meanwhile.
use futures::future::BoxFuture;

use crate::outbox::{
    Outbox,
    hooks::{AccountDown, Listener},
};

/// Pauses an account's campaigns when it goes down.
pub struct CampaignsListener;

impl Listener for CampaignsListener {
    fn name(&self) -> &'static str {
        "campaigns"
    }

    fn account_down<'a>(
        &'a self,
        outbox: &'a Outbox,
        down: &'a AccountDown<'a>,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            // A number that reconnects by itself holds its messages meanwhile: nothing to pause.
            if down.kind != crate::outbox::hooks::Down::NeedsOwner {
                return Ok(());
            }
            let reason = format!("paused: {}", down.reason);
            let paused = super::repo::pause_channel(&outbox.db, down.channel_id, &reason).await?;
            if !paused.is_empty() {
                tracing::warn!(channel_id = %down.channel_id, campaigns = paused.len(), reason = %down.reason, "campaigns paused: their account is down");
            }
            Ok(())
        })
    }
}

//! Turns message outcomes into live updates (`message.status`), after they are recorded.
use futures::future::BoxFuture;
use serde_json::json;

use super::{Live, LiveEvent};
use crate::outbox::{
    Outbox,
    hooks::{Listener, Outcome},
    repo::MessageRow,
};

/// Publishes each recorded status change of a message to its owner's live streams.
pub struct LiveListener {
    /// The hub.
    pub live: Live,
}

impl Listener for LiveListener {
    fn name(&self) -> &'static str {
        "live"
    }

    fn after<'a>(
        &'a self,
        _outbox: &'a Outbox,
        msg: &'a MessageRow,
        outcome: &'a Outcome,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let Some(status) = outcome.event() else {
                return Ok(());
            };
            let mut data = json!({
                "message_id": msg.id, "status": status, "channel_id": msg.channel_id,
                "campaign_id": msg.campaign_id, "at": chrono::Utc::now(),
            });
            if let Outcome::Failed { code, .. } | Outcome::Skipped { code } = outcome {
                data["error_code"] = json!(code);
            }
            self.live
                .publish(LiveEvent {
                    owner: msg.owner_id.clone(),
                    kind: "message.status".into(),
                    data,
                })
                .await;
            Ok(())
        })
    }
}

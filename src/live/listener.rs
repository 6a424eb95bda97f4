//! Turns message outcomes into live updates (`message.status`, and `channel.status` when a
//! provider rejects an account's credentials), after they are recorded.
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
            // The provider rejected the account's credentials: the delivery core has marked
            // the channel `unauthorized`; its owner's Channels page shows it at once.
            if let Outcome::Failed { code, detail } = outcome
                && code == "account-unauthorized"
            {
                self.live
                    .publish(LiveEvent {
                        owner: msg.owner_id.clone(),
                        kind: "channel.status".into(),
                        data: json!({
                            "channel_id": msg.channel_id, "status": "unauthorized",
                            "status_detail": detail, "at": chrono::Utc::now(),
                        }),
                    })
                    .await;
            }
            Ok(())
        })
    }
}

//! Live updates: what happens to a user's messages, pushed to their open dashboards as
//! server-sent events (`GET /api/v1/live`). With `redis_url` set every replica publishes to one
//! Redis channel (`pregonero:live`) and forwards what it hears there to its own streams, so a
//! browser connected to any replica sees the sends of every replica; without Redis (or while it
//! does not answer) events reach the streams of their own process. Live updates are a view:
//! an event missed (a stream reconnecting, a slow reader) is never replayed, and the ledger
//! (`GET /api/v1/messages/{id}`, the dashboard's lists) stays the record.
mod listener;
mod routes;

use std::{sync::Arc, time::Duration};

use bb8_redis::redis;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};

pub use listener::LiveListener;
pub use routes::configure;

use crate::{domain::UserId, shared::Shared};

/// The Redis channel every replica publishes to and listens on.
const CHANNEL: &str = "pregonero:live";
/// Events a slow stream may fall behind by before it is told it missed some.
const BUFFER: usize = 1024;
/// Time between two attempts to listen on Redis again.
const RECONNECT: Duration = Duration::from_secs(1);
/// Most events published in one Redis message (a JSON array).
const MAX_PUBLISH: usize = 256;

/// One update, for one user's streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiveEvent {
    /// Whose it is: only their streams get it.
    pub owner: UserId,
    /// The SSE event name, e.g. `message.status`.
    pub kind: String,
    /// The event's JSON.
    pub data: serde_json::Value,
}

/// The hub: publish an event, subscribe to this replica's stream of them.
#[derive(Clone)]
pub struct Live {
    tx: broadcast::Sender<Arc<LiveEvent>>,
    /// To the task that publishes to Redis (`None`: this process only).
    outgoing: Option<mpsc::Sender<LiveEvent>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("redis", &self.outgoing.is_some())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// A hub in this process only.
    pub fn local() -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        Self { tx, outgoing: None }
    }

    /// A hub that publishes through `shared` and listens on `redis_url` (a connection of its
    /// own: a subscribed connection can do nothing else), reconnecting while the process runs.
    /// Events published while the previous Redis message is on its way go out together in the
    /// next one (three events per campaign message, one Redis round trip each, were a tenth of
    /// a delivery's server CPU).
    pub fn shared(shared: Shared, redis_url: String) -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        let (outgoing, rx) = mpsc::channel(BUFFER);
        tokio::spawn(publish_batches(shared, tx.clone(), rx));
        let forward = tx.clone();
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                match listen(&redis_url, &forward).await {
                    Ok(()) => warned = false,
                    Err(e) if !warned => {
                        warned = true;
                        tracing::warn!(error = %format!("{e:#}"), "live updates: cannot listen on redis; streams get this replica's events only until it answers");
                    }
                    Err(_) => {}
                }
                tokio::time::sleep(RECONNECT).await;
            }
        });
        Self {
            tx,
            outgoing: Some(outgoing),
        }
    }

    /// Sends `event` to its owner's streams on every replica (this one's only without Redis).
    pub async fn publish(&self, event: LiveEvent) {
        let event = match &self.outgoing {
            Some(outgoing) => match outgoing.try_send(event) {
                Ok(()) => return,
                // Redis is behind by a whole buffer: this replica's streams still get it.
                Err(mpsc::error::TrySendError::Full(e) | mpsc::error::TrySendError::Closed(e)) => e,
            },
            None => event,
        };
        let _ = self.tx.send(Arc::new(event));
    }

    /// This replica's events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }
}

/// Publishes what [`Live::publish`] hands over: everything waiting, as one Redis message (one
/// event, or a JSON array of them). What Redis does not take reaches this replica's streams.
async fn publish_batches(
    shared: Shared,
    local: broadcast::Sender<Arc<LiveEvent>>,
    mut rx: mpsc::Receiver<LiveEvent>,
) {
    let mut batch = Vec::with_capacity(MAX_PUBLISH);
    while rx.recv_many(&mut batch, MAX_PUBLISH).await > 0 {
        let text = match batch.as_slice() {
            [one] => serde_json::to_string(one),
            many => serde_json::to_string(many),
        };
        match text {
            // Our own listener hears it back, like every other replica's.
            Ok(text) => match shared.publish(CHANNEL, &text).await {
                Ok(()) => {
                    batch.clear();
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %format!("{e:#}"), "live updates kept in this replica")
                }
            },
            Err(e) => tracing::warn!(error = %e, "live update not serialisable"),
        }
        for event in batch.drain(..) {
            let _ = local.send(Arc::new(event));
        }
    }
}

/// One Redis message's events: one event, or a JSON array of them.
fn decode(payload: &str) -> serde_json::Result<Vec<LiveEvent>> {
    if payload.trim_start().starts_with('[') {
        serde_json::from_str(payload)
    } else {
        serde_json::from_str::<LiveEvent>(payload).map(|e| vec![e])
    }
}

/// Forwards what Redis says on [`CHANNEL`] until the connection ends.
async fn listen(url: &str, forward: &broadcast::Sender<Arc<LiveEvent>>) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(CHANNEL).await?;
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let payload: String = message.get_payload()?;
        match decode(&payload) {
            Ok(events) => {
                for event in events {
                    let _ = forward.send(Arc::new(event));
                }
            }
            Err(e) => tracing::debug!(error = %e, "not a live update"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redis_message_holds_one_event_or_many() {
        let event = |kind: &str| LiveEvent {
            owner: UserId::from("u1".to_owned()),
            kind: kind.into(),
            data: serde_json::json!({"n": 1}),
        };
        let one = serde_json::to_string(&event("a")).expect("json");
        let many = serde_json::to_string(&[event("a"), event("b")]).expect("json");
        let kinds = |p: &str| -> Vec<String> {
            decode(p)
                .expect("decoded")
                .into_iter()
                .map(|e| e.kind)
                .collect()
        };
        assert_eq!(kinds(&one), ["a"]);
        assert_eq!(kinds(&many), ["a", "b"]);
        assert!(decode("{\"not\": \"an event\"}").is_err());
    }
}

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
use tokio::sync::broadcast;

pub use listener::LiveListener;
pub use routes::configure;

use crate::{domain::UserId, shared::Shared};

/// The Redis channel every replica publishes to and listens on.
const CHANNEL: &str = "pregonero:live";
/// Events a slow stream may fall behind by before it is told it missed some.
const BUFFER: usize = 1024;
/// Time between two attempts to listen on Redis again.
const RECONNECT: Duration = Duration::from_secs(1);

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
    shared: Option<Shared>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("redis", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

impl Live {
    /// A hub in this process only.
    pub fn local() -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
        Self { tx, shared: None }
    }

    /// A hub that publishes through `shared` and listens on `redis_url` (a connection of its
    /// own: a subscribed connection can do nothing else), reconnecting while the process runs.
    pub fn shared(shared: Shared, redis_url: String) -> Self {
        let (tx, _) = broadcast::channel(BUFFER);
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
            shared: Some(shared),
        }
    }

    /// Sends `event` to its owner's streams on every replica (this one's only without Redis).
    pub async fn publish(&self, event: LiveEvent) {
        if let Some(shared) = &self.shared {
            match serde_json::to_string(&event) {
                Ok(text) => match shared.publish(CHANNEL, &text).await {
                    // Our own listener hears it back, like every other replica's.
                    Ok(()) => return,
                    Err(e) => {
                        tracing::debug!(error = %format!("{e:#}"), "live update kept in this replica")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "live update not serialisable"),
            }
        }
        let _ = self.tx.send(Arc::new(event));
    }

    /// This replica's events, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
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
        match serde_json::from_str::<LiveEvent>(&payload) {
            Ok(event) => {
                let _ = forward.send(Arc::new(event));
            }
            Err(e) => tracing::debug!(error = %e, "not a live update"),
        }
    }
    Ok(())
}

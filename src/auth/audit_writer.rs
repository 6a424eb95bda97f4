//! The audit log's writer: group commit of the entries the audit middleware records.
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, EntityTrait, Set};
use tokio::sync::{mpsc, oneshot};

use crate::domain::UserId;
use crate::{
    entities::audit_log,
    outbox::writer::{LedgerWriter, Rider},
};

/// A batch of entries riding in the ledger's transaction.
struct Entries(Vec<audit_log::ActiveModel>);

impl Rider for Entries {
    fn statements(self: Box<Self>, backend: sea_orm::DbBackend) -> Vec<sea_orm::Statement> {
        use sea_orm::QueryTrait;
        crate::db::pow2_chunks(self.0)
            .into_iter()
            .map(|chunk| audit_log::Entity::insert_many(chunk).build(backend))
            .collect()
    }
}

/// One audit entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The acting user, if known.
    pub actor_id: Option<UserId>,
    /// `api_key`, `session`, `bearer` or `anonymous`.
    pub actor_kind: &'static str,
    /// `METHOD /route/{pattern}`.
    pub action: String,
    /// Path parameters or another non-secret description of the target, as JSON.
    pub target: Option<serde_json::Value>,
    /// HTTP status of the answer.
    pub status: u16,
    /// Client address.
    pub ip: Option<String>,
    /// Request id (also in the `X-Request-Id` header and the logs).
    pub request_id: Option<String>,
}

/// Entries written in one transaction at most.
const MAX_BATCH: usize = 512;
/// Entries waiting for the writer before requests wait for room.
const CAPACITY: usize = 4096;

type Pending = (audit_log::ActiveModel, oneshot::Sender<()>);

/// Group commit for the audit log: requests hand their entry to one task, which writes whatever
/// queued up meanwhile in one statement. One INSERT per request made every mutating API call
/// wait for SQLite's single writer (`POST /api/v1/messages` topped out near 1,500/s on it).
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditWriter")
    }
}

impl AuditWriter {
    /// Starts the writer on the current runtime; it ends when every handle is dropped. With
    /// `ledger` (SQLite), each batch rides in the ledger writer's next transaction instead of
    /// taking SQLite's one write lock for a commit of its own.
    pub fn start(db: DatabaseConnection, ledger: Option<LedgerWriter>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (rows, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let n = rows.len();
                let written = match &ledger {
                    Some(ledger) => ledger.ride(Box::new(Entries(rows))).await,
                    None => audit_log::Entity::insert_many(rows)
                        .exec_without_returning(&db)
                        .await
                        .map(|_| ())
                        .map_err(anyhow::Error::from),
                };
                if let Err(e) = written {
                    tracing::error!(error = %e, entries = n, "could not write the audit log");
                }
                for reply in replies {
                    let _ = reply.send(());
                }
            }
        });
        Self { tx }
    }

    /// Writes one entry and returns once it is committed; a failure is logged and does not
    /// fail the request.
    pub async fn record(&self, at: DateTime<Utc>, entry: Entry) {
        let row = audit_log::ActiveModel {
            id: Set(uuid::Uuid::now_v7().to_string()),
            at: Set(at),
            actor_id: Set(entry.actor_id),
            actor_kind: Set(entry.actor_kind.to_owned()),
            action: Set(entry.action),
            target: Set(entry.target.map(|t| t.to_string())),
            status: Set(i32::from(entry.status)),
            ip: Set(entry.ip),
            request_id: Set(entry.request_id),
        };
        let (reply, done) = oneshot::channel();
        if self.tx.send((row, reply)).await.is_err() || done.await.is_err() {
            tracing::error!("the audit writer stopped; an entry was not written");
        }
    }
}

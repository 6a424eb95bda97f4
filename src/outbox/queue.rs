//! The delivery queue: apalis storage in SQLite or PostgreSQL, next to the app's tables.
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use sea_orm::DatabaseConnection;

use super::deliver::DeliverJob;
use crate::config::Settings;
use crate::domain::MessageId;

/// Jobs apalis may retry by itself when the handler fails for infrastructure reasons (DB down).
const INFRA_RETRIES: usize = 25;

/// Where delivery jobs are stored; follows the app's database.
#[derive(Clone)]
pub enum Queue {
    /// apalis-sqlite, same file as the app.
    Sqlite(SqliteStorage<DeliverJob>),
    /// apalis-postgres, schema `apalis`.
    Postgres(PostgresStorage<DeliverJob>),
}

/// The apalis queue delivery jobs live in.
const QUEUE_NAME: &str = "pregonero::deliver";

/// Worker heartbeat: a dead process's claimed jobs go back to the queue after two missed beats,
/// so it follows the message lease.
fn heartbeat(settings: &Settings) -> Duration {
    Duration::from_secs((settings.delivery.lease_secs / 2).clamp(1, 30))
}

impl Queue {
    /// The queue in `db`'s database, on `db`'s pool; `setup` creates its tables first.
    pub async fn attach(
        db: &DatabaseConnection,
        settings: &Settings,
        setup: bool,
    ) -> anyhow::Result<Self> {
        let heartbeat = heartbeat(settings);
        if settings.is_postgres() {
            let pool = db.get_postgres_connection_pool();
            if setup {
                PostgresStorage::setup(pool)
                    .await
                    .context("could not set up the apalis queue tables")?;
            }
            let config = apalis_postgres::Config::default()
                .queue(QUEUE_NAME)
                .heartbeat_interval(heartbeat);
            return Ok(Queue::Postgres(
                PostgresStorage::new(pool).with_config(config),
            ));
        }
        let pool = db.get_sqlite_connection_pool();
        if setup {
            // apalis's setup switches its connection to `synchronous=OFF`; give it a throwaway pool.
            let options = (*pool.connect_options()).clone();
            let setup_pool = sea_orm::sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await?;
            SqliteStorage::setup(&setup_pool)
                .await
                .context("could not set up the apalis queue tables")?;
            setup_pool.close().await;
        }
        let config = apalis_sqlite::Config::default()
            .queue(QUEUE_NAME)
            .heartbeat_interval(heartbeat);
        Ok(Queue::Sqlite(SqliteStorage::new(pool).with_config(config)))
    }

    /// Enqueues delivery of `message_id` after `delay`.
    pub async fn push(&self, message_id: &MessageId, delay: Duration) -> anyhow::Result<()> {
        let task = TaskBuilder::new(DeliverJob {
            message_id: message_id.to_owned(),
        })
        .run_after(delay)
        .max_attempts(INFRA_RETRIES)
        .build();
        match self {
            Queue::Sqlite(s) => s
                .clone()
                .push_task(task)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Queue::Postgres(s) => s
                .clone()
                .push_task(task)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
        }
        .context("could not enqueue delivery job")
    }

    /// Enqueues delivery of every message in `ids` now, in one transaction.
    pub async fn push_many(&self, ids: &[MessageId]) -> anyhow::Result<()> {
        let due: Vec<_> = ids.iter().map(|id| (id.clone(), Duration::ZERO)).collect();
        self.push_many_after(&due).await
    }

    /// Whether jobs are written by [`Queue::push_statement`] inside the caller's transaction (SQLite,
    /// where every write takes the one write lock: a separate push transaction after each
    /// ledger batch doubled the writer's time per batch). PostgreSQL pushes through apalis,
    /// overlapping the next batch.
    pub fn pushes_in_transaction(&self) -> bool {
        matches!(self, Queue::Sqlite(_))
    }

    /// The statement that writes the jobs of `due` (message id, delay) into the SQLite queue's
    /// table, to run inside the caller's transaction, as apalis-sqlite's own push writes them (its statement is not
    /// public): the ledger rows and their jobs commit together, so there is no window where a
    /// committed message has no job. The schema is apalis-sqlite 1.0.0's, pinned in Cargo.toml;
    /// the delivery tests fail if it moves.
    pub fn push_statement(
        due: &[(MessageId, Duration)],
    ) -> Result<Option<sea_orm::Statement>, sea_orm::DbErr> {
        use sea_orm::{DbBackend, Statement, Value};
        if due.is_empty() {
            return Ok(None);
        }
        // apalis-sqlite's `run_after`: whole seconds of (now + delay); metadata of a plain task.
        let now = std::time::SystemTime::now();
        let metadata = serde_json::to_string(TaskBuilder::new(()).build().metadata())
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
        let max_attempts = i64::try_from(INFRA_RETRIES).unwrap_or(i64::MAX);
        let mut sql = String::from(
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at, priority, metadata) VALUES ",
        );
        let mut values: Vec<Value> = Vec::with_capacity(due.len() * 6);
        for (i, (id, delay)) in due.iter().enumerate() {
            let job = serde_json::to_vec(&DeliverJob {
                message_id: id.clone(),
            })
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
            let run_at = (now + *delay)
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("(?, ?, ?, 'Pending', 0, ?, ?, 0, ?)");
            values.extend([
                Value::from(job),
                Value::from(ulid::Ulid::generate().to_string()),
                Value::from(QUEUE_NAME),
                Value::from(max_attempts),
                Value::from(i64::try_from(run_at).unwrap_or(i64::MAX)),
                Value::from(metadata.clone()),
            ]);
        }
        Ok(Some(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        )))
    }

    /// Enqueues delivery of each message after its delay, in one transaction.
    pub async fn push_many_after(&self, due: &[(MessageId, Duration)]) -> anyhow::Result<()> {
        let tasks = due.iter().map(|(id, delay)| {
            TaskBuilder::new(DeliverJob {
                message_id: id.clone(),
            })
            .run_after(*delay)
            .max_attempts(INFRA_RETRIES)
            .build()
        });
        let tasks = futures::stream::iter(tasks.collect::<Vec<_>>());
        match self {
            Queue::Sqlite(s) => s
                .clone()
                .push_all(tasks)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
            Queue::Postgres(s) => s
                .clone()
                .push_all(tasks)
                .await
                .map_err(|e| anyhow::anyhow!("{e}")),
        }
        .context("could not enqueue delivery jobs")
    }

    /// Deletes up to `limit` jobs that finished (done, killed, or failed for good) more than
    /// `older_than` ago; returns how many. apalis keeps every finished job, and its ack statement
    /// reads all the jobs a worker ever locked, so without this each ack grows with the queue's
    /// history (at 30,000 sent messages an ack took 17 ms on PostgreSQL).
    pub async fn purge_finished(&self, older_than: Duration, limit: u64) -> anyhow::Result<u64> {
        let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let deleted = match self {
            // `done_at` is in Unix seconds here.
            Queue::Sqlite(s) => sea_orm::sqlx::query(
                "DELETE FROM Jobs WHERE rowid IN (SELECT rowid FROM Jobs \
                 WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
                 AND done_at < CAST(strftime('%s', 'now') AS INTEGER) - ?1 LIMIT ?2)",
            )
            .bind(secs)
            .bind(limit)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
            Queue::Postgres(s) => sea_orm::sqlx::query(
                "DELETE FROM apalis.jobs WHERE id IN (SELECT id FROM apalis.jobs \
                 WHERE (status IN ('Done', 'Killed') OR (status = 'Failed' AND attempts >= max_attempts)) \
                 AND done_at < now() - make_interval(secs => $1) LIMIT $2)",
            )
            .bind(secs as f64)
            .bind(limit)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
        };
        deleted.context("could not delete finished delivery jobs")
    }

    /// Reclaims the space of deleted and superseded job rows (PostgreSQL: `VACUUM (ANALYZE)` of
    /// the queue's table alone; SQLite reuses freed pages by itself). Every job is written three
    /// or four times (pushed, fetched, running, done) and each write leaves a dead row version
    /// behind, with an entry in each of the table's six indexes; until a vacuum, every fetch of
    /// pending jobs and every ack walks past them. Autovacuum does it when it is on and gets to
    /// it; a campaign sending hundreds of messages a second outruns its defaults.
    pub async fn vacuum(&self) -> anyhow::Result<()> {
        if let Queue::Postgres(s) = self {
            sea_orm::sqlx::query("VACUUM (ANALYZE) apalis.jobs")
                .execute(s.pool())
                .await
                .context("could not vacuum the delivery queue's table")?;
        }
        Ok(())
    }

    /// Unlocks the jobs that workers named `<prefix>…` had taken and not finished: at start, the
    /// workers of this node's earlier runs, dead since (otherwise their jobs wait for apalis's
    /// orphan timeout, ten heartbeats of half a lease each). Returns how many.
    pub async fn release_locked_by(&self, prefix: &str) -> anyhow::Result<u64> {
        self.release_locked(prefix, "%", true).await
    }

    /// Unlocks the jobs that the worker named `name` had fetched and not started: a worker that
    /// lost its database and was restarted under a new name left its buffered jobs locked, and
    /// apalis would hand them out again only after its heartbeat timeout. Its running jobs are
    /// left locked: their deliveries run on in this process (apalis's heartbeat timeout frees
    /// the jobs later, and their messages are final by then).
    pub async fn release_worker(&self, name: &str) -> anyhow::Result<u64> {
        self.release_locked(name, "", false).await
    }

    /// `running_too`: the running jobs as well as the fetched ones.
    async fn release_locked(
        &self,
        name: &str,
        wildcard: &str,
        running_too: bool,
    ) -> anyhow::Result<u64> {
        // A NULL second status matches nothing.
        let running = running_too.then_some("Running");
        // LIKE's wildcards in a node name are literal.
        let pattern = format!(
            "{}{wildcard}",
            name.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let released = match self {
            Queue::Sqlite(s) => sea_orm::sqlx::query(
                "UPDATE Jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, done_at = NULL \
                 WHERE status IN ('Queued', ?2) AND lock_by LIKE ?1 ESCAPE '\\'",
            )
            .bind(pattern)
            .bind(running)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
            Queue::Postgres(s) => sea_orm::sqlx::query(
                "UPDATE apalis.jobs SET status = 'Pending', lock_by = NULL, lock_at = NULL, done_at = NULL \
                 WHERE status IN ('Queued', $2) AND lock_by LIKE $1 ESCAPE '\\'",
            )
            .bind(pattern)
            .bind(running)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
        };
        released.context("could not release the jobs of a dead worker")
    }

    /// Checks the queue's tables answer (for `/ready`).
    pub async fn ping(&self) -> anyhow::Result<()> {
        match self {
            Queue::Sqlite(s) => {
                sea_orm::sqlx::query("SELECT 1 FROM Jobs LIMIT 1")
                    .execute(s.pool())
                    .await
                    .context("the Jobs table is not readable")?;
            }
            Queue::Postgres(s) => {
                sea_orm::sqlx::query("SELECT 1 FROM apalis.jobs LIMIT 1")
                    .execute(s.pool())
                    .await
                    .context("apalis.jobs is not readable")?;
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Queue::Sqlite(_) => "Queue::Sqlite",
            Queue::Postgres(_) => "Queue::Postgres",
        })
    }
}

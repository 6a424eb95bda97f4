//! The delivery queue: apalis storage in SQLite or PostgreSQL, next to the app's tables.
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;

use super::deliver::DeliverJob;

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

impl Queue {
    /// Enqueues delivery of `message_id` after `delay`.
    pub async fn push(&self, message_id: &str, delay: Duration) -> anyhow::Result<()> {
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
    pub async fn push_many(&self, ids: &[String]) -> anyhow::Result<()> {
        let tasks = ids.iter().map(|id| {
            TaskBuilder::new(DeliverJob {
                message_id: id.clone(),
            })
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

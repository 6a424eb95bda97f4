//! Event ingestion (drop-in for the event-ingestion MVP): `POST /events` validates at the edge and
//! answers `202` only once the event is committed (group commit through [`EventWriter`]);
//! `GET /events` reads by service and time with keyset pagination; a scheduled job enforces
//! retention.
pub mod breaker;
mod routes;
mod rule_routes;
pub mod rules;
mod validate;
pub mod writer;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

pub use routes::configure;
pub use rule_routes::configure as configure_rules;
pub use rules::RuleEngine;
pub use validate::{NewEvent, validate_body};
pub use writer::{EventWriter, WriterOptions};

use crate::entities::events;

/// Rows deleted per statement by the retention job (short transactions, ingestion keeps going).
const RETENTION_CHUNK: u64 = 5_000;

/// Deletes events older than `cutoff` in chunks; returns how many went.
pub async fn delete_older_than(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let mut total = 0;
    loop {
        let seqs: Vec<i64> = events::Entity::find()
            .select_only()
            .column(events::Column::Seq)
            .filter(events::Column::Timestamp.lt(cutoff))
            .limit(RETENTION_CHUNK)
            .into_tuple()
            .all(db)
            .await?;
        if seqs.is_empty() {
            return Ok(total);
        }
        let n = seqs.len() as u64;
        events::Entity::delete_many()
            .filter(events::Column::Seq.is_in(seqs))
            .exec(db)
            .await?;
        total += n;
        if n < RETENTION_CHUNK {
            return Ok(total);
        }
        // Let the ingestion writer in between chunks.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

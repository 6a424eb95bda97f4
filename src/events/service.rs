//! What event ingestion and queries do, whatever route they come by.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    EventError,
    repo::{self, EventRow, Filter},
    validate::{NewEvent, validate_body},
    writer::SubmitError,
};
use crate::{domain::UserId, state::AppState};

/// Most events per page.
pub const MAX_LIMIT: u64 = 1_000;

/// Longest accepted body: the largest allowed batch of the largest allowed events.
pub fn body_limit(state: &AppState) -> usize {
    let e = &state.settings.events;
    e.max_request_events
        .saturating_mul(e.max_message_bytes + e.max_metadata_bytes + 512)
        .max(64 * 1024)
}

/// What was stored.
pub struct Ingested {
    /// The events' ids, in the order given.
    pub ids: Vec<String>,
    /// Whether the body was an array (answer with the list) or one event.
    pub is_array: bool,
}

/// Validates and stores `owner`'s event or batch (`allow_single`: a bare object is accepted).
/// Answers once the events are committed. With an idempotency key, a repeat answers the ids
/// stored the first time.
pub async fn ingest(
    state: &AppState,
    owner: &UserId,
    body: &Value,
    key: Option<&str>,
    allow_single: bool,
) -> Result<Ingested, EventError> {
    let now = state.clock.now();
    let (events, is_array) = validate_body(body, &state.settings.events, now, allow_single)
        .map_err(|errors| {
            metrics::counter!("pregonero_events_rejected_total", "reason" => "invalid")
                .increment(1);
            EventError::Invalid(errors)
        })?;
    let ids = match key {
        None => {
            let (ids, rows) = repo::new_rows(events, now, owner, None);
            submit(state, rows).await?;
            ids
        }
        Some(key) => idempotent(state, events, now, owner, key).await?,
    };
    Ok(Ingested { ids, is_array })
}

async fn submit(state: &AppState, rows: Vec<repo::NewEventRow>) -> Result<(), EventError> {
    let rejected = |reason: &'static str| {
        metrics::counter!("pregonero_events_rejected_total", "reason" => reason).increment(1);
    };
    match state.events.submit(rows).await {
        Ok(()) => {
            metrics::counter!("pregonero_events_accepted_total").increment(1);
            Ok(())
        }
        Err(SubmitError::Full) => {
            rejected("buffer-full");
            Err(EventError::BufferFull(state.events.in_use()))
        }
        Err(SubmitError::CircuitOpen(retry_after)) => {
            rejected("circuit-open");
            Err(EventError::CircuitOpen(retry_after))
        }
        Err(SubmitError::Failed(e)) => {
            rejected("storage-unavailable");
            tracing::warn!(error = %e, "events not stored");
            Err(EventError::StorageUnavailable)
        }
    }
}

/// With an `Idempotency-Key`: insert what is new (the key, or `key#i` per event of a batch),
/// then answer the ids stored under those keys, whoever stored them first.
async fn idempotent(
    state: &AppState,
    events: Vec<NewEvent>,
    now: DateTime<Utc>,
    owner: &UserId,
    key: &str,
) -> Result<Vec<String>, EventError> {
    let owned = repo::owned_key(owner, key);
    let keys: Vec<String> = if events.len() > 1 {
        (0..events.len()).map(|i| format!("{owned}#{i}")).collect()
    } else {
        vec![owned]
    };
    state.events.admit().map_err(EventError::CircuitOpen)?;
    let (_, rows) = repo::new_rows(events, now, owner, Some(key));
    repo::insert_new_keys(&state.db, rows).await?;
    let found = repo::ids_of_keys(&state.db, &keys).await?;
    keys.iter()
        .map(|k| {
            found
                .iter()
                .find(|(_, fk)| fk.as_deref() == Some(k.as_str()))
                .map(|(id, _)| id.clone())
                .ok_or_else(|| EventError::Unexpected(anyhow::anyhow!("idempotent event vanished")))
        })
        .collect()
}

/// A query over stored events.
#[derive(Debug)]
pub struct Query {
    /// Which events.
    pub filter: Filter,
    /// Page size (1 to [`MAX_LIMIT`]).
    pub limit: u64,
    /// From a `next_cursor` this server gave.
    pub cursor: Option<String>,
    /// 1-based page (an offset; the seed's paging).
    pub page: Option<u64>,
    /// Count the matches too.
    pub count: bool,
}

/// One page of a query.
pub struct Page {
    /// Oldest first by `(timestamp, seq)`.
    pub rows: Vec<EventRow>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
    /// How many match, when asked.
    pub total: Option<u64>,
}

fn encode_cursor(e: &EventRow) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}", e.timestamp.timestamp_micros(), e.seq))
}

fn decode_cursor(s: &str) -> Option<(DateTime<Utc>, i64)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (t, seq) = raw.split_once(':')?;
    Some((
        DateTime::from_timestamp_micros(t.parse().ok()?)?,
        seq.parse().ok()?,
    ))
}

/// Reads one page: `cursor` pages stably while events keep arriving; `page` is an offset.
pub async fn list(state: &AppState, q: Query) -> Result<Page, EventError> {
    let limit = q.limit;
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(EventError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    if q.cursor.is_some() && q.page.is_some() {
        return Err(EventError::InvalidQuery(
            "give either cursor or page, not both".into(),
        ));
    }
    if q.page == Some(0) {
        return Err(EventError::InvalidQuery("page starts at 1".into()));
    }
    let after = match &q.cursor {
        Some(c) => Some(decode_cursor(c).ok_or(EventError::InvalidCursor)?),
        None => None,
    };
    let total = if q.count {
        Some(repo::count(&state.db, &q.filter).await?)
    } else {
        None
    };
    let offset = q.page.map_or(0, |p| (p - 1) * limit);
    let mut rows = repo::page(&state.db, &q.filter, after, offset, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Page {
        rows,
        next_cursor,
        total,
    })
}

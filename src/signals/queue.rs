//! The snapshot queue in the `signals` table: claim the next pending snapshot (plan priority,
//! then arrival), run it, record the outcome, retry with backoff, and deliver the signal with
//! its picture, or without one once the tries are spent.
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};

use super::{repo, service, snapshot::Snapshots};
use crate::{config::SnapshotSettings, domain::MediaId, entities::signals, state::AppState};

/// `screenshot_status` values.
pub const PENDING: &str = "pending";
pub const PROCESSING: &str = "processing";
pub const COMPLETED: &str = "completed";
pub const FAILED: &str = "failed";

/// Starts the snapshot workers (on worker nodes), when the pool can capture.
pub fn spawn_workers(pool: &Snapshots, state: AppState) {
    if !pool.enabled() {
        return;
    }
    for worker in 0..pool.concurrency() {
        let (pool, state) = (pool.clone(), state.clone());
        actix_web::rt::spawn(async move { work(worker, &pool, &state).await });
    }
    tracing::info!(
        concurrency = pool.concurrency(),
        chromium = ?pool.executable(),
        "chart snapshot workers started"
    );
}

async fn work(worker: usize, pool: &Snapshots, state: &AppState) {
    let settings = &state.settings.signals.snapshots;
    let mut reclaimed: Option<Instant> = None;
    loop {
        if reclaimed.is_none_or(|at| at.elapsed() >= RECLAIM_EVERY) {
            if let Err(e) = reclaim_stale(state, settings).await {
                tracing::warn!(worker, error = ?e, "could not take back stale snapshot claims");
            }
            reclaimed = Some(Instant::now());
        }
        match claim(state).await {
            Ok(Some(signal)) => {
                pool.busy(true);
                run(state, pool, signal).await;
                pool.busy(false);
            }
            Ok(None) => pool.idle().await,
            Err(e) => {
                tracing::warn!(worker, error = ?e, "snapshot queue unavailable");
                tokio::time::sleep(super::snapshot::IDLE_POLL).await;
            }
        }
    }
}

/// How often a worker looks for claims whose worker died (a write: not on every poll).
const RECLAIM_EVERY: Duration = Duration::from_secs(30);

/// Takes back claims older than a whole capture's time: their worker died.
async fn reclaim_stale(state: &AppState, settings: &SnapshotSettings) -> anyhow::Result<()> {
    let stale = Utc::now() - chrono::Duration::seconds(i64::try_from(settings.timeout_secs)? + 30);
    signals::Entity::update_many()
        .col_expr(signals::Column::ScreenshotStatus, Expr::value(PENDING))
        .filter(signals::Column::ScreenshotStatus.eq(PROCESSING))
        .filter(signals::Column::UpdatedAt.lt(stale))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// Claims the next snapshot due, highest plan first; `None` when none is.
pub async fn claim(state: &AppState) -> anyhow::Result<Option<repo::SignalRow>> {
    let now = Utc::now();
    for _ in 0..8 {
        let Some(next) = signals::Entity::find()
            .filter(signals::Column::ScreenshotStatus.eq(PENDING))
            .filter(
                Condition::any()
                    .add(signals::Column::SnapshotDueAt.is_null())
                    .add(signals::Column::SnapshotDueAt.lte(now)),
            )
            .order_by_asc(signals::Column::Priority)
            .order_by_asc(signals::Column::Id)
            .one(&state.db)
            .await?
        else {
            return Ok(None);
        };
        let taken = signals::Entity::update_many()
            .col_expr(signals::Column::ScreenshotStatus, Expr::value(PROCESSING))
            .col_expr(
                signals::Column::SnapshotAttempts,
                Expr::col(signals::Column::SnapshotAttempts).add(1),
            )
            .col_expr(signals::Column::UpdatedAt, Expr::value(now))
            .filter(signals::Column::Id.eq(next.id.as_str()))
            .filter(signals::Column::ScreenshotStatus.eq(PENDING))
            .exec(&state.db)
            .await?;
        if taken.rows_affected == 1 {
            return Ok(Some(repo::SignalRow {
                screenshot_status: PROCESSING.into(),
                snapshot_attempts: next.snapshot_attempts + 1,
                updated_at: now,
                ..next
            }));
        }
        // Another worker took it first: look again.
    }
    Ok(None)
}

/// Captures one claimed signal's chart and records what came of it.
pub async fn run(state: &AppState, pool: &Snapshots, signal: repo::SignalRow) {
    let settings = &state.settings.signals.snapshots;
    let started = Instant::now();
    // One read of the profile: its cookies for the capture, its target for the delivery.
    let profile = repo::profile(&state.db, &signal.owner_id).await;
    let outcome = match &profile {
        Ok(profile) => capture(state, pool, &signal, profile.as_ref()).await,
        Err(e) => Err(anyhow::anyhow!("could not read the profile: {e}")),
    };
    let profile = profile.ok().flatten();
    let elapsed = started.elapsed();
    metrics::histogram!("pregonero_snapshot_seconds").record(elapsed.as_secs_f64());
    match outcome {
        Ok(media_id) => {
            pool.took(elapsed);
            metrics::counter!("pregonero_snapshots_total", "outcome" => "completed").increment(1);
            let done = finish(state, &signal.id, COMPLETED, Some(&media_id), None, None).await;
            tracing::info!(signal_id = %signal.id, ms = elapsed.as_millis() as u64, "chart captured");
            if let Some(signal) = done {
                deliver(state, profile.as_ref(), signal, Some(media_id)).await;
            }
        }
        Err(e)
            if u32::try_from(signal.snapshot_attempts).unwrap_or(u32::MAX) < settings.attempts =>
        {
            let exp = Ord::min(u32::try_from(signal.snapshot_attempts - 1).unwrap_or(0), 10);
            let wait = Duration::from_secs(settings.backoff_secs.saturating_mul(1 << exp));
            metrics::counter!("pregonero_snapshots_total", "outcome" => "retry").increment(1);
            tracing::warn!(signal_id = %signal.id, attempt = signal.snapshot_attempts, error = %format!("{e:#}"), ?wait, "chart capture failed; trying again");
            let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            finish(
                state,
                &signal.id,
                PENDING,
                None,
                Some(&format!("{e:#}")),
                Some(due),
            )
            .await;
            // A worker must look again when it is due, not only when something new comes.
            let pool = pool.clone();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                pool.wake();
            });
        }
        Err(e) => {
            metrics::counter!("pregonero_snapshots_total", "outcome" => "failed").increment(1);
            tracing::warn!(signal_id = %signal.id, error = %format!("{e:#}"), "chart capture failed for good; delivering without a picture");
            if let Some(signal) = finish(
                state,
                &signal.id,
                FAILED,
                None,
                Some(&format!("{e:#}")),
                None,
            )
            .await
            {
                deliver(state, profile.as_ref(), signal, None).await;
            }
        }
    }
}

async fn capture(
    state: &AppState,
    pool: &Snapshots,
    signal: &repo::SignalRow,
    profile: Option<&repo::ProfileRow>,
) -> anyhow::Result<MediaId> {
    let cookies = match profile.and_then(|p| p.tradingview_cookies.as_deref()) {
        Some(stored) => service::read_cookies(&state.cipher.decrypt(stored)?)?,
        None => Vec::new(),
    };
    let url = chart_url(
        &state.settings.signals.snapshots.chart_url_template,
        signal.chart_id.as_deref().unwrap_or(""),
        signal.ticker.as_deref().unwrap_or(""),
    );
    let png = pool.capture(&url, &cookies).await?;
    let media = crate::media::service::store_for(
        state,
        &signal.owner_id,
        "image/png",
        format!("chart-{}.png", signal.id),
        png.into(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("could not store the capture: {e}"))?;
    Ok(media.id)
}

/// The chart's address: the template with the chart id and the ticker, URL-encoded.
pub fn chart_url(template: &str, chart_id: &str, ticker: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    template
        .replace("{chart_id}", &enc(chart_id))
        .replace("{ticker}", &enc(ticker))
}

/// Records a snapshot's outcome; the row as it is now (`None`, logged, if that failed).
async fn finish(
    state: &AppState,
    id: &str,
    status: &str,
    media_id: Option<&MediaId>,
    error: Option<&str>,
    due: Option<chrono::DateTime<Utc>>,
) -> Option<repo::SignalRow> {
    let result = signals::Entity::update_many()
        .col_expr(signals::Column::ScreenshotStatus, Expr::value(status))
        .col_expr(
            signals::Column::ScreenshotMediaId,
            Expr::value(media_id.cloned()),
        )
        .col_expr(
            signals::Column::ScreenshotError,
            Expr::value(error.map(|e| e.chars().take(500).collect::<String>())),
        )
        .col_expr(signals::Column::SnapshotDueAt, Expr::value(due))
        .col_expr(signals::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(signals::Column::Id.eq(id))
        .exec(&state.db)
        .await;
    if let Err(e) = result {
        tracing::error!(signal_id = %id, error = %e, "could not record the snapshot's outcome");
        return None;
    }
    repo::find(&state.db, id).await.ok().flatten()
}

async fn deliver(
    state: &AppState,
    profile: Option<&repo::ProfileRow>,
    signal: repo::SignalRow,
    media: Option<MediaId>,
) {
    if let Some(profile) = profile {
        service::deliver(state, profile, signal, media).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_urls_are_filled_in_and_encoded() {
        assert_eq!(
            chart_url(
                "https://www.tradingview.com/chart/{chart_id}/?symbol={ticker}",
                "Q7w5R5x8",
                "BINANCE:BTCUSDT"
            ),
            "https://www.tradingview.com/chart/Q7w5R5x8/?symbol=BINANCE%3ABTCUSDT"
        );
    }
}

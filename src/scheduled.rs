//! Jobs at a time of day (UTC): the daily quota reset and the SQLite backup.
//!
//! Every node with workers runs the scheduler; a run happens once per cluster because each
//! (job, day) slot is claimed by inserting a `scheduled_runs` row under a unique index — the
//! first node to insert runs it, the others see the conflict and skip. The slot is the most
//! recent due time, so a node that was down at 03:00 catches up when it starts.
use std::{path::Path, time::Duration};

use chrono::{DateTime, NaiveTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set, sea_query::Expr,
};

use crate::{entities::scheduled_runs, integrations, state::AppState};

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// Alert quotas start again for the new day.
    QuotaReset,
    /// Copy of the SQLite database into `<data_dir>/backups`.
    Backup,
    /// Deletes events older than `events.retention_days`, idempotency keys past their day, and
    /// the text of messages older than `delivery.body_retention_days`.
    EventsRetention,
}

impl Job {
    /// Name in `scheduled_runs.job`.
    pub fn name(self) -> &'static str {
        match self {
            Job::QuotaReset => "quota-reset",
            Job::Backup => "sqlite-backup",
            Job::EventsRetention => "events-retention",
        }
    }
}

/// File name prefix of backups.
pub const BACKUP_PREFIX: &str = "pregonero-backup-";

/// Looks for due jobs every `schedule.tick_secs` until aborted.
pub async fn run_periodically(state: AppState) {
    let tick = Duration::from_secs(state.settings.schedule.tick_secs);
    loop {
        run_due(&state).await;
        tokio::time::sleep(tick).await;
    }
}

/// Runs every job whose latest slot nobody has claimed yet.
pub async fn run_due(state: &AppState) {
    let s = &state.settings.schedule;
    let mut jobs = vec![
        (Job::QuotaReset, s.quota_reset_at.as_str()),
        (Job::EventsRetention, s.events_retention_at.as_str()),
    ];
    if !state.settings.is_postgres() {
        jobs.push((Job::Backup, s.backup_at.as_str()));
    }
    let now = state.clock.now();
    for (job, at) in jobs {
        let Ok(at) = NaiveTime::parse_from_str(at, "%H:%M") else {
            continue;
        };
        let slot = latest_slot(now, at);
        match claim(&state.db, job, &slot, &state.node_name, now).await {
            Ok(Some(run_id)) => {
                let result = perform(state, job).await;
                let (outcome, detail) = match &result {
                    Ok(detail) => ("ok", detail.clone()),
                    Err(e) => ("error", format!("{e:#}")),
                };
                match &result {
                    Ok(_) => tracing::info!(job = job.name(), %slot, %detail, "scheduled job done"),
                    Err(_) => {
                        tracing::error!(job = job.name(), %slot, %detail, "scheduled job failed")
                    }
                }
                metrics::counter!("pregonero_scheduled_runs_total", "job" => job.name(), "outcome" => outcome).increment(1);
                if let Err(e) = finish(&state.db, run_id, outcome, &detail).await {
                    tracing::warn!(job = job.name(), error = %e, "could not record the run");
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = job.name(), error = %e, "could not claim the scheduled run")
            }
        }
    }
}

/// The most recent moment at or before `now` when the UTC clock read `at`, as `YYYY-MM-DD`.
fn latest_slot(now: DateTime<Utc>, at: NaiveTime) -> String {
    let today = now.date_naive();
    let day = if now.time() >= at {
        today
    } else {
        today.pred_opt().unwrap_or(today)
    };
    day.to_string()
}

/// Claims (job, slot) for this node; `None` if another node (or an earlier tick) has it.
async fn claim(
    db: &DatabaseConnection,
    job: Job,
    slot: &str,
    node: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, sea_orm::DbErr> {
    let exists = scheduled_runs::Entity::find()
        .filter(scheduled_runs::Column::Job.eq(job.name()))
        .filter(scheduled_runs::Column::Slot.eq(slot))
        .one(db)
        .await?;
    if exists.is_some() {
        return Ok(None);
    }
    let row = scheduled_runs::ActiveModel {
        job: Set(job.name().to_owned()),
        slot: Set(slot.to_owned()),
        node: Set(node.to_owned()),
        started_at: Set(now),
        finished_at: Set(None),
        outcome: Set(None),
        detail: Set(None),
        ..Default::default()
    };
    match row.insert(db).await {
        Ok(model) => Ok(Some(model.id)),
        Err(e) if crate::db::is_unique_violation(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn finish(
    db: &DatabaseConnection,
    id: i64,
    outcome: &str,
    detail: &str,
) -> Result<(), sea_orm::DbErr> {
    scheduled_runs::Entity::update_many()
        .col_expr(scheduled_runs::Column::FinishedAt, Expr::value(Utc::now()))
        .col_expr(scheduled_runs::Column::Outcome, Expr::value(outcome))
        .col_expr(scheduled_runs::Column::Detail, Expr::value(detail))
        .filter(scheduled_runs::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

async fn perform(state: &AppState, job: Job) -> anyhow::Result<String> {
    match job {
        Job::QuotaReset => {
            let n = integrations::repo::reset_quotas(&state.db, state.clock.today()).await?;
            Ok(format!("{n} integration quotas reset"))
        }
        Job::EventsRetention => {
            let days = i64::from(state.settings.events.retention_days);
            let cutoff = state.clock.now() - chrono::Duration::days(days);
            let n = crate::events::delete_older_than(&state.db, cutoff).await?;
            let keys = crate::idempotency::purge(&state.db, state.clock.now()).await?;
            let bodies = match state.settings.delivery.body_retention_days {
                Some(days) => {
                    let before = state.clock.now() - chrono::Duration::days(i64::from(days));
                    crate::outbox::repo::redact_bodies_before(&state.db, before).await?
                }
                None => 0,
            };
            Ok(format!(
                "{n} events older than {cutoff} deleted, {keys} expired idempotency keys, \
                 {bodies} message bodies erased"
            ))
        }
        Job::Backup => {
            let dir = state.settings.data_dir.join("backups");
            let path = backup_sqlite(&state.db, &dir, state.clock.now()).await?;
            let removed = prune_backups(&dir, state.settings.schedule.backup_keep)?;
            Ok(format!("{} written, {removed} old removed", path.display()))
        }
    }
}

/// Writes a consistent copy of the live SQLite database (`VACUUM INTO`, safe while it is in
/// use) to `dir`, under a temporary name first so a crash never leaves a half backup.
pub async fn backup_sqlite(
    db: &impl ConnectionTrait,
    dir: &Path,
    now: DateTime<Utc>,
) -> anyhow::Result<std::path::PathBuf> {
    tokio::fs::create_dir_all(dir).await?;
    let name = format!("{BACKUP_PREFIX}{}.db", now.format("%Y%m%dT%H%M%SZ"));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.partial"));
    let _ = tokio::fs::remove_file(&tmp).await;
    let target = tmp
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("backup path is not UTF-8"))?
        .replace('\'', "''");
    db.execute_unprepared(&format!("VACUUM INTO '{target}'"))
        .await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(path)
}

/// Deletes all but the newest `keep` backups in `dir`; returns how many went.
pub fn prune_backups(dir: &Path, keep: usize) -> anyhow::Result<usize> {
    let mut backups: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(BACKUP_PREFIX) && n.ends_with(".db"))
        .collect();
    // Timestamped names sort chronologically.
    backups.sort();
    let excess = backups.len().saturating_sub(keep);
    for name in &backups[..excess] {
        std::fs::remove_file(dir.join(name))?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_backups_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        for day in 1..=5 {
            let name = format!("{BACKUP_PREFIX}2030010{day}T030000Z.db");
            std::fs::write(dir.path().join(name), b"x").expect("write");
        }
        std::fs::write(dir.path().join("notes.txt"), b"keep me").expect("write");
        assert_eq!(prune_backups(dir.path(), 2).expect("prune"), 3);
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "notes.txt".to_owned(),
                format!("{BACKUP_PREFIX}20300104T030000Z.db"),
                format!("{BACKUP_PREFIX}20300105T030000Z.db"),
            ]
        );
    }

    #[test]
    fn slots_are_the_latest_due_day() {
        let three = NaiveTime::from_hms_opt(3, 0, 0).expect("time");
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("date");
        assert_eq!(latest_slot(at("2030-01-02T02:59:59Z"), three), "2030-01-01");
        assert_eq!(latest_slot(at("2030-01-02T03:00:00Z"), three), "2030-01-02");
        assert_eq!(
            latest_slot(at("2030-01-02T00:00:00Z"), NaiveTime::MIN),
            "2030-01-02"
        );
    }
}

//! Contacts: CRUD, and CSV imports that stream the upload to disk and then read it row by row on
//! a blocking thread, writing batches of upserts with progress after each, so a file of millions
//! of rows needs a few megabytes. An import interrupted by a stop or a crash starts over on the
//! node that holds its file (upserts make that harmless).
pub mod csv_reader;
mod error;
pub mod imports;
mod listener;
pub mod repo;
pub mod routes;
pub mod service;

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use self::csv_reader::ContactsCsv;
use crate::{db::SqliteBulk, state::AppState};

/// Batches in flight between the reading thread and the writer.
const CHANNEL_BATCHES: usize = 4;

/// Batches PostgreSQL writes at once. One backend running one upsert after another was the
/// import's limit (a core of PostgreSQL's against a quarter of one for the server); two bring the
/// second core in (`bench/contacts_import.sh`: 14-17 s for a million rows, 9-12 s with two; a third
/// gave nothing more on two cores). The rows of one file never conflict with each other (the
/// reader refuses a phone it has seen), and batches commit in any order: counters only add.
const POSTGRES_WRITERS: usize = 2;

pub use error::ContactError;
pub use imports::Imports;
pub use listener::ContactsListener;
pub use routes::configure;

/// Where an import's upload is kept until it is done.
pub fn upload_path(state: &AppState, import_id: &str) -> PathBuf {
    state
        .settings
        .data_dir
        .join("imports")
        .join(format!("{import_id}.csv"))
}

/// How an import's run ended, short of an error.
enum Ended {
    Completed,
    /// The process is stopping: the import is left for the next start.
    Stopped,
}

/// Runs an import to its end (in the background); the file is deleted afterwards.
pub fn spawn_import(state: AppState, import: repo::ImportRow) {
    let running = state.imports.running.clone();
    actix_web::rt::spawn(running.track_future(async move {
        let path = upload_path(&state, &import.id);
        // The owner's dashboards follow the counts live (`import.progress`), until the end.
        let progress = actix_web::rt::spawn(publish_progress(state.clone(), import.clone()));
        let result = run(&state, &import, &path).await;
        progress.abort();
        let error = match result {
            Ok(Ended::Completed) => None,
            Ok(Ended::Stopped) => {
                tracing::info!(import_id = %import.id, "contact import stopped; the next start resumes it");
                return;
            }
            Err(e) => {
                tracing::warn!(import_id = %import.id, error = %e, "contact import failed");
                Some(e.to_string())
            }
        };
        if let Err(e) = repo::finish(&state.db, &import.id, error, state.clock.now()).await {
            tracing::error!(import_id = %import.id, error = %e, "could not record the end of a contact import");
            return; // keep the file: the next start resumes the import
        }
        let _ = tokio::fs::remove_file(&path).await;
        publish_once(&state, &import).await;
    }));
}

/// How often a running import's counts are announced.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Announces the import's counts every [`PROGRESS_EVERY`] (until aborted).
async fn publish_progress(state: AppState, import: repo::ImportRow) {
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        publish_once(&state, &import).await;
    }
}

/// Announces the import as stored now (`import.progress`, the body of `GET …/imports/{id}`).
async fn publish_once(state: &AppState, import: &repo::ImportRow) {
    let row = match repo::find_import(&state.db, &import.id).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(import_id = %import.id, error = %e, "import progress not read");
            return;
        }
    };
    let Ok(data) = serde_json::to_value(routes::ImportView::from(row)) else {
        return;
    };
    state
        .live
        .publish(crate::live::LiveEvent {
            owner: import.owner_id.clone(),
            kind: "import.progress".into(),
            data,
        })
        .await;
}

async fn run(state: &AppState, import: &repo::ImportRow, path: &Path) -> anyhow::Result<Ended> {
    let region = csv_reader::region(&import.default_region)
        .ok_or_else(|| anyhow::anyhow!("unknown region {}", import.default_region))?;
    let file = std::fs::File::open(path)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(CHANNEL_BATCHES);
    let upsert = repo::Upsert::new(
        &import.owner_id,
        &format!("import:{}", import.id),
        state.clock.now(),
    );
    // The reading thread parses, normalises and lays out each batch; the writer only writes
    // them, so reading batch k+1 overlaps writing batch k. A writer that stops drops its end of
    // the channel, which stops the reader.
    let reader = tokio::task::spawn_blocking(move || read_batches(file, region, tx));
    let stop = state.imports.stop.clone();
    let ended = match SqliteBulk::path(&state.db) {
        Some(db_path) => {
            let import_id = import.id.clone();
            tokio::task::spawn_blocking(move || {
                write_sqlite(&db_path, &import_id, &upsert, rx, &stop)
            })
            .await??
        }
        None => write_postgres(state, &import.id, &upsert, rx, &stop).await?,
    };
    reader.await??;
    Ok(ended)
}

/// Reads the file into batches for the writer, until the end or until the writer stops.
fn read_batches(
    file: std::fs::File,
    region: phonenumber::country::Id,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> anyhow::Result<()> {
    let mut rows = ContactsCsv::new(file, region)?.peekable();
    while rows.peek().is_some() {
        // A batch is BATCH_ROWS good rows, plus the refused ones met on the way (up to as many):
        // every batch but the last then has the same statement, which SQLite keeps prepared.
        // Batches of BATCH_ROWS lines had a different number of good rows each time: a fresh
        // 7,000-parameter statement to parse per batch (1,072 prepares per million rows, now 72).
        let mut contacts = Vec::with_capacity(repo::BATCH_ROWS);
        let mut errors = Vec::new();
        for (line, row) in rows.by_ref() {
            match row {
                Ok(c) => contacts.push(c),
                Err(e) => errors.push((line, e)),
            }
            if contacts.len() == repo::BATCH_ROWS || errors.len() == repo::BATCH_ROWS {
                break;
            }
        }
        let batch = Batch {
            columns: repo::ContactColumns::new(contacts),
            errors,
        };
        if tx.blocking_send(batch).is_err() {
            return Ok(()); // the writer stopped; it reports why
        }
    }
    Ok(())
}

/// SQLite's writer: each batch in one transaction on a connection of its own (see
/// [`SqliteBulk`]), on this blocking thread.
fn write_sqlite(
    db_path: &Path,
    import_id: &str,
    upsert: &repo::Upsert,
    mut rx: tokio::sync::mpsc::Receiver<Batch>,
    stop: &CancellationToken,
) -> anyhow::Result<Ended> {
    let bulk = SqliteBulk::open(db_path)?;
    let mut sqlite = repo::SqliteUpsert::new(bulk.connection(), upsert)?;
    while let Some(batch) = rx.blocking_recv() {
        if stop.is_cancelled() {
            return Ok(Ended::Stopped);
        }
        bulk.write(|_| {
            repo::write_batch_sqlite(&mut sqlite, import_id, batch.columns, &batch.errors)
        })?;
    }
    Ok(Ended::Completed)
}

/// PostgreSQL's writer: [`POSTGRES_WRITERS`] batches at a time through the pool.
async fn write_postgres(
    state: &AppState,
    import_id: &str,
    upsert: &repo::Upsert,
    mut rx: tokio::sync::mpsc::Receiver<Batch>,
    stop: &CancellationToken,
) -> anyhow::Result<Ended> {
    futures::stream::poll_fn(|cx| rx.poll_recv(cx))
        .take_until(stop.cancelled())
        .map(|batch| repo::write_batch(&state.db, import_id, upsert, batch.columns, batch.errors))
        .buffer_unordered(POSTGRES_WRITERS)
        .try_collect::<()>()
        .await?;
    Ok(if stop.is_cancelled() {
        Ended::Stopped
    } else {
        Ended::Completed
    })
}

/// Up to [`repo::BATCH_ROWS`] rows of a file, ready to write: every row is either in the upsert
/// or in `errors`.
#[derive(Debug)]
struct Batch {
    columns: repo::ContactColumns,
    errors: Vec<(u64, csv_reader::RowError)>,
}

/// Resumes this node's imports that a stop interrupted.
pub async fn resume(state: &AppState) -> anyhow::Result<()> {
    let running = repo::running_imports(&state.db, &state.node_name).await?;
    for import in running {
        if upload_path(state, &import.id).exists() {
            tracing::info!(import_id = %import.id, "resuming an interrupted contact import");
            repo::reset(&state.db, &import.id).await?;
            spawn_import(state.clone(), import);
        } else {
            repo::finish(
                &state.db,
                &import.id,
                Some("interrupted, and its file is gone; upload it again".into()),
                state.clock.now(),
            )
            .await?;
        }
    }
    Ok(())
}

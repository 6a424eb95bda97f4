//! `GET /api/v1/live`: the caller's live updates as server-sent events.
use std::time::Duration;

use actix_web::{HttpResponse, get, web};
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;

use crate::{auth::Caller, state::AppState};

/// A comment line this often keeps proxies from closing an idle stream.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Mounts the stream.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(stream);
}

/// Stream the caller's live updates (server-sent events).
///
/// `event: message.status` with `data: {"message_id", "status" (`sent`, `delivered`, `read`,
/// `failed`, `skipped`), "channel_id", "campaign_id", "error_code"?, "at"}` for each status
/// change of the caller's own messages, from whichever replica sent them (with `redis_url`);
/// `event: import.progress` with the body of `GET /api/v1/contacts/imports/{id}` every half
/// second while one of the caller's contact imports runs, and once at its end;
/// `event: events.ingested` with `{"count", "services"}` for each commit of the caller's
/// events (`POST /events`); `event: channel.status` with `{"channel_id", "status",
/// "status_detail", "at"}` when a provider rejects one of the caller's accounts.
/// A comment line every 15 s keeps the connection open; `: N events dropped` says the reader
/// fell behind. Nothing is replayed on reconnection: the ledger stays the record.
#[utoipa::path(
    tag = "live",
    responses(
        (status = 200, description = "An endless `text/event-stream`", content_type = "text/event-stream", body = String),
    )
)]
#[get("/live")]
async fn stream(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let owner = caller.user_id.clone();
    let events = futures::stream::unfold(state.live.subscribe(), move |mut rx| {
        let owner = owner.clone();
        async move {
            loop {
                let line = match rx.recv().await {
                    Ok(event) if event.owner == owner => {
                        format!("event: {}\ndata: {}\n\n", event.kind, event.data)
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => format!(": {n} events dropped\n\n"),
                    Err(RecvError::Closed) => return None,
                };
                return Some((line, rx));
            }
        }
    });
    let keepalive = futures::stream::unfold((), |()| async {
        tokio::time::sleep(KEEPALIVE).await;
        Some((": keepalive\n\n".to_owned(), ()))
    });
    let body = futures::stream::once(async { ": connected\n\n".to_owned() })
        .chain(futures::stream::select(events, keepalive))
        .map(|line| Ok::<_, actix_web::Error>(web::Bytes::from(line)));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Proxies that buffer (nginx) must pass each event on at once.
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

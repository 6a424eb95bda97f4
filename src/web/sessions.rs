//! `/channels/{id}/session`: a WhatsApp Web number's session — its state, the QR or pairing
//! code while pairing, restart (optionally pairing by code) and unlink.
use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;

use crate::{
    auth::Caller,
    channels::{
        adapter::SetupError,
        repo::{self, ChannelRow},
        whatsapp_web::{self, DbStore, SessionView, store::SessionCommand},
    },
    domain::ChannelId,
    error::ApiError,
    state::AppState,
};

/// Mounts the session routes.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.service(get_session)
        .service(restart_session)
        .service(logout_session);
}

/// The caller's WhatsApp Web channel `id`.
async fn web_channel(
    state: &AppState,
    caller: &Caller,
    id: &ChannelId,
) -> Result<ChannelRow, ApiError> {
    let row = repo::find_visible(&state.db, id, |o| caller.can_access(o))
        .await?
        .ok_or_else(|| ApiError::NotFound("channel-not-found", "no such channel account".into()))?;
    if row.kind != whatsapp_web::KIND {
        return Err(ApiError::Conflict(
            "channel-has-no-session",
            format!(
                "only `{}` channels have a session; this one is `{}`",
                whatsapp_web::KIND,
                row.kind
            ),
        ));
    }
    Ok(row)
}

/// The session as the replica running it shows it (see [`whatsapp_web::current_view`]).
pub async fn view(state: &AppState, id: &ChannelId) -> SessionView {
    whatsapp_web::current_view(&state.web_sessions, &state.db, &state.cipher, id).await
}

/// Leaves `command` for whichever replica runs the session, and wakes it if it is this one.
async fn ask(state: &AppState, id: &ChannelId, command: &SessionCommand) -> Result<(), ApiError> {
    DbStore::new(state.db.clone(), id, state.cipher.clone())
        .put_command(command)
        .await
        .map_err(|e| anyhow::anyhow!("cannot store the session command: {e}"))?;
    state.web_sessions.get(id).wake();
    Ok(())
}

/// A WhatsApp Web number's session: state, QR (text and SVG data URL) or pairing code, phone.
#[utoipa::path(
    tag = "channels",
    params(ChannelId),
    responses(
        (status = 200, description = "The session", body = SessionView),
        (status = 404, description = "`channel-not-found`"),
        (status = 409, description = "`channel-has-no-session`: not a `whatsapp_web` channel"),
    )
)]
#[get("/channels/{id}/session")]
async fn get_session(
    caller: Caller,
    path: web::Path<ChannelId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = web_channel(&state, &caller, &path).await?;
    Ok(HttpResponse::Ok().json(view(&state, &row.id).await))
}

/// `POST /channels/{id}/session/restart`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RestartSession {
    /// Pair by an 8-character code for this number (international form, `+34…`) instead of by
    /// QR. Used only when the session needs pairing.
    pair_phone: Option<String>,
}

/// Start the session again now: a fresh QR (or pairing code), or a reconnect of a linked device.
/// This is how a `logged_out`, `replaced` or `failed` session comes back.
#[utoipa::path(
    tag = "channels",
    params(ChannelId),
    request_body(content = RestartSession, description = "Optional `pair_phone`"),
    responses(
        (status = 202, description = "Restarting; follow it with GET or the `channel.session` live event", body = SessionView),
        (status = 404, description = "`channel-not-found`"),
        (status = 409, description = "`channel-has-no-session`"),
        (status = 422, description = "`invalid-pair-phone`"),
    )
)]
#[post("/channels/{id}/session/restart")]
async fn restart_session(
    caller: Caller,
    path: web::Path<ChannelId>,
    state: web::Data<AppState>,
    body: Option<web::Json<RestartSession>>,
) -> Result<HttpResponse, ApiError> {
    let row = web_channel(&state, &caller, &path).await?;
    let pair_phone = match body.and_then(|b| b.into_inner().pair_phone) {
        Some(raw) => Some(whatsapp_web::pair_phone(&raw).map_err(|e| match e {
            SetupError::Invalid(code, why) => ApiError::Unprocessable(code, why),
            SetupError::Unreachable(why) => ApiError::BadGateway("provider-unreachable", why),
        })?),
        None => None,
    };
    let command = SessionCommand {
        logout: false,
        pair_phone,
    };
    ask(&state, &row.id, &command).await?;
    Ok(HttpResponse::Accepted().json(view(&state, &row.id).await))
}

/// Unlink the device from the phone and forget its keys; the session waits in `logged_out`
/// until it is restarted (and paired again).
#[utoipa::path(
    tag = "channels",
    params(ChannelId),
    responses(
        (status = 202, description = "Unlinking", body = SessionView),
        (status = 404, description = "`channel-not-found`"),
        (status = 409, description = "`channel-has-no-session`"),
    )
)]
#[post("/channels/{id}/session/logout")]
async fn logout_session(
    caller: Caller,
    path: web::Path<ChannelId>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let row = web_channel(&state, &caller, &path).await?;
    let command = SessionCommand {
        logout: true,
        pair_phone: None,
    };
    ask(&state, &row.id, &command).await?;
    Ok(HttpResponse::Accepted().json(view(&state, &row.id).await))
}

//! The audit log: every request that changes something (any method but GET, HEAD and OPTIONS)
//! under `/api/v1` and `/auth` is recorded with who made it, the route, its path parameters, the
//! status, the client address and the request id. Bodies, headers and query strings are never
//! recorded, so secrets cannot reach the log.
use std::{cell::RefCell, rc::Rc};

use actix_web::{
    HttpMessage, HttpResponse,
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    get,
    middleware::Next,
    web,
};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, Order, QueryFilter};
use serde::{Deserialize, Serialize};
use tracing_actix_web::RequestId;

use super::{Caller, audit_writer::Entry, extractor::is_mutating};
use crate::domain::UserId;
use crate::page::{Page, PageQuery};
use crate::{entities::audit_log, error::ApiError, state::AppState};

/// Where the authentication middleware leaves the caller for the audit middleware, which
/// cannot keep a handle on the request while inner services run.
#[derive(Clone, Default)]
pub struct ActorSlot(Rc<RefCell<Option<Caller>>>);

impl ActorSlot {
    /// Records the caller of the current request.
    pub fn set(&self, caller: &Caller) {
        *self.0.borrow_mut() = Some(caller.clone());
    }
}

/// Middleware: records every mutating request that passes through it, refused ones included.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if !is_mutating(req.method()) {
        return next.call(req).await;
    }
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(req).await;
    };
    let slot = ActorSlot::default();
    req.extensions_mut().insert(slot.clone());
    let action = format!(
        "{} {}",
        req.method(),
        req.match_pattern().unwrap_or_else(|| "<unmatched>".into())
    );
    let request_id = req.extensions().get::<RequestId>().map(ToString::to_string);
    let ip =
        crate::client_ip::client_ip(req.request(), &state.trusted_proxies).map(|ip| ip.to_string());
    let result = next.call(req).await;
    let (status, target) = match &result {
        Ok(res) => {
            let params: serde_json::Map<_, _> = res
                .request()
                .match_info()
                .iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                .collect();
            (
                res.status().as_u16(),
                (!params.is_empty()).then_some(serde_json::Value::Object(params)),
            )
        }
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
    };
    let caller = slot.0.borrow().clone();
    state
        .audit
        .record(
            state.clock.now(),
            Entry {
                actor_id: caller.as_ref().map(|c| c.user_id.clone()),
                actor_kind: caller.as_ref().map_or("anonymous", Caller::kind),
                action,
                target,
                status,
                ip,
                request_id,
            },
        )
        .await;
    result
}

/// Query of `GET /api/v1/audit-log`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Entries of this user only.
    pub actor_id: Option<UserId>,
    /// `next_cursor` of the page before.
    pub cursor: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u64>,
}

/// One entry as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct EntryView {
    id: String,
    at: DateTime<Utc>,
    /// Who made the request; null when nobody was authenticated.
    actor_id: Option<UserId>,
    /// `api_key`, `session`, `bearer`, `integration_token` or `anonymous`.
    actor_kind: String,
    /// Method and route pattern, e.g. `DELETE /api/v1/api-keys/{id}`.
    action: String,
    /// The request's path parameters, e.g. `{"id": "…"}`; null without any.
    #[schema(value_type = Option<Object>)]
    target: Option<serde_json::Value>,
    /// The answer's HTTP status.
    status: i32,
    /// The client's address.
    ip: Option<String>,
    /// The request's id (`X-Request-Id`).
    request_id: Option<String>,
}

/// The audit log, newest first; admins only.
///
/// Every request that changed something (any method but GET, HEAD and OPTIONS) under
/// `/api/v1` and `/auth`, refused ones included: who, the route, its path parameters, the
/// status. Never bodies, headers or query strings.
#[utoipa::path(
    tag = "auth",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of entries", body = Page<EntryView>),
        (status = 400, description = "`invalid-cursor`, `validation-failed`, `invalid-query`"),
        (status = 403, description = "`admin-only`"),
    )
)]
#[get("/audit-log")]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    if !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "admin-only",
            "only admins can read the audit log".into(),
        ));
    }
    let query = query.into_inner();
    let page = PageQuery {
        cursor: query.cursor,
        limit: query.limit,
    }
    .request()?;
    let mut q = audit_log::Entity::find();
    if let Some(actor) = query.actor_id {
        q = q.filter(audit_log::Column::ActorId.eq(actor));
    }
    let rows = crate::page::fetch(
        &state.db,
        q,
        audit_log::Column::Id,
        Order::Desc,
        &page,
        |r| r.id.clone(),
    )
    .await?;
    let entries = rows.map(|r| EntryView {
        target: r.target.and_then(|t| serde_json::from_str(&t).ok()),
        id: r.id,
        at: r.at,
        actor_id: r.actor_id,
        actor_kind: r.actor_kind,
        action: r.action,
        status: r.status,
        ip: r.ip,
        request_id: r.request_id,
    });
    Ok(HttpResponse::Ok().json(entries))
}

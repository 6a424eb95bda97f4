//! The message ledger: rows, their conditional state transitions, and their events.
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
    sea_query::{Expr, ExprTrait},
};

use crate::{
    domain::{
        ChannelId, HistoryKind, IntegrationId, MediaId, MessageId, MessageStatus, Receipt, UserId,
    },
    entities::{message_events, messages},
};

pub use message_events::Model as EventRow;
pub use messages::Model as MessageRow;

/// Finds a message by id.
pub async fn find(db: &DatabaseConnection, id: &MessageId) -> Result<Option<MessageRow>, DbErr> {
    messages::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Finds a message by its owner and idempotency key.
pub async fn find_by_idempotency_key(
    db: &DatabaseConnection,
    owner_id: &UserId,
    key: &str,
) -> Result<Option<MessageRow>, DbErr> {
    messages::Entity::find()
        .filter(messages::Column::OwnerId.eq(owner_id))
        .filter(messages::Column::IdempotencyKey.eq(key))
        .one(db)
        .await
}

/// Inserts a queued message and its `queued` event in one transaction.
pub async fn insert(
    db: &DatabaseConnection,
    row: messages::ActiveModel,
) -> Result<MessageRow, DbErr> {
    use sea_orm::TransactionTrait;
    let txn = db.begin().await?;
    let model = insert_in(&txn, row).await?;
    txn.commit().await?;
    Ok(model)
}

/// Inserts a queued message and its `queued` event inside the caller's transaction.
pub async fn insert_in<C: ConnectionTrait>(
    txn: &C,
    row: messages::ActiveModel,
) -> Result<MessageRow, DbErr> {
    let model = row.insert(txn).await?;
    record(txn, &model.id, HistoryKind::Queued, None, None, None).await?;
    Ok(model)
}

/// The two multi-row statements that insert queued messages and their `queued` events, and
/// the rows as they will read back, in the order given (run them in one transaction).
pub fn insert_many_statements(
    backend: DbBackend,
    rows: Vec<messages::ActiveModel>,
) -> Result<(Vec<MessageRow>, Vec<Statement>), DbErr> {
    use sea_orm::{QueryTrait, TryIntoModel};
    if rows.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let models = rows
        .iter()
        .cloned()
        .map(TryIntoModel::try_into_model)
        .collect::<Result<Vec<MessageRow>, DbErr>>()?;
    let mut statements: Vec<Statement> = crate::db::pow2_chunks(rows)
        .into_iter()
        .map(|chunk| messages::Entity::insert_many(chunk).build(backend))
        .collect();
    statements.extend(queued_statements(backend, models.iter().map(|m| &m.id)));
    Ok((models, statements))
}

/// Appends a `queued` event to each message, in one statement.
pub async fn record_queued<'a, C: ConnectionTrait>(
    txn: &C,
    ids: impl Iterator<Item = &'a MessageId>,
) -> Result<(), DbErr> {
    for statement in queued_statements(txn.get_database_backend(), ids) {
        txn.execute_raw(statement).await?;
    }
    Ok(())
}

/// The statements appending a `queued` event to each message ([`crate::db::pow2_chunks`]).
fn queued_statements<'a>(
    backend: DbBackend,
    ids: impl Iterator<Item = &'a MessageId>,
) -> Vec<Statement> {
    use sea_orm::QueryTrait;
    let now = Utc::now();
    let events: Vec<_> = ids
        .map(|id| message_events::ActiveModel {
            message_id: Set(id.clone()),
            at: Set(now),
            kind: Set(HistoryKind::Queued.as_str().to_owned()),
            outcome: Set(None),
            error_code: Set(None),
            detail: Set(None),
            ..Default::default()
        })
        .collect();
    crate::db::pow2_chunks(events)
        .into_iter()
        .map(|chunk| message_events::Entity::insert_many(chunk).build(backend))
        .collect()
}

/// What a producer (API, alert, bot reply) fills in for a new queued message.
pub struct NewMessage {
    /// Owner of the message.
    pub owner_id: UserId,
    /// Channel account that sends it.
    pub channel_id: ChannelId,
    /// Recipient (chat id).
    pub recipient: String,
    /// Text or caption.
    pub body: String,
    /// Telegram parse mode.
    pub parse_mode: Option<String>,
    /// Attached media.
    pub media_id: Option<MediaId>,
    /// Producer's idempotency key.
    pub idempotency_key: Option<String>,
    /// Hash of the request that created it (idempotent replays compare it).
    pub request_hash: Option<String>,
    /// The integration it was sent through, for alerts.
    pub integration_id: Option<IntegrationId>,
}

impl NewMessage {
    /// The row to insert: queued, due now.
    pub fn into_row(self, now: DateTime<Utc>) -> messages::ActiveModel {
        messages::ActiveModel {
            id: Set(MessageId::generate()),
            owner_id: Set(self.owner_id),
            channel_id: Set(self.channel_id),
            recipient: Set(self.recipient),
            body: Set(self.body),
            parse_mode: Set(self.parse_mode),
            media_id: Set(self.media_id),
            idempotency_key: Set(self.idempotency_key),
            request_hash: Set(self.request_hash),
            status: Set(MessageStatus::Queued.as_str().into()),
            attempts: Set(0),
            provider_message_id: Set(None),
            last_error_code: Set(None),
            last_error: Set(None),
            next_attempt_at: Set(now),
            locked_until: Set(None),
            locked_by: Set(None),
            enqueued_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            sent_at: Set(None),
            integration_id: Set(self.integration_id),
            campaign_id: Set(None),
            contact_id: Set(None),
            provider_template: Set(None),
            delivered_at: Set(None),
            read_at: Set(None),
        }
    }
}

/// Alerts not delivered yet (queued or being sent), stopping the count at `cap` (so the check
/// costs at most `cap` index reads however long the backlog is).
pub async fn pending_alerts(db: &impl ConnectionTrait, cap: u64) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .filter(messages::Column::Status.is_in([
            MessageStatus::Queued.as_str(),
            MessageStatus::Sending.as_str(),
        ]))
        .filter(messages::Column::IntegrationId.is_not_null())
        .limit(cap)
        .count(db)
        .await
}

/// Appends an event to a message's history.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    message_id: &MessageId,
    kind: HistoryKind,
    outcome: Option<&str>,
    error_code: Option<&str>,
    detail: Option<&str>,
) -> Result<(), DbErr> {
    message_events::ActiveModel {
        message_id: Set(message_id.to_owned()),
        at: Set(Utc::now()),
        kind: Set(kind.as_str().to_owned()),
        outcome: Set(outcome.map(str::to_owned)),
        error_code: Set(error_code.map(str::to_owned)),
        detail: Set(detail.map(|d| d.chars().take(1000).collect())),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// The events of a message, oldest first.
pub async fn events(
    db: &DatabaseConnection,
    message_id: &MessageId,
) -> Result<Vec<EventRow>, DbErr> {
    message_events::Entity::find()
        .filter(message_events::Column::MessageId.eq(message_id))
        .order_by_asc(message_events::Column::Id)
        .all(db)
        .await
}

fn status_is(s: MessageStatus) -> sea_orm::sea_query::SimpleExpr {
    messages::Column::Status.eq(s.as_str())
}

/// Takes a queued message for one attempt: `queued → sending`, attempts + 1, leased to `node`.
/// Returns false when someone else already has it or it is no longer queued.
pub async fn claim(
    db: &DatabaseConnection,
    id: &MessageId,
    node: &str,
    lease_until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let res = messages::Entity::update_many()
        .col_expr(
            messages::Column::Status,
            Expr::value(MessageStatus::Sending.as_str()),
        )
        .col_expr(
            messages::Column::Attempts,
            Expr::col(messages::Column::Attempts).add(1),
        )
        .col_expr(messages::Column::LockedUntil, Expr::value(lease_until))
        .col_expr(messages::Column::LockedBy, Expr::value(node))
        .col_expr(messages::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(messages::Column::Id.eq(id))
        .filter(status_is(MessageStatus::Queued))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// [`claim`] of a message that is due by `now`, in one statement that returns the row as it
/// was before (status `queued`, attempts not yet counted) and which of `vetoes` holds for it
/// (the first, by index); `None` when it is not queued, not due yet or taken: the caller reads
/// it to know which.
pub async fn claim_due(
    db: &DatabaseConnection,
    id: &MessageId,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    vetoes: &[super::hooks::SqlVeto],
) -> Result<Option<(MessageRow, Option<usize>)>, DbErr> {
    let mut claimed =
        claim_due_many(db, std::slice::from_ref(id), node, now, lease_until, vetoes).await?;
    Ok(claimed.pop())
}

/// [`claim_due`] of each of `ids` in one statement: the ones claimed, in no particular order
/// (a message missing from the answer is not queued, not due yet or taken). The id list is
/// padded to a power of two with its last id (a repeat matches nothing more), so the
/// statement's text is one of eight and stays in the connection's statement cache.
pub async fn claim_due_many(
    db: &DatabaseConnection,
    ids: &[MessageId],
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    vetoes: &[super::hooks::SqlVeto],
) -> Result<Vec<(MessageRow, Option<usize>)>, DbErr> {
    use sea_orm::FromQueryResult;
    let Some(last) = ids.last() else {
        return Ok(Vec::new());
    };
    let slots = ids.len().next_power_of_two();
    let mut sql = format!(
        "UPDATE messages SET status = ?, attempts = attempts + 1, locked_until = ?, \
         locked_by = ?, updated_at = ? WHERE id IN ({}) AND status = ? AND next_attempt_at <= ? \
         RETURNING *",
        vec!["?"; slots].join(", ")
    );
    for (i, veto) in vetoes.iter().enumerate() {
        sql.push_str(&format!(", ({}) AS veto_{i}", veto.condition));
    }
    let mut values: Vec<sea_orm::Value> = vec![
        MessageStatus::Sending.as_str().into(),
        lease_until.into(),
        node.into(),
        now.into(),
    ];
    values.extend(
        ids.iter()
            .chain(std::iter::repeat_n(last, slots - ids.len()))
            .map(|id| id.to_string().into()),
    );
    values.push(MessageStatus::Queued.as_str().into());
    values.push(now.into());
    let statement = crate::db::statement(db.get_database_backend(), &sql, values);
    let rows = db.query_all_raw(statement).await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let mut msg = MessageRow::from_query_result(&row, "")?;
        msg.status = MessageStatus::Queued.as_str().to_owned();
        msg.attempts -= 1;
        msg.locked_until = None;
        msg.locked_by = None;
        let mut vetoed = None;
        for i in 0..vetoes.len() {
            if row.try_get::<bool>("", &format!("veto_{i}"))? {
                vetoed = Some(i);
                break;
            }
        }
        claimed.push((msg, vetoed));
    }
    Ok(claimed)
}

/// Extends the lease of a message this node is sending.
pub async fn extend_lease(
    db: &impl ConnectionTrait,
    id: &MessageId,
    lease_until: DateTime<Utc>,
) -> Result<(), DbErr> {
    messages::Entity::update_many()
        .col_expr(messages::Column::LockedUntil, Expr::value(lease_until))
        .filter(messages::Column::Id.eq(id))
        .filter(status_is(MessageStatus::Sending))
        .exec(db)
        .await?;
    Ok(())
}

/// Changes the recipient (a Telegram group migrated to a supergroup).
pub async fn set_recipient(
    db: &impl ConnectionTrait,
    id: &MessageId,
    recipient: &str,
) -> Result<(), DbErr> {
    messages::Entity::update_many()
        .col_expr(messages::Column::Recipient, Expr::value(recipient))
        .filter(messages::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// `sending → sent`.
pub async fn mark_sent(
    db: &impl ConnectionTrait,
    id: &MessageId,
    provider_id: &str,
) -> Result<(), DbErr> {
    let now = Utc::now();
    finish(
        db,
        id,
        messages::Entity::update_many()
            .col_expr(
                messages::Column::Status,
                Expr::value(MessageStatus::Sent.as_str()),
            )
            .col_expr(
                messages::Column::ProviderMessageId,
                Expr::value(provider_id),
            )
            .col_expr(messages::Column::SentAt, Expr::value(now)),
    )
    .await
}

/// `sending → failed` with the error that ended it.
pub async fn mark_failed(
    db: &impl ConnectionTrait,
    id: &MessageId,
    code: &str,
    detail: &str,
) -> Result<(), DbErr> {
    end_unsent(db, id, MessageStatus::Failed, code, detail).await
}

/// `sending → skipped` (not sent on purpose, e.g. the contact opted out).
pub async fn mark_skipped(
    db: &impl ConnectionTrait,
    id: &MessageId,
    code: &str,
    detail: &str,
) -> Result<(), DbErr> {
    end_unsent(db, id, MessageStatus::Skipped, code, detail).await
}

async fn end_unsent(
    db: &impl ConnectionTrait,
    id: &MessageId,
    status: MessageStatus,
    code: &str,
    detail: &str,
) -> Result<(), DbErr> {
    finish(
        db,
        id,
        messages::Entity::update_many()
            .col_expr(messages::Column::Status, Expr::value(status.as_str()))
            .col_expr(messages::Column::LastErrorCode, Expr::value(code))
            .col_expr(messages::Column::LastError, Expr::value(detail)),
    )
    .await
}

/// How many attempts of a message ended with `error_code` (for growing back-offs).
pub async fn count_outcomes(
    db: &impl ConnectionTrait,
    message_id: &MessageId,
    error_code: &str,
) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    message_events::Entity::find()
        .filter(message_events::Column::MessageId.eq(message_id))
        .filter(message_events::Column::ErrorCode.eq(error_code))
        .count(db)
        .await
}

/// `sending → queued` for another attempt at `at`; `refund` gives back the attempt (rate limits).
pub async fn schedule_retry(
    db: &impl ConnectionTrait,
    id: &MessageId,
    at: DateTime<Utc>,
    code: &str,
    detail: &str,
    refund: bool,
) -> Result<(), DbErr> {
    let mut update = messages::Entity::update_many()
        .col_expr(
            messages::Column::Status,
            Expr::value(MessageStatus::Queued.as_str()),
        )
        .col_expr(messages::Column::NextAttemptAt, Expr::value(at))
        .col_expr(messages::Column::EnqueuedAt, Expr::value(Utc::now()))
        .col_expr(messages::Column::LastErrorCode, Expr::value(code))
        .col_expr(messages::Column::LastError, Expr::value(detail));
    if refund {
        update = update.col_expr(
            messages::Column::Attempts,
            Expr::col(messages::Column::Attempts).sub(1),
        );
    }
    finish(db, id, update).await
}

/// `sending → queued` for a send that was not made (its pacing turn is at `at`): the attempt
/// is given back and the last error is kept.
pub async fn defer(
    db: &impl ConnectionTrait,
    id: &MessageId,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let update = messages::Entity::update_many()
        .col_expr(
            messages::Column::Status,
            Expr::value(MessageStatus::Queued.as_str()),
        )
        .col_expr(messages::Column::NextAttemptAt, Expr::value(at))
        .col_expr(messages::Column::EnqueuedAt, Expr::value(Utc::now()))
        .col_expr(
            messages::Column::Attempts,
            Expr::col(messages::Column::Attempts).sub(1),
        );
    finish(db, id, update).await
}

async fn finish(
    db: &impl ConnectionTrait,
    id: &MessageId,
    update: sea_orm::UpdateMany<messages::Entity>,
) -> Result<(), DbErr> {
    update
        .col_expr(
            messages::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            messages::Column::LockedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(messages::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(messages::Column::Id.eq(id))
        .filter(status_is(MessageStatus::Sending))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks that a job for the message was pushed now (id lists in [`crate::db::pow2_chunks`], so
/// the statements' texts repeat).
pub async fn mark_enqueued(db: &impl ConnectionTrait, ids: &[MessageId]) -> Result<(), DbErr> {
    let now = Utc::now();
    for chunk in crate::db::pow2_chunks(ids.to_vec()) {
        messages::Entity::update_many()
            .col_expr(messages::Column::EnqueuedAt, Expr::value(now))
            .filter(messages::Column::Id.is_in(chunk))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Queued messages whose job was never pushed (and not touched since `fresh_before`), or was
/// pushed before `stale_before`.
pub async fn stranded(
    db: &impl ConnectionTrait,
    fresh_before: DateTime<Utc>,
    stale_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(MessageId, DateTime<Utc>)>, DbErr> {
    use sea_orm::sea_query::Condition;
    let rows = messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .column(messages::Column::NextAttemptAt)
        .filter(status_is(MessageStatus::Queued))
        .filter(
            Condition::any()
                .add(
                    Condition::all()
                        .add(messages::Column::EnqueuedAt.is_null())
                        .add(messages::Column::UpdatedAt.lt(fresh_before)),
                )
                // Pushed long ago and due long ago: its job is lost. A job pushed for a turn
                // hours ahead is not.
                .add(
                    Condition::all()
                        .add(messages::Column::EnqueuedAt.lt(stale_before))
                        .add(messages::Column::NextAttemptAt.lt(stale_before)),
                ),
        )
        .order_by_asc(messages::Column::NextAttemptAt)
        .limit(limit)
        .into_tuple::<(MessageId, DateTime<Utc>)>()
        .all(db)
        .await?;
    Ok(rows)
}

/// `sending → queued`, unlocked and without a job (the sweep or the caller pushes one).
fn unlock_to_queued() -> sea_orm::UpdateMany<messages::Entity> {
    messages::Entity::update_many()
        .col_expr(
            messages::Column::Status,
            Expr::value(MessageStatus::Queued.as_str()),
        )
        .col_expr(
            messages::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(
            messages::Column::LockedBy,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            messages::Column::EnqueuedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(status_is(MessageStatus::Sending))
}

/// Puts back `sending` messages whose lease ran out (their worker died): `sending → queued`.
pub async fn requeue_expired(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let res = unlock_to_queued()
        .filter(messages::Column::LockedUntil.lt(now))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Hands back every message `node` is sending (clean shutdown): `sending → queued`, attempt refunded.
pub async fn release_node(db: &impl ConnectionTrait, node: &str) -> Result<u64, DbErr> {
    let res = unlock_to_queued()
        .col_expr(
            messages::Column::Attempts,
            Expr::col(messages::Column::Attempts).sub(1),
        )
        .filter(messages::Column::LockedBy.eq(node))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Hands back message `id` that `node` claimed and did not send: `sending → queued` without a
/// job, its attempt not counted; whether it was still `node`'s to hand back.
pub async fn release(db: &impl ConnectionTrait, id: &MessageId, node: &str) -> Result<bool, DbErr> {
    let res = unlock_to_queued()
        .col_expr(
            messages::Column::Attempts,
            Expr::col(messages::Column::Attempts).sub(1),
        )
        .col_expr(messages::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(messages::Column::Id.eq(id))
        .filter(messages::Column::LockedBy.eq(node))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Messages not yet finished (queued or sending): the delivery backlog.
pub async fn backlog(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    use sea_orm::PaginatorTrait;
    messages::Entity::find()
        .filter(messages::Column::Status.is_in([
            MessageStatus::Queued.as_str(),
            MessageStatus::Sending.as_str(),
        ]))
        .count(db)
        .await
}

#[derive(Debug)]
/// What a provider's status report came to.
pub enum StatusApplied {
    /// No message of ours has that provider id (yet).
    Unknown,
    /// Ours; with the outcome it recorded, if it changed anything.
    Known(Option<Box<(MessageRow, super::hooks::Outcome)>>),
}

/// Applies a provider's status callback (`sent`, `delivered`, `read`, `failed`) to the message
/// it names. Idempotent (callbacks are retried): timestamps are set once, and `failed` moves a
/// message only out of `sent`. Listeners record the outcome in the same transaction; the
/// caller runs their follow-ups.
pub async fn apply_provider_status(
    db: &DatabaseConnection,
    listeners: &super::hooks::Listeners,
    channel_id: &ChannelId,
    provider_id: &str,
    status: Receipt,
    at: DateTime<Utc>,
    error: Option<crate::channels::ChannelError>,
) -> Result<StatusApplied, DbErr> {
    use sea_orm::TransactionTrait;
    let Some(msg) = messages::Entity::find()
        .filter(messages::Column::ChannelId.eq(channel_id))
        .filter(messages::Column::ProviderMessageId.eq(provider_id))
        .one(db)
        .await?
    else {
        return Ok(StatusApplied::Unknown);
    };
    // `sent` (already known from the send's answer) and statuses we do not track change
    // nothing, and a receipt already stamped is a redelivery: no transaction for either (a
    // third of a campaign's webhooks are `sent`).
    let nothing_to_do = match status {
        Receipt::Delivered => msg.delivered_at.is_some(),
        Receipt::Read => msg.read_at.is_some(),
        Receipt::Failed => false,
        Receipt::Sent => true,
    };
    if nothing_to_do {
        return Ok(StatusApplied::Known(None));
    }
    let txn = db.begin().await?;
    let mut heard = None;
    let stamp = |col: messages::Column| {
        messages::Entity::update_many()
            .col_expr(col, Expr::value(at))
            .filter(messages::Column::Id.eq(msg.id.clone()))
            .filter(col.is_null())
    };
    let changed = match status {
        Receipt::Delivered => {
            stamp(messages::Column::DeliveredAt)
                .exec(&txn)
                .await?
                .rows_affected
        }
        Receipt::Read => {
            stamp(messages::Column::ReadAt)
                .exec(&txn)
                .await?
                .rows_affected
        }
        Receipt::Failed => {
            let (code, detail) = match &error {
                Some(e) => (e.code(), e.to_string()),
                None => (
                    "provider-failed",
                    "the provider reported a failure".to_owned(),
                ),
            };
            let n = messages::Entity::update_many()
                .col_expr(
                    messages::Column::Status,
                    Expr::value(MessageStatus::Failed.as_str()),
                )
                .col_expr(messages::Column::LastErrorCode, Expr::value(code))
                .col_expr(messages::Column::LastError, Expr::value(detail.clone()))
                .col_expr(messages::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(messages::Column::Id.eq(msg.id.clone()))
                .filter(status_is(MessageStatus::Sent))
                .exec(&txn)
                .await?
                .rows_affected;
            if n > 0 {
                // It was counted as sent when the provider accepted it.
                super::stats::bump(&txn, &msg, msg.sent_at.unwrap_or(at), -1, 1).await?;
                let outcome = super::hooks::Outcome::Failed {
                    code: code.to_owned(),
                    detail: detail.clone(),
                };
                listeners.record(&txn, &msg, &outcome).await?;
                heard = Some(outcome);
                record(
                    &txn,
                    &msg.id,
                    HistoryKind::Failed,
                    Some("provider"),
                    Some(code),
                    Some(&detail),
                )
                .await?;
            }
            n
        }
        Receipt::Sent => 0,
    };
    if changed > 0 && status != Receipt::Failed {
        let detail = format!("at {}", at.to_rfc3339());
        record(
            &txn,
            &msg.id,
            HistoryKind::Status,
            Some(status.as_str()),
            None,
            Some(&detail),
        )
        .await?;
        let outcome = match status {
            Receipt::Delivered => super::hooks::Outcome::Delivered { at },
            _ => super::hooks::Outcome::Read { at },
        };
        listeners.record(&txn, &msg, &outcome).await?;
        heard = Some(outcome);
    }
    txn.commit().await?;
    Ok(StatusApplied::Known(heard.map(|o| Box::new((msg, o)))))
}

/// Failed messages of `channel_id` addressed to `recipient`, oldest first (a subscription's
/// dead letters).
pub async fn failed_to(
    db: &impl ConnectionTrait,
    channel_id: &ChannelId,
    recipient: &str,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<MessageRow>, DbErr> {
    let q = messages::Entity::find()
        .filter(messages::Column::ChannelId.eq(channel_id))
        .filter(messages::Column::Recipient.eq(recipient))
        .filter(status_is(MessageStatus::Failed));
    crate::page::fetch(
        db,
        q,
        messages::Column::Id,
        sea_orm::Order::Asc,
        page,
        |m| m.id.to_string(),
    )
    .await
}

/// Puts failed messages of `channel_id` addressed to `recipient` (those of `only`, or all) back
/// in the queue as if new: no attempts, due now, no job yet. Returns their ids; the caller
/// pushes their jobs (the sweep would, later).
pub async fn requeue_failed(
    db: &DatabaseConnection,
    channel_id: &ChannelId,
    recipient: &str,
    only: Option<&[MessageId]>,
) -> Result<Vec<MessageId>, DbErr> {
    use sea_orm::{QuerySelect, TransactionTrait};
    let mut find = messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .filter(messages::Column::ChannelId.eq(channel_id))
        .filter(messages::Column::Recipient.eq(recipient))
        .filter(status_is(MessageStatus::Failed));
    if let Some(ids) = only {
        find = find.filter(messages::Column::Id.is_in(ids.iter().cloned()));
    }
    // Read before the transaction: in SQLite a transaction that reads and then writes fails at
    // once if another connection wrote in between; one that starts by writing waits its turn.
    let candidates: Vec<MessageId> = find.into_tuple().all(db).await?;
    let now = Utc::now();
    let mut requeued = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(500) {
        let txn = db.begin().await?;
        for id in chunk {
            let changed = messages::Entity::update_many()
                .col_expr(
                    messages::Column::Status,
                    Expr::value(MessageStatus::Queued.as_str()),
                )
                .col_expr(messages::Column::Attempts, Expr::value(0))
                .col_expr(messages::Column::NextAttemptAt, Expr::value(now))
                .col_expr(
                    messages::Column::EnqueuedAt,
                    Expr::value(None::<DateTime<Utc>>),
                )
                .col_expr(messages::Column::UpdatedAt, Expr::value(now))
                .filter(messages::Column::Id.eq(id.as_str()))
                .filter(status_is(MessageStatus::Failed))
                .exec(&txn)
                .await?
                .rows_affected;
            if changed > 0 {
                record(&txn, id, HistoryKind::Replayed, None, None, None).await?;
                requeued.push(id.clone());
            }
        }
        txn.commit().await?;
    }
    Ok(requeued)
}

/// Whether a message with this id exists.
pub async fn exists(db: &impl ConnectionTrait, id: &MessageId) -> Result<bool, DbErr> {
    use sea_orm::PaginatorTrait;
    Ok(messages::Entity::find_by_id(id.to_owned())
        .count(db)
        .await?
        > 0)
}

/// Erases the text of finished messages (sent, failed, skipped) created before `cutoff`, a chunk
/// per statement so deliveries keep going; the rows stay (the ledger). Returns how many.
pub async fn redact_bodies_before(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    const CHUNK: u64 = 5_000;
    let finished = [
        MessageStatus::Sent.as_str(),
        MessageStatus::Failed.as_str(),
        MessageStatus::Skipped.as_str(),
    ];
    let mut total = 0;
    loop {
        let ids: Vec<MessageId> = messages::Entity::find()
            .select_only()
            .column(messages::Column::Id)
            .filter(messages::Column::CreatedAt.lt(cutoff))
            .filter(messages::Column::Status.is_in(finished))
            .filter(
                sea_orm::Condition::any()
                    .add(messages::Column::Body.ne(""))
                    .add(messages::Column::ProviderTemplate.is_not_null()),
            )
            .limit(CHUNK)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let n = ids.len() as u64;
        messages::Entity::update_many()
            .col_expr(messages::Column::Body, Expr::value(""))
            .col_expr(
                messages::Column::ProviderTemplate,
                Expr::value(Option::<String>::None),
            )
            .filter(messages::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        total += n;
        if n < CHUNK {
            return Ok(total);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

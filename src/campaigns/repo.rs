//! Campaign rows, their recipients' ledger in `messages`, and the counters.
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use crate::{
    domain::{CampaignId, ChannelId, ContactId, MediaId, MessageId, MessageStatus, UserId},
    entities::{campaigns, messages},
};

pub use campaigns::Model as CampaignRow;

pub use crate::domain::CampaignStatus;

/// One campaign by id.
pub async fn find(db: &DatabaseConnection, id: &CampaignId) -> Result<Option<CampaignRow>, DbErr> {
    campaigns::Entity::find_by_id(id.to_owned()).one(db).await
}

/// Moves a campaign from one of `from` to `to` (with a detail); false if it was in none of them.
pub async fn transition(
    db: &impl ConnectionTrait,
    id: &CampaignId,
    from: &[CampaignStatus],
    to: CampaignStatus,
    detail: Option<&str>,
) -> Result<bool, DbErr> {
    let now = Utc::now();
    let mut update = campaigns::Entity::update_many()
        .col_expr(campaigns::Column::Status, Expr::value(to.as_str()))
        .col_expr(campaigns::Column::StatusDetail, Expr::value(detail))
        .col_expr(campaigns::Column::UpdatedAt, Expr::value(now));
    if to == CampaignStatus::Running {
        update = update.col_expr(
            campaigns::Column::StartedAt,
            Expr::col(campaigns::Column::StartedAt).if_null(now),
        );
    }
    if matches!(to, CampaignStatus::Completed | CampaignStatus::Cancelled) {
        update = update.col_expr(campaigns::Column::FinishedAt, Expr::value(now));
    }
    let res = update
        .filter(campaigns::Column::Id.eq(id))
        .filter(campaigns::Column::Status.is_in(from.iter().map(|s| s.as_str())))
        .exec(db)
        .await?;
    Ok(res.rows_affected > 0)
}

/// Campaigns that should be running now: `running`, and `scheduled` ones that are due.
pub async fn due(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Vec<CampaignRow>, DbErr> {
    use sea_orm::sea_query::Condition;
    campaigns::Entity::find()
        .filter(
            Condition::any()
                .add(campaigns::Column::Status.eq(CampaignStatus::Running.as_str()))
                .add(campaigns::Column::Status.eq(CampaignStatus::Preparing.as_str()))
                .add(
                    Condition::all()
                        .add(campaigns::Column::Status.eq(CampaignStatus::Scheduled.as_str()))
                        .add(campaigns::Column::ScheduledAt.lte(now)),
                ),
        )
        .all(db)
        .await
}

/// The last contact (in id order, the audience's order) in a campaign's ledger: where building
/// it goes on after an interruption.
pub async fn last_contact(
    db: &DatabaseConnection,
    campaign_id: &CampaignId,
) -> Result<Option<String>, DbErr> {
    messages::Entity::find()
        .select_only()
        .column_as(Expr::col(messages::Column::ContactId).max(), "last")
        .filter(messages::Column::CampaignId.eq(campaign_id.as_str()))
        .into_tuple::<Option<String>>()
        .one(db)
        .await
        .map(Option::flatten)
}

/// One contact's ledger row of a campaign: `pending`, or `skipped` with the reason.
pub fn recipient_row(
    message: crate::outbox::repo::NewMessage,
    campaign_id: &CampaignId,
    contact_id: &ContactId,
    provider_template: Option<String>,
    skip: Option<&'static str>,
    now: DateTime<Utc>,
) -> messages::ActiveModel {
    use sea_orm::Set;
    let mut row = message.into_row(now);
    row.campaign_id = Set(Some(campaign_id.clone()));
    row.contact_id = Set(Some(contact_id.clone()));
    row.provider_template = Set(provider_template);
    row.status = Set(match skip {
        Some(_) => MessageStatus::Skipped,
        None => MessageStatus::Pending,
    }
    .as_str()
    .into());
    row.last_error_code = Set(skip.map(str::to_owned));
    row
}

/// Inserts ledger rows (`pending`), skipping contacts the campaign already has: starting twice,
/// or after a crash half-way, never creates a second message for a contact.
pub async fn insert_recipients(
    db: &impl ConnectionTrait,
    rows: Vec<messages::ActiveModel>,
) -> Result<(), DbErr> {
    for chunk in crate::db::pow2_chunks(rows) {
        messages::Entity::insert_many(chunk)
            .on_conflict(
                OnConflict::columns([messages::Column::CampaignId, messages::Column::ContactId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Releases up to `n` pending recipients for delivery (`pending → queued`), oldest first, after
/// `after` when given (see [`pending`]); returns their ids in order (the caller pushes their
/// jobs).
pub async fn release(
    db: &DatabaseConnection,
    campaign_id: &CampaignId,
    n: u64,
    after: Option<&MessageId>,
) -> Result<Vec<MessageId>, DbErr> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let txn = db.begin().await?;
    // Released only while running: a pause that landed meanwhile wins. The check is a write (it
    // touches the campaign row) so that the transaction holds the write lock from its first
    // statement: in SQLite a transaction that reads and then writes fails at once
    // (SQLITE_BUSY_SNAPSHOT, no busy wait) if another connection wrote in between, which stopped
    // the campaign actor every few seconds and paused the campaign for a second each time. In
    // PostgreSQL the row lock also orders this release with a concurrent pause.
    let running = campaigns::Entity::update_many()
        .col_expr(campaigns::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(campaigns::Column::Id.eq(campaign_id))
        .filter(campaigns::Column::Status.eq(CampaignStatus::Running.as_str()))
        .exec(&txn)
        .await?
        .rows_affected
        > 0;
    if !running {
        return Ok(Vec::new());
    }
    let ids: Vec<MessageId> = pending(campaign_id, after)
        .select_only()
        .column(messages::Column::Id)
        .order_by_asc(messages::Column::Id)
        .limit(n)
        .into_tuple()
        .all(&txn)
        .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    let now = Utc::now();
    // In chunks of powers of two: one text per chunk size, not one per release size.
    for chunk in crate::db::pow2_chunks(ids.clone()) {
        messages::Entity::update_many()
            .col_expr(
                messages::Column::Status,
                Expr::value(MessageStatus::Queued.as_str()),
            )
            .col_expr(messages::Column::NextAttemptAt, Expr::value(now))
            .col_expr(messages::Column::EnqueuedAt, Expr::value(now))
            .col_expr(messages::Column::UpdatedAt, Expr::value(now))
            .filter(messages::Column::Id.is_in(chunk))
            .filter(messages::Column::Status.eq(MessageStatus::Pending.as_str()))
            .exec(&txn)
            .await?;
    }
    crate::outbox::repo::record_queued(&txn, ids.iter()).await?;
    txn.commit().await?;
    Ok(ids)
}

/// Moves this campaign's messages in `from` to `to` (pause: queued → pending; cancel:
/// pending/queued → skipped; retry: failed → pending). Messages being sent are left to finish.
pub async fn move_messages(
    db: &impl ConnectionTrait,
    campaign_id: &CampaignId,
    from: &[MessageStatus],
    to: MessageStatus,
    code: Option<&str>,
) -> Result<u64, DbErr> {
    let mut update = messages::Entity::update_many()
        .col_expr(messages::Column::Status, Expr::value(to.as_str()))
        .col_expr(messages::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(code) = code {
        update = update.col_expr(messages::Column::LastErrorCode, Expr::value(code));
    }
    if to == MessageStatus::Pending {
        // A retried message starts over: fresh attempts, no job, no error.
        update = update
            .col_expr(messages::Column::Attempts, Expr::value(0))
            .col_expr(
                messages::Column::EnqueuedAt,
                Expr::value(Option::<DateTime<Utc>>::None),
            );
    }
    let res = update
        .filter(messages::Column::CampaignId.eq(campaign_id))
        .filter(messages::Column::Status.is_in(from.iter().map(|s| s.as_str())))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

/// Live counters of a campaign, from its ledger.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Counters {
    /// Recipients in the ledger.
    pub total: i64,
    /// Not released yet.
    pub pending: i64,
    /// Released and waiting for a send (or being sent).
    pub queued: i64,
    /// Accepted by the provider.
    pub sent: i64,
    /// Reported delivered (a subset of `sent`).
    pub delivered: i64,
    /// Reported read (a subset of `sent`).
    pub read: i64,
    /// Failed for good.
    pub failed: i64,
    /// Not sent on purpose (opted out, missing variables, cancelled).
    pub skipped: i64,
}

impl Counters {
    /// The counters as last stored on the campaign's row.
    pub fn stored(c: &CampaignRow) -> Self {
        Self {
            total: c.total,
            pending: c.pending,
            queued: c.queued,
            sent: c.sent,
            delivered: c.delivered,
            read: c.read,
            failed: c.failed,
            skipped: c.skipped,
        }
    }

    /// Whether every recipient reached a final state.
    pub fn done(&self) -> bool {
        self.pending == 0 && self.queued == 0
    }
}

/// Counts the ledger by status (an index range scan on `(campaign_id, status)`).
pub async fn count(db: &impl ConnectionTrait, campaign_id: &CampaignId) -> Result<Counters, DbErr> {
    let by_status: Vec<(String, i64)> = messages::Entity::find()
        .select_only()
        .column(messages::Column::Status)
        .column_as(messages::Column::Id.count(), "n")
        .filter(messages::Column::CampaignId.eq(campaign_id))
        .group_by(messages::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let mut c = Counters::default();
    for (status, n) in by_status {
        c.total += n;
        match status.as_str() {
            "pending" => c.pending += n,
            "queued" | "sending" => c.queued += n,
            "sent" => c.sent += n,
            "failed" => c.failed += n,
            _ => c.skipped += n,
        }
    }
    if c.sent > 0 {
        let (delivered, read): (Option<i64>, Option<i64>) = messages::Entity::find()
            .select_only()
            .column_as(messages::Column::DeliveredAt.count(), "d")
            .column_as(messages::Column::ReadAt.count(), "r")
            .filter(messages::Column::CampaignId.eq(campaign_id))
            .filter(messages::Column::Status.eq(MessageStatus::Sent.as_str()))
            .into_tuple()
            .one(db)
            .await?
            .unwrap_or_default();
        // Two statements: a receipt can land between them; never show more than were sent.
        c.delivered = Ord::min(delivered.unwrap_or(0), c.sent);
        c.read = Ord::min(read.unwrap_or(0), c.sent);
    }
    Ok(c)
}

/// Stores the counters on the campaign row (lists and dashboards read them from there).
pub async fn store_counters(
    db: &impl ConnectionTrait,
    campaign_id: &CampaignId,
    c: &Counters,
) -> Result<(), DbErr> {
    campaigns::Entity::update_many()
        .col_expr(campaigns::Column::Total, Expr::value(c.total))
        .col_expr(campaigns::Column::Pending, Expr::value(c.pending))
        .col_expr(campaigns::Column::Queued, Expr::value(c.queued))
        .col_expr(campaigns::Column::Sent, Expr::value(c.sent))
        .col_expr(campaigns::Column::Delivered, Expr::value(c.delivered))
        .col_expr(campaigns::Column::Read, Expr::value(c.read))
        .col_expr(campaigns::Column::Failed, Expr::value(c.failed))
        .col_expr(campaigns::Column::Skipped, Expr::value(c.skipped))
        .col_expr(campaigns::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(campaigns::Column::Id.eq(campaign_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether the campaign has a recipient not released yet, after `after` when given (one index
/// probe).
pub async fn has_pending(
    db: &impl ConnectionTrait,
    campaign_id: &CampaignId,
    after: Option<&MessageId>,
) -> Result<bool, DbErr> {
    let one: Option<String> = pending(campaign_id, after)
        .select_only()
        .column(messages::Column::Id)
        .limit(1)
        .into_tuple()
        .one(db)
        .await?;
    Ok(one.is_some())
}

/// Recipients released and not final yet (queued or being sent), from `from` on when given, and
/// the lowest id among them.
pub async fn in_flight(
    db: &impl ConnectionTrait,
    campaign_id: &CampaignId,
    from: Option<&MessageId>,
) -> Result<(u64, Option<MessageId>), DbErr> {
    let mut query = messages::Entity::find()
        .select_only()
        .column_as(messages::Column::Id.count(), "n")
        .column_as(messages::Column::Id.min(), "lowest")
        .filter(messages::Column::CampaignId.eq(campaign_id))
        .filter(messages::Column::Status.is_in([
            MessageStatus::Queued.as_str(),
            MessageStatus::Sending.as_str(),
        ]));
    if let Some(from) = from {
        query = query.filter(messages::Column::Id.gte(from));
    }
    let row: Option<(i64, Option<MessageId>)> = query.into_tuple().one(db).await?;
    Ok(row.map_or((0, None), |(n, lowest)| {
        (u64::try_from(n).unwrap_or(0), lowest)
    }))
}

/// This campaign's `pending` messages, after `after` when given. The ledger's index on
/// (campaign, status, id) keeps an entry for every status a message has been in until the
/// database vacuums it, so a read of the pending ones from the start walks past every message
/// already released: with 300,000 of 1,000,000 released and no vacuum yet, 70 ms instead of
/// 0.2 ms from where the last release stopped.
fn pending(
    campaign_id: &CampaignId,
    after: Option<&MessageId>,
) -> sea_orm::Select<messages::Entity> {
    let query = messages::Entity::find()
        .filter(messages::Column::CampaignId.eq(campaign_id))
        .filter(messages::Column::Status.eq(MessageStatus::Pending.as_str()));
    match after {
        Some(after) => query.filter(messages::Column::Id.gt(after)),
        None => query,
    }
}

/// What a new draft campaign is made of (the JSON fields already serialised).
pub struct Draft {
    /// Owner.
    pub owner_id: UserId,
    /// Name.
    pub name: String,
    /// Account it sends from.
    pub channel_id: ChannelId,
    /// Template it was written from.
    pub template_id: Option<String>,
    /// Text (a template body).
    pub body: String,
    /// WhatsApp provider template (JSON).
    pub provider_template: Option<String>,
    /// Media attached.
    pub media_id: Option<MediaId>,
    /// Audience (JSON).
    pub audience: String,
    /// Start time.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Send window (JSON).
    pub send_window: Option<String>,
}

/// Inserts a campaign as a draft with zero counters.
pub async fn insert(
    db: &impl ConnectionTrait,
    d: Draft,
    now: DateTime<Utc>,
) -> Result<CampaignRow, DbErr> {
    use sea_orm::{ActiveModelTrait, Set};
    campaigns::ActiveModel {
        id: Set(CampaignId::generate()),
        owner_id: Set(d.owner_id),
        name: Set(d.name),
        channel_id: Set(d.channel_id),
        template_id: Set(d.template_id),
        body: Set(d.body),
        provider_template: Set(d.provider_template),
        media_id: Set(d.media_id),
        audience: Set(d.audience),
        scheduled_at: Set(d.scheduled_at),
        send_window: Set(d.send_window),
        status: Set(CampaignStatus::Draft.as_str().into()),
        status_detail: Set(None),
        total: Set(0),
        pending: Set(0),
        queued: Set(0),
        sent: Set(0),
        delivered: Set(0),
        read: Set(0),
        failed: Set(0),
        skipped: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
    }
    .insert(db)
    .await
}

/// An owner's campaigns, newest first (at most 500), of one status if given.
pub async fn list_for(
    db: &impl ConnectionTrait,
    owner_id: &UserId,
    status: Option<&str>,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<CampaignRow>, DbErr> {
    let mut query = campaigns::Entity::find().filter(campaigns::Column::OwnerId.eq(owner_id));
    if let Some(s) = status {
        query = query.filter(campaigns::Column::Status.eq(s));
    }
    crate::page::fetch(
        db,
        query,
        campaigns::Column::Id,
        sea_orm::Order::Desc,
        page,
        |c| c.id.to_string(),
    )
    .await
}

/// A page of a campaign's recipients in id order, after `after`, of one status if given.
pub async fn recipients(
    db: &impl ConnectionTrait,
    campaign_id: &CampaignId,
    status: Option<&str>,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<messages::Model>, DbErr> {
    let mut query = messages::Entity::find().filter(messages::Column::CampaignId.eq(campaign_id));
    if let Some(s) = status {
        query = query.filter(messages::Column::Status.eq(s));
    }
    crate::page::fetch(
        db,
        query,
        messages::Column::Id,
        sea_orm::Order::Asc,
        page,
        |m| m.id.to_string(),
    )
    .await
}

/// Applies a state change and the ledger moves that go with it, in one transaction; false
/// when the campaign was not in one of `from`.
pub async fn change(
    db: &DatabaseConnection,
    id: &CampaignId,
    from: &[CampaignStatus],
    to: CampaignStatus,
    moves: &[(&[MessageStatus], MessageStatus, Option<&str>)],
) -> Result<bool, DbErr> {
    change_saying(db, id, from, to, moves, None).await
}

/// [`change`], with a detail for the campaign's new status.
pub async fn change_saying(
    db: &DatabaseConnection,
    id: &CampaignId,
    from: &[CampaignStatus],
    to: CampaignStatus,
    moves: &[(&[MessageStatus], MessageStatus, Option<&str>)],
    detail: Option<&str>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    if !transition(&txn, id, from, to, detail).await? {
        return Ok(false);
    }
    for (from, to, code) in moves {
        move_messages(&txn, id, from, *to, *code).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// Pauses every running or scheduled campaign of `channel_id` (its queued recipients back to
/// pending), saying why; returns the paused campaigns' ids.
pub async fn pause_channel(
    db: &DatabaseConnection,
    channel_id: &ChannelId,
    reason: &str,
) -> Result<Vec<CampaignId>, DbErr> {
    let live = [CampaignStatus::Running, CampaignStatus::Scheduled];
    let found = campaigns::Entity::find()
        .filter(campaigns::Column::ChannelId.eq(channel_id))
        .filter(campaigns::Column::Status.is_in(live.iter().map(|s| s.as_str())))
        .all(db)
        .await?;
    let mut paused = Vec::new();
    for c in found {
        let moves: &[(&[MessageStatus], MessageStatus, Option<&str>)] =
            &[(&[MessageStatus::Queued], MessageStatus::Pending, None)];
        if change_saying(
            db,
            &c.id,
            &live,
            CampaignStatus::Paused,
            moves,
            Some(reason),
        )
        .await?
        {
            let counters = count(db, &c.id).await?;
            store_counters(db, &c.id, &counters).await?;
            paused.push(c.id);
        }
    }
    Ok(paused)
}

//! The dashboard's reads of the per-day and per-month rollups (`outbox::stats` writes them).
use crate::domain::ContactId;
use crate::domain::UserId;
use chrono::NaiveDate;
use sea_orm::{DatabaseConnection, DbErr, FromQueryResult};

#[derive(Debug, FromQueryResult)]
pub struct Counts {
    pub sent: Option<i64>,
    pub errors: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
pub struct Day {
    pub day: String,
    pub sent: i64,
    pub errors: i64,
}

#[derive(Debug, FromQueryResult)]
pub struct Group {
    pub group_name: Option<String>,
    pub sent: Option<i64>,
    pub errors: Option<i64>,
}

#[derive(Debug, FromQueryResult)]
pub struct TopContact {
    pub contact_id: ContactId,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub group_name: Option<String>,
    pub sent: i64,
    pub errors: i64,
}

fn statement(
    db: &DatabaseConnection,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    crate::db::statement(db.get_database_backend(), sql, values)
}

/// Sent and failed messages of `owner` in `month` (`YYYY-MM`).
pub async fn month(
    db: &DatabaseConnection,
    owner: &UserId,
    month: &str,
) -> Result<(i64, i64), DbErr> {
    let c = Counts::find_by_statement(statement(
        db,
        "SELECT sent, errors FROM monthly_stats WHERE owner_id = ? AND month = ?",
        vec![owner.into(), month.into()],
    ))
    .one(db)
    .await?;
    Ok(c.map_or((0, 0), |c| (c.sent.unwrap_or(0), c.errors.unwrap_or(0))))
}

/// `owner`'s days from `from` on that have any message, in order.
pub async fn days_since(
    db: &DatabaseConnection,
    owner: &UserId,
    from: NaiveDate,
) -> Result<Vec<Day>, DbErr> {
    Day::find_by_statement(statement(
        db,
        "SELECT day, sent, errors FROM daily_stats WHERE owner_id = ? AND day >= ? ORDER BY day",
        vec![owner.into(), from.format("%Y-%m-%d").to_string().into()],
    ))
    .all(db)
    .await
}

/// `owner`'s month per contact group, most sent first.
pub async fn by_group(
    db: &DatabaseConnection,
    owner: &UserId,
    month: &str,
) -> Result<Vec<Group>, DbErr> {
    Group::find_by_statement(statement(
        db,
        "SELECT c.group_name AS group_name, CAST(SUM(s.sent) AS BIGINT) AS sent, \
         CAST(SUM(s.errors) AS BIGINT) AS errors \
         FROM contact_stats s JOIN contacts c ON c.id = s.contact_id \
         WHERE s.owner_id = ? AND s.month = ? GROUP BY c.group_name ORDER BY SUM(s.sent) DESC",
        vec![owner.into(), month.into()],
    ))
    .all(db)
    .await
}

/// `owner`'s `limit` contacts with most messages sent in `month`.
pub async fn top_contacts(
    db: &DatabaseConnection,
    owner: &UserId,
    month: &str,
    limit: u64,
) -> Result<Vec<TopContact>, DbErr> {
    TopContact::find_by_statement(statement(
        db,
        &format!(
            "SELECT s.contact_id AS contact_id, c.phone AS phone, c.name AS name, \
             c.group_name AS group_name, s.sent AS sent, s.errors AS errors \
             FROM contact_stats s LEFT JOIN contacts c ON c.id = s.contact_id \
             WHERE s.owner_id = ? AND s.month = ? ORDER BY s.sent DESC, s.contact_id LIMIT {limit}"
        ),
        vec![owner.into(), month.into()],
    ))
    .all(db)
    .await
}

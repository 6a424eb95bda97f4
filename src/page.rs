//! The one list convention of `/api/v1`: every list answers `{"items": [...], "next_cursor": …}`
//! and takes `?cursor=&limit=`. Pages are keyset pages over the rows' ids (UUIDv7, so id order is
//! creation order): a page is "the next `limit` rows after this id", which stays stable while rows
//! are added or removed, costs one index range scan however deep the client pages, and never
//! repeats or skips a row the way an offset does when the list changes between two calls.
//!
//! The cursor is opaque to clients (base64url of the last id seen, with a version tag), so the
//! key can change without breaking anyone who only passes back what we gave. A cursor that does
//! not decode is `400 invalid-cursor`; a `limit` outside `1..=1000` is `400 validation-failed`.
//! The seed routes (`/events`, `/dashboard/*`, `/api/signals/*`) keep their seeds' shapes.
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect,
    Select,
};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, FieldError};

/// Rows per page when the client does not say.
pub const DEFAULT_LIMIT: u64 = 100;
/// The most rows one page holds.
pub const MAX_LIMIT: u64 = 1000;

/// Version tag of the cursor's text, so a later key format can tell old cursors apart.
const CURSOR_TAG: &str = "v1:";

/// `?cursor=&limit=` of every `/api/v1` list.
#[derive(Debug, Default, Clone, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `next_cursor` of the page before; absent for the first page.
    pub cursor: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

/// A checked page request: where to start and how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// The id the page starts after (exclusive), decoded from the cursor.
    pub after: Option<String>,
    /// Rows per page.
    pub limit: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            after: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

impl PageRequest {
    /// The first `limit` rows.
    pub fn first(limit: u64) -> Self {
        Self { after: None, limit }
    }
}

impl PageQuery {
    /// Checks the query: the cursor must be one this server gave, the limit within bounds.
    pub fn request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::Invalid(vec![FieldError::new(
                "limit",
                "invalid-format",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            )]));
        }
        let after = after(self.cursor.as_deref())?;
        Ok(PageRequest { after, limit })
    }
}

/// The id a `cursor` parameter starts after: `None` without one, `400 invalid-cursor` when it
/// is not one this server gave.
pub fn after(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    match cursor {
        None | Some("") => Ok(None),
        Some(c) => decode(c).map(Some).ok_or_else(|| {
            ApiError::BadRequest(
                "invalid-cursor",
                "cursor is not a next_cursor this server gave".into(),
            )
        }),
    }
}

/// One page of a list: the body of every `/api/v1` list answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// The same page with each row turned into `U` (a model into its view).
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }

    /// A page from rows fetched with one row more than `limit`: that extra row only says
    /// whether a next page exists, and is dropped. `key` gives a row's id for the cursor.
    pub fn from_overfetch(mut rows: Vec<T>, limit: u64, key: impl Fn(&T) -> String) -> Self {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| encode(&key(r)))
        } else {
            None
        };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// The cursor text for a row whose id is `id`.
pub fn encode(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}{id}"))
}

/// The id inside a cursor, or `None` when it is not one this server gave.
pub fn decode(cursor: &str) -> Option<String> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let id = raw.strip_prefix(CURSOR_TAG)?;
    (!id.is_empty() && id.len() <= 200).then(|| id.to_owned())
}

/// Runs `select` as one keyset page ordered by `id` (`Order::Asc`: oldest first; `Order::Desc`:
/// newest first), starting after the request's cursor.
pub async fn fetch<E, C>(
    db: &C,
    select: Select<E>,
    id: E::Column,
    order: Order,
    page: &PageRequest,
    key: impl Fn(&E::Model) -> String,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut q = select;
    if let Some(after) = &page.after {
        q = match order {
            Order::Desc => q.filter(id.lt(after.as_str())),
            _ => q.filter(id.gt(after.as_str())),
        };
    }
    let rows = q.order_by(id, order).limit(page.limit + 1).all(db).await?;
    Ok(Page::from_overfetch(rows, page.limit, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_strangers_are_refused() {
        let c = encode("0193a1b2-0000-7000-8000-000000000001");
        assert_eq!(
            decode(&c).as_deref(),
            Some("0193a1b2-0000-7000-8000-000000000001")
        );
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("v2:x")), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("v1:")), None);
    }

    #[test]
    fn limits_outside_the_bounds_are_refused() {
        for bad in [0, MAX_LIMIT + 1] {
            let q = PageQuery {
                cursor: None,
                limit: Some(bad),
            };
            assert!(matches!(q.request(), Err(ApiError::Invalid(_))), "{bad}");
        }
        let q = PageQuery {
            cursor: Some("%%%".into()),
            limit: None,
        };
        assert!(matches!(
            q.request(),
            Err(ApiError::BadRequest("invalid-cursor", _))
        ));
        assert_eq!(
            PageQuery::default().request().expect("defaults"),
            PageRequest::default()
        );
    }

    #[test]
    fn the_extra_row_only_says_there_is_more() {
        let page = Page::from_overfetch(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            page.next_cursor.as_deref().and_then(decode).as_deref(),
            Some("2")
        );
        let last = Page::from_overfetch(vec![1, 2], 2, |n| n.to_string());
        assert_eq!(last.next_cursor, None);
    }
}

//! Alert rules: "service = payments and metadata.level = critical → this integration".
//!
//! The enabled rules live in memory ([`RuleEngine`]); the event writer hands it every committed
//! batch, and matching is a string compare per event and rule, so ingestion does not slow down
//! when no rule matches. A match becomes an alert through the same ledger, queue and retries as
//! `POST /api/alert` (an integration target also takes from its daily quota). Each rule fires at
//! most `max_per_minute` times (a GCRA bucket: in Redis for every replica together when
//! `redis_url` is set, else per node); matches beyond that are counted as suppressed. Rules are reloaded when they change here and every [`REFRESH`] from the
//! database, so a change made on another replica arrives within that time.
use std::{
    collections::HashMap,
    num::NonZeroU32,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sea_orm::{
    ActiveValue, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use serde_json::{Map, Value};

use crate::{
    channels::repo as channels_repo,
    clock::Clock,
    domain::{ChannelId, IntegrationId, UserId},
    entities::{alert_rules, events},
    integrations::{Status, repo as integrations_repo},
    outbox::{
        repo::NewMessage,
        writer::{Admission, Admitted, LedgerWriter},
    },
};

/// How often every node reloads the rules and writes its suppressed counts.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Longest alert text taken from an event (Telegram's message limit is 4096 characters).
const MAX_ALERT_CHARS: usize = 3_900;

/// Where a rule's alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An integration's chat, within its daily quota.
    Integration(IntegrationId),
    /// A chat on one of the owner's channel accounts.
    Chat {
        /// Channel account that sends.
        channel_id: ChannelId,
        /// Recipient chat.
        chat_id: String,
    },
}

/// One metadata condition: the value at `path` (dot-separated keys) equals `value`.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    path: Vec<String>,
    value: Value,
}

/// Parses the stored `conditions` object.
fn parse_conditions(json: &Map<String, Value>) -> Vec<Condition> {
    json.iter()
        .map(|(k, v)| Condition {
            path: k.split('.').map(str::to_owned).collect(),
            value: v.clone(),
        })
        .collect()
}

struct Rule {
    id: String,
    name: String,
    owner_id: UserId,
    service: Option<String>,
    conditions: Vec<Condition>,
    target: Target,
    max_per_minute: i32,
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl Rule {
    fn matches(
        &self,
        service: &str,
        metadata: &mut Option<Option<Value>>,
        raw: Option<&str>,
    ) -> bool {
        if self.service.as_deref().is_some_and(|s| s != service) {
            return false;
        }
        if self.conditions.is_empty() {
            return true;
        }
        // Parsed once per event, and only when some rule looks at it.
        let metadata =
            metadata.get_or_insert_with(|| raw.and_then(|m| serde_json::from_str::<Value>(m).ok()));
        let Some(metadata) = metadata else {
            return false;
        };
        self.conditions.iter().all(|c| {
            c.path
                .iter()
                .try_fold(&*metadata, |v, key| v.get(key))
                .is_some_and(|v| *v == c.value)
        })
    }
}

fn limiter(per_minute: i32) -> Arc<DefaultDirectRateLimiter> {
    let n = NonZeroU32::new(u32::try_from(per_minute).unwrap_or(1)).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct(Quota::per_minute(n)))
}

/// An event that matched a rule, waiting for its batch to commit.
pub struct Match {
    rule: Arc<Rule>,
    text: String,
    event_id: String,
}

/// What a rule firing produced.
#[derive(Debug)]
enum Outcome {
    Fired,
    Suppressed(&'static str),
}

/// The in-memory rule set and the alerts it sends.
pub struct RuleEngine {
    db: DatabaseConnection,
    ledger: LedgerWriter,
    clock: Clock,
    rules: RwLock<Arc<Vec<Arc<Rule>>>>,
    any: AtomicBool,
    /// Suppressed matches per rule not written to the database yet.
    suppressed: Mutex<HashMap<String, i64>>,
    /// With Redis, each rule's bucket is shared by every replica.
    shared: Option<crate::shared::Shared>,
}

impl std::fmt::Debug for RuleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleEngine")
            .field("rules", &self.current().len())
            .finish_non_exhaustive()
    }
}

impl RuleEngine {
    /// An engine with no rules; [`RuleEngine::reload`] loads them.
    pub fn new(
        db: DatabaseConnection,
        ledger: LedgerWriter,
        clock: Clock,
        shared: Option<crate::shared::Shared>,
    ) -> Arc<Self> {
        Arc::new(Self {
            db,
            ledger,
            clock,
            rules: RwLock::new(Arc::new(Vec::new())),
            any: AtomicBool::new(false),
            suppressed: Mutex::new(HashMap::new()),
            shared,
        })
    }

    /// Whether `rule` may fire once more now: its bucket in Redis (every replica's matches),
    /// or this node's while Redis is not configured or does not answer.
    async fn allow(&self, rule: &Rule) -> bool {
        if let Some(shared) = &self.shared {
            let per_minute = u32::try_from(Ord::max(rule.max_per_minute, 1)).unwrap_or(1);
            let interval = Duration::from_secs(60) / per_minute;
            match shared
                .gcra(&format!("pregonero:rule:{}", rule.id), interval, per_minute)
                .await
            {
                Ok(d) => return d.allowed,
                Err(e) => {
                    tracing::warn!(rule_id = %rule.id, error = %e, "Redis does not answer: this rule's rate is counted on this node");
                }
            }
        }
        rule.limiter.check().is_ok()
    }

    fn current(&self) -> Arc<Vec<Arc<Rule>>> {
        self.rules.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads the enabled rules from the database. A rule whose limit did not change keeps its
    /// bucket, so reloading does not reset anyone's rate.
    pub async fn reload(&self) -> Result<(), DbErr> {
        let rows = alert_rules::Entity::find()
            .filter(alert_rules::Column::Enabled.eq(true))
            .all(&self.db)
            .await?;
        let old: HashMap<String, Arc<Rule>> = self
            .current()
            .iter()
            .map(|r| (r.id.clone(), r.clone()))
            .collect();
        let rules: Vec<Arc<Rule>> = rows
            .into_iter()
            .filter_map(|row| {
                let target = target_of(&row)?;
                let conditions = serde_json::from_str::<Map<String, Value>>(&row.conditions)
                    .map(|m| parse_conditions(&m))
                    .unwrap_or_default();
                let limiter = match old.get(&row.id) {
                    Some(r) if r.max_per_minute == row.max_per_minute => r.limiter.clone(),
                    _ => limiter(row.max_per_minute),
                };
                Some(Arc::new(Rule {
                    id: row.id,
                    name: row.name,
                    owner_id: row.owner_id,
                    service: row.service,
                    conditions,
                    target,
                    max_per_minute: row.max_per_minute,
                    limiter,
                }))
            })
            .collect();
        self.any.store(!rules.is_empty(), Ordering::Relaxed);
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rules);
        Ok(())
    }

    /// Reloads and flushes counts every [`REFRESH`] until the process ends.
    pub fn start_refresh(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else {
                    return;
                };
                if let Err(e) = engine.reload().await {
                    tracing::warn!(error = %e, "could not reload alert rules");
                }
                if let Err(e) = engine.flush_suppressed().await {
                    tracing::warn!(error = %e, "could not record suppressed rule matches");
                }
            }
        });
    }

    /// Suppressed matches of `rule_id` counted here and not yet written.
    pub fn pending_suppressed(&self, rule_id: &str) -> i64 {
        self.suppressed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(rule_id)
            .copied()
            .unwrap_or(0)
    }

    /// Adds the suppressed counts to the rules' rows.
    pub async fn flush_suppressed(&self) -> Result<(), DbErr> {
        let counts: Vec<(String, i64)> =
            std::mem::take(&mut *self.suppressed.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        for (id, n) in counts {
            let result = alert_rules::Entity::update_many()
                .col_expr(
                    alert_rules::Column::SuppressedCount,
                    Expr::col(alert_rules::Column::SuppressedCount).add(n),
                )
                .filter(alert_rules::Column::Id.eq(id.clone()))
                .exec(&self.db)
                .await;
            if let Err(e) = result {
                // Keep the count for the next flush.
                *self
                    .suppressed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(id)
                    .or_default() += n;
                return Err(e);
            }
        }
        Ok(())
    }

    fn suppress(&self, rule: &Rule, reason: &'static str) {
        metrics::counter!("pregonero_alert_rules_suppressed_total", "reason" => reason)
            .increment(1);
        *self
            .suppressed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(rule.id.clone())
            .or_default() += 1;
    }

    /// The rules `rows` match, before they are committed (only [`RuleEngine::fire`] after a
    /// successful commit sends anything). Costs one atomic load when there are no rules.
    pub fn matches(&self, rows: &[events::ActiveModel]) -> Vec<Match> {
        if !self.any.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let rules = self.current();
        let mut found = Vec::new();
        for row in rows {
            let (
                ActiveValue::Set(service) | ActiveValue::Unchanged(service),
                ActiveValue::Set(message) | ActiveValue::Unchanged(message),
                ActiveValue::Set(event_id) | ActiveValue::Unchanged(event_id),
            ) = (&row.service, &row.message, &row.event_id)
            else {
                continue;
            };
            let owner = match &row.owner_id {
                ActiveValue::Set(Some(o)) | ActiveValue::Unchanged(Some(o)) => o,
                _ => continue,
            };
            let raw = match &row.metadata {
                ActiveValue::Set(m) | ActiveValue::Unchanged(m) => m.as_deref(),
                ActiveValue::NotSet => None,
            };
            let mut parsed = None;
            // A rule sees its owner's events only.
            for rule in rules.iter().filter(|r| &r.owner_id == owner) {
                if rule.matches(service, &mut parsed, raw) {
                    found.push(Match {
                        text: alert_text(&rule.name, service, message),
                        rule: rule.clone(),
                        event_id: event_id.clone(),
                    });
                }
            }
        }
        found
    }

    /// Sends the matches of a committed batch, each within its rule's rate (from tasks of their
    /// own, so the writer never waits for them).
    pub fn fire_all(self: &Arc<Self>, matches: Vec<Match>) {
        for Match {
            rule,
            text,
            event_id,
        } in matches
        {
            let engine = self.clone();
            tokio::spawn(async move {
                if !engine.allow(&rule).await {
                    engine.suppress(&rule, "rate-limited");
                    return;
                }
                match engine.fire(&rule, text).await {
                    Ok(Outcome::Fired) => {
                        metrics::counter!("pregonero_alert_rules_fired_total").increment(1);
                        tracing::debug!(rule_id = %rule.id, %event_id, "alert rule fired");
                    }
                    Ok(Outcome::Suppressed(reason)) => engine.suppress(&rule, reason),
                    Err(e) => {
                        tracing::warn!(rule_id = %rule.id, %event_id, error = %e, "alert rule could not fire");
                        engine.suppress(&rule, "error");
                    }
                }
            });
        }
    }

    async fn fire(&self, rule: &Rule, text: String) -> anyhow::Result<Outcome> {
        let (channel_id, chat_id, quota) = match &rule.target {
            Target::Integration(id) => {
                let Some(i) = integrations_repo::find(&self.db, id).await? else {
                    return Ok(Outcome::Suppressed("target-missing"));
                };
                let Some(chat) = i.chat_id.clone() else {
                    return Ok(Outcome::Suppressed("target-inactive"));
                };
                if i.status != Status::Active.as_str() || i.owner_id != rule.owner_id {
                    return Ok(Outcome::Suppressed("target-inactive"));
                }
                (i.channel_id, chat, Some(i.id))
            }
            Target::Chat {
                channel_id,
                chat_id,
            } => {
                if channels_repo::find_owned(&self.db, &rule.owner_id, channel_id)
                    .await?
                    .is_none()
                {
                    return Ok(Outcome::Suppressed("target-missing"));
                }
                (channel_id.clone(), chat_id.clone(), None)
            }
        };
        let integration_id = quota.clone();
        let row = NewMessage {
            owner_id: rule.owner_id.clone(),
            channel_id,
            recipient: chat_id,
            body: text,
            parse_mode: None,
            media_id: None,
            idempotency_key: None,
            request_hash: None,
            integration_id,
        }
        .into_row(self.clock.now());
        match self
            .ledger
            .admit(Admission {
                row,
                quota: quota.map(String::from),
            })
            .await?
        {
            Admitted::Accepted(_) => {
                alert_rules::Entity::update_many()
                    .col_expr(
                        alert_rules::Column::FiredCount,
                        Expr::col(alert_rules::Column::FiredCount).add(1),
                    )
                    .col_expr(
                        alert_rules::Column::LastFiredAt,
                        Expr::value(self.clock.now()),
                    )
                    .filter(alert_rules::Column::Id.eq(rule.id.clone()))
                    .exec(&self.db)
                    .await?;
                Ok(Outcome::Fired)
            }
            Admitted::Refused => Ok(Outcome::Suppressed("quota")),
        }
    }
}

/// The target a stored rule names, if it is well formed.
pub fn target_of(row: &alert_rules::Model) -> Option<Target> {
    match (&row.integration_id, &row.channel_id, &row.chat_id) {
        (Some(id), None, None) => Some(Target::Integration(id.clone())),
        (None, Some(channel_id), Some(chat_id)) => Some(Target::Chat {
            channel_id: channel_id.clone(),
            chat_id: chat_id.clone(),
        }),
        _ => None,
    }
}

/// `🔔 <rule>` then `[service] message`, cut to fit one Telegram message.
fn alert_text(rule: &str, service: &str, message: &str) -> String {
    let text = format!("🔔 {rule}\n[{service}] {message}");
    match text.char_indices().nth(MAX_ALERT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(service: Option<&str>, conditions: Value) -> Rule {
        let Value::Object(map) = conditions else {
            panic!("conditions must be an object")
        };
        Rule {
            id: "r".into(),
            name: "r".into(),
            owner_id: "o".into(),
            service: service.map(str::to_owned),
            conditions: parse_conditions(&map),
            target: Target::Integration("i".into()),
            max_per_minute: 1,
            limiter: limiter(1),
        }
    }

    fn matches(r: &Rule, service: &str, metadata: Option<&str>) -> bool {
        r.matches(service, &mut None, metadata)
    }

    #[test]
    fn service_and_nested_metadata_must_all_match() {
        let r = rule(
            Some("payments"),
            serde_json::json!({"level": "critical", "order.region": "eu", "retry": 3}),
        );
        let hit = r#"{"level":"critical","order":{"region":"eu"},"retry":3,"x":1}"#;
        assert!(matches(&r, "payments", Some(hit)));
        assert!(!matches(&r, "billing", Some(hit)));
        assert!(!matches(
            &r,
            "payments",
            Some(r#"{"level":"critical","order":{"region":"us"},"retry":3}"#)
        ));
        assert!(!matches(&r, "payments", Some(r#"{"level":"critical"}"#)));
        // 3 is not "3": values compare as JSON.
        assert!(!matches(
            &r,
            "payments",
            Some(r#"{"level":"critical","order":{"region":"eu"},"retry":"3"}"#)
        ));
        assert!(!matches(&r, "payments", None));
    }

    #[test]
    fn a_service_only_rule_ignores_metadata() {
        let r = rule(Some("payments"), serde_json::json!({}));
        assert!(matches(&r, "payments", None));
        assert!(matches(&r, "payments", Some("not json")));
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let text = alert_text("r", "s", &"é".repeat(5_000));
        assert_eq!(text.chars().count(), MAX_ALERT_CHARS + 1);
        assert!(text.ends_with('…'));
    }
}

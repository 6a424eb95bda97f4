//! What the campaign routes (and the WhatsApp sender's `/send-messages`) ask for: creating,
//! starting, changing state, reading. Validation and the ledger's construction live here; SQL
//! lives in `repo`.
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::TransactionTrait;
use serde::Deserialize;
use serde_json::json;

use super::{
    Audience, CampaignError, SendWindow,
    repo::{self, CampaignRow, CampaignStatus, Counters},
};
use crate::{
    auth::Caller,
    channels::{ChannelAdapter, ProviderTemplate, repo::ChannelRow},
    domain::{CampaignId, ChannelId, MediaId, MessageStatus},
    entities::messages,
    outbox::repo::NewMessage,
    state::AppState,
    templates::{Compiled, context},
};

/// Contacts read per page while building the ledger.
const PAGE: u64 = 1_000;
/// Contacts named in a `missing-variables` answer.
const LIST_MISSING: usize = 20;

/// What creates a campaign (API body, and the seed's `/send-messages`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// Display name.
    pub name: String,
    /// Channel account that sends it.
    pub channel_id: ChannelId,
    /// Template to copy the body (and media) from.
    #[serde(default)]
    pub template_id: Option<String>,
    /// Body with variables (instead of a template).
    #[serde(default)]
    pub body: Option<String>,
    /// Media sent with every message.
    #[serde(default)]
    pub media_id: Option<MediaId>,
    /// WhatsApp approved template; its `params` may use variables.
    #[serde(default)]
    pub provider_template: Option<ProviderTemplate>,
    /// Who gets it (default: every contact of the owner).
    #[serde(default)]
    pub audience: Audience,
    /// Start later (with `start`).
    #[serde(default)]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Hours sends may happen.
    #[serde(default)]
    pub send_window: Option<SendWindow>,
    /// Start right away (default false: a draft).
    #[serde(default)]
    pub start: bool,
    /// With `start`: skip contacts lacking a variable instead of refusing.
    #[serde(default)]
    pub skip_missing: bool,
}

fn invalid(code: &'static str, message: impl Into<String>) -> CampaignError {
    CampaignError::Invalid(code, message.into())
}

/// Creates a campaign on a channel `caller` may use and, if asked, starts it. A refused start
/// leaves the draft (its id is in the refusal).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    b: NewCampaign,
) -> Result<CampaignRow, CampaignError> {
    let name = b.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(invalid("invalid-name", "name must be 1 to 200 characters"));
    }
    let channel =
        crate::channels::repo::find_visible(&state.db, &b.channel_id, |o| caller.can_access(o))
            .await?
            .ok_or_else(|| {
                CampaignError::NotFound(
                    "channel-not-found",
                    format!("no channel `{}`", b.channel_id),
                )
            })?;
    let owner = channel.owner_id.clone();
    let (body, mut media_id) = match (&b.template_id, &b.body) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "ambiguous-body",
                "give template_id or body, not both",
            ));
        }
        (Some(tid), None) => crate::templates::repo::find(&state.db, tid)
            .await?
            .filter(|t| t.owner_id == owner)
            .map(|t| (t.body, t.media_id))
            .ok_or_else(|| {
                CampaignError::NotFound("template-not-found", format!("no template `{tid}`"))
            })?,
        (None, Some(body)) => (body.clone(), None),
        (None, None) if b.provider_template.is_some() => (String::new(), None),
        (None, None) => {
            return Err(invalid(
                "body-required",
                "give a body, a template_id or a provider_template",
            ));
        }
    };
    if body.chars().count() > 4096 {
        return Err(invalid(
            "body-too-long",
            "the body may have at most 4096 characters",
        ));
    }
    Compiled::new(&body).map_err(|e| invalid("invalid-template", e))?;
    let adapter = channel_adapter(state, &channel)?;
    if let Some(pt) = &b.provider_template {
        if !adapter.provider_templates() {
            return Err(invalid(
                "provider-template-unsupported",
                "provider templates are a WhatsApp Cloud API feature; this channel cannot send them",
            ));
        }
        if pt.name.trim().is_empty() || pt.language.trim().is_empty() {
            return Err(invalid(
                "invalid-provider-template",
                "provider_template needs a name and a language",
            ));
        }
        for p in &pt.params {
            Compiled::new(p).map_err(|e| invalid("invalid-provider-template", e))?;
        }
    }
    if b.media_id.is_some() {
        media_id = b.media_id.clone();
    }
    if let Some(mid) = &media_id {
        let m = crate::media::find_owned(&state.db, &owner, mid)
            .await?
            .ok_or_else(|| {
                CampaignError::NotFound("media-not-found", format!("no media `{mid}`"))
            })?;
        adapter
            .check_media(&m.content_type, u64::try_from(m.size).unwrap_or(u64::MAX))
            .map_err(|(code, why)| invalid(code, why))?;
    }
    if let Some(w) = &b.send_window {
        w.validate()
            .map_err(|e| invalid("invalid-send-window", e))?;
    }
    if b.audience.contact_ids.len() > 10_000 {
        return Err(invalid(
            "audience-too-large",
            "list at most 10000 contact ids; use groups for more",
        ));
    }
    let draft = repo::Draft {
        owner_id: owner,
        name: name.to_owned(),
        channel_id: channel.id.clone(),
        template_id: b.template_id.clone(),
        body,
        provider_template: b
            .provider_template
            .as_ref()
            .map(|p| serde_json::to_string(p).unwrap_or_default()),
        media_id,
        audience: serde_json::to_string(&b.audience).unwrap_or_default(),
        scheduled_at: b.scheduled_at,
        send_window: b
            .send_window
            .as_ref()
            .map(|w| serde_json::to_string(w).unwrap_or_default()),
    };
    let row = repo::insert(&state.db, draft, state.clock.now()).await?;
    tracing::info!(campaign_id = %row.id, "campaign created");
    if !b.start {
        return Ok(row);
    }
    launch(state, &row, b.skip_missing).await?;
    Ok(repo::find(&state.db, &row.id).await?.unwrap_or(row))
}

/// Renders everything a contact's message needs, or names the variables it lacks.
struct Renderer {
    body: Compiled,
    params: Vec<Compiled>,
    template: Option<ProviderTemplate>,
}

impl Renderer {
    fn new(c: &CampaignRow) -> Result<Self, CampaignError> {
        let template: Option<ProviderTemplate> = c
            .provider_template
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok());
        let params = template
            .iter()
            .flat_map(|t| t.params.iter())
            .map(|p| Compiled::new(p).map_err(|e| invalid("invalid-provider-template", e)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            body: Compiled::new(&c.body).map_err(|e| invalid("invalid-template", e))?,
            params,
            template,
        })
    }

    fn missing(&self, vars: &BTreeMap<String, String>) -> Vec<String> {
        let mut lacking = self.body.blocking(vars);
        for p in &self.params {
            lacking.extend(p.blocking(vars));
        }
        lacking.sort();
        lacking.dedup();
        lacking
    }

    fn render(
        &self,
        vars: &BTreeMap<String, String>,
    ) -> Result<(String, Option<ProviderTemplate>), String> {
        let text = self.body.render(vars)?;
        let template = match &self.template {
            None => None,
            Some(t) => Some(ProviderTemplate {
                params: self
                    .params
                    .iter()
                    .map(|p| p.render(vars))
                    .collect::<Result<_, _>>()?,
                ..t.clone()
            }),
        };
        Ok((text, template))
    }
}

/// A page of the campaign's audience after `after` (see `contacts::repo::reachable_page`).
async fn audience_page(
    state: &AppState,
    c: &CampaignRow,
    audience: &Audience,
    after: &str,
) -> Result<Vec<crate::contacts::repo::StoredContact>, sea_orm::DbErr> {
    crate::contacts::repo::reachable_page(
        &state.db,
        &c.owner_id,
        &audience.groups,
        &audience.contact_ids,
        after,
        PAGE,
    )
    .await
}

/// Starts a draft campaign. Refuses, with the list, when contacts lack a variable, unless
/// `skip_missing`. A small audience gets its ledger here and the campaign is running (or
/// scheduled) on return; a larger one (`campaigns.prepare_inline_max`) is `preparing` on return
/// and a campaign runner builds the ledger ([`build_ledger`]), resuming where it stopped if a
/// process dies meanwhile.
pub async fn launch(
    state: &AppState,
    c: &CampaignRow,
    skip_missing: bool,
) -> Result<(), CampaignError> {
    if c.status != CampaignStatus::Draft.as_str() {
        return Err(CampaignError::Conflict(
            "campaign-not-draft",
            format!("the campaign is {}; only a draft can be started", c.status),
        ));
    }
    let audience: Audience = serde_json::from_str(&c.audience).unwrap_or_default();
    let renderer = Renderer::new(c)?;
    let inline_max = state.settings.campaigns.prepare_inline_max;

    // Pass 1: who lacks a variable (nothing is written if the answer is a refusal), and whether
    // the audience is small enough to build here.
    let (mut affected, mut listed, mut after, mut size) = (0u64, Vec::new(), String::new(), 0u64);
    loop {
        if skip_missing && size > inline_max {
            break;
        }
        let page = audience_page(state, c, &audience, &after).await?;
        let Some(last) = page.last() else { break };
        after = last.id.to_string();
        size += page.len() as u64;
        if skip_missing {
            continue;
        }
        for contact in &page {
            let lacking = renderer.missing(&context(contact));
            if !lacking.is_empty() {
                affected += 1;
                if listed.len() < LIST_MISSING {
                    listed.push(json!({"contact_id": contact.id, "phone": contact.phone, "missing": lacking}));
                }
            }
        }
    }
    if affected > 0 {
        return Err(CampaignError::MissingVariables {
            campaign_id: c.id.clone(),
            affected,
            contacts: listed,
        });
    }
    if size > inline_max {
        channel_adapter(state, &find_channel(state, c).await?)?;
        if !repo::transition(
            &state.db,
            &c.id,
            &[CampaignStatus::Draft],
            CampaignStatus::Preparing,
            None,
        )
        .await?
        {
            return Err(CampaignError::Conflict(
                "campaign-not-draft",
                "the campaign was started meanwhile".into(),
            ));
        }
        tracing::info!(campaign_id = %c.id, audience_at_least = size, "campaign preparing: its recipients are listed in the background");
        return Ok(());
    }
    let mut after = String::new();
    while !build_ledger(state, c, &mut after, usize::MAX).await? {}
    ledger_built(state, c, CampaignStatus::Draft).await?;
    Ok(())
}

async fn find_channel(state: &AppState, c: &CampaignRow) -> Result<ChannelRow, CampaignError> {
    crate::channels::repo::find(&state.db, &c.channel_id)
        .await?
        .ok_or_else(|| CampaignError::Conflict("channel-deleted", "the channel was deleted".into()))
}

/// Adds up to `pages` pages of the audience after contact `after` to the campaign's ledger, a
/// page per transaction (contacts already in it are skipped, so a rerun adds nothing twice), and
/// moves `after` on. True when the audience is all in.
pub async fn build_ledger(
    state: &AppState,
    c: &CampaignRow,
    after: &mut String,
    pages: usize,
) -> Result<bool, CampaignError> {
    let channel = find_channel(state, c).await?;
    let adapter = channel_adapter(state, &channel)?;
    let audience: Audience = serde_json::from_str(&c.audience).unwrap_or_default();
    let renderer = Renderer::new(c)?;
    let now = Utc::now();
    for _ in 0..pages {
        let page = audience_page(state, c, &audience, after).await?;
        let Some(last) = page.last() else {
            return Ok(true);
        };
        *after = last.id.to_string();
        let rows = page
            .iter()
            .map(|contact| {
                let recipient =
                    adapter.contact_address(&contact.phone, contact.telegram_chat_id.as_deref());
                let rendered = renderer.render(&context(contact));
                let (body, template, skip) = match (&recipient, rendered) {
                    (Err(reason), _) => (String::new(), None, Some(*reason)),
                    (Ok(_), Err(_)) => (String::new(), None, Some("missing-variables")),
                    (Ok(_), Ok((body, template))) => (body, template, None),
                };
                let message = NewMessage {
                    owner_id: c.owner_id.clone(),
                    channel_id: c.channel_id.clone(),
                    recipient: recipient.unwrap_or_default(),
                    body,
                    parse_mode: None,
                    media_id: c.media_id.clone(),
                    idempotency_key: None,
                    request_hash: None,
                    integration_id: None,
                };
                let template = template.map(|t| serde_json::to_string(&t).unwrap_or_default());
                repo::recipient_row(message, &c.id, &contact.id, template, skip, now)
            })
            .collect();
        let txn = state.db.begin().await?;
        repo::insert_recipients(&txn, rows).await?;
        txn.commit().await?;
    }
    Ok(false)
}

/// The ledger is complete: the campaign goes from `from` to running (or scheduled). False when
/// it had left `from` meanwhile (cancelled).
pub async fn ledger_built(
    state: &AppState,
    c: &CampaignRow,
    from: CampaignStatus,
) -> Result<bool, CampaignError> {
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    let to = match c.scheduled_at {
        Some(at) if at > Utc::now() => CampaignStatus::Scheduled,
        _ => CampaignStatus::Running,
    };
    let moved = repo::transition(&state.db, &c.id, &[from], to, None).await?;
    if moved {
        tracing::info!(campaign_id = %c.id, recipients = counters.total, status = to.as_str(), "campaign started");
    }
    Ok(moved)
}

/// A campaign `caller` may see.
pub async fn find(
    state: &AppState,
    caller: &Caller,
    id: &CampaignId,
) -> Result<CampaignRow, CampaignError> {
    repo::find(&state.db, id)
        .await?
        .filter(|c| caller.can_access(&c.owner_id))
        .ok_or_else(|| CampaignError::NotFound("campaign-not-found", format!("no campaign `{id}`")))
}

/// The caller's campaigns, of one status if given.
pub async fn list(
    state: &AppState,
    caller: &Caller,
    status: Option<&str>,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<CampaignRow>, CampaignError> {
    Ok(repo::list_for(&state.db, &caller.user_id, status, page).await?)
}

/// A campaign with counters: as stored while it runs (its actor refreshes them every second;
/// counting here too would scan the ledger once per poll of every open dashboard), counted
/// otherwise (receipts keep arriving by webhook after the actor has finished).
pub async fn get(
    state: &AppState,
    caller: &Caller,
    id: &CampaignId,
) -> Result<(CampaignRow, Counters), CampaignError> {
    let c = find(state, caller, id).await?;
    if c.status == CampaignStatus::Running.as_str() {
        let stored = Counters::stored(&c);
        return Ok((c, stored));
    }
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    Ok((c, counters))
}

/// Starts a draft; returns it as it now is.
pub async fn start(
    state: &AppState,
    caller: &Caller,
    id: &CampaignId,
    skip_missing: bool,
) -> Result<CampaignRow, CampaignError> {
    let c = find(state, caller, id).await?;
    launch(state, &c, skip_missing).await?;
    find(state, caller, id).await
}

/// A state change a user can ask for.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// Released but unsent recipients go back to pending (their jobs find them so and stop).
    Pause,
    /// Running again.
    Resume,
    /// Every recipient not yet sent is skipped.
    Cancel,
    /// Failed recipients go back to pending, and the campaign runs again.
    RetryFailed,
}

/// Applies `change` and the ledger moves that go with it.
pub async fn change(
    state: &AppState,
    caller: &Caller,
    id: &CampaignId,
    change: Change,
) -> Result<(CampaignRow, Counters), CampaignError> {
    type Moves = &'static [(
        &'static [MessageStatus],
        MessageStatus,
        Option<&'static str>,
    )];
    let (from, to, moves): (&[CampaignStatus], CampaignStatus, Moves) = match change {
        Change::Pause => (
            &[CampaignStatus::Running, CampaignStatus::Scheduled],
            CampaignStatus::Paused,
            &[(&[MessageStatus::Queued], MessageStatus::Pending, None)],
        ),
        Change::Resume => (&[CampaignStatus::Paused], CampaignStatus::Running, &[]),
        Change::Cancel => (
            &[
                CampaignStatus::Draft,
                CampaignStatus::Preparing,
                CampaignStatus::Scheduled,
                CampaignStatus::Running,
                CampaignStatus::Paused,
            ],
            CampaignStatus::Cancelled,
            &[(
                &[MessageStatus::Pending, MessageStatus::Queued],
                MessageStatus::Skipped,
                Some("cancelled"),
            )],
        ),
        Change::RetryFailed => (
            &[
                CampaignStatus::Completed,
                CampaignStatus::Running,
                CampaignStatus::Paused,
            ],
            CampaignStatus::Running,
            &[(&[MessageStatus::Failed], MessageStatus::Pending, None)],
        ),
    };
    let c = find(state, caller, id).await?;
    if !repo::change(&state.db, &c.id, from, to, moves).await? {
        return Err(CampaignError::Conflict(
            "invalid-campaign-state",
            format!("a {} campaign cannot become {}", c.status, to.as_str()),
        ));
    }
    let counters = repo::count(&state.db, &c.id).await?;
    repo::store_counters(&state.db, &c.id, &counters).await?;
    tracing::info!(campaign_id = %c.id, status = to.as_str(), "campaign state changed");
    Ok((find(state, caller, id).await?, counters))
}

/// A page of a campaign's recipients and the cursor of the next one.
pub async fn recipients(
    state: &AppState,
    caller: &Caller,
    id: &CampaignId,
    status: Option<&str>,
    page: &crate::page::PageRequest,
) -> Result<crate::page::Page<messages::Model>, CampaignError> {
    let c = find(state, caller, id).await?;
    Ok(repo::recipients(&state.db, &c.id, status, page).await?)
}

/// The adapter of a campaign's channel.
fn channel_adapter<'a>(
    state: &'a AppState,
    channel: &ChannelRow,
) -> Result<&'a std::sync::Arc<dyn ChannelAdapter>, CampaignError> {
    state.adapters.get(&channel.kind).ok_or_else(|| {
        CampaignError::Invalid(
            "unsupported-channel-kind",
            format!("channel `{}` is of an unknown kind", channel.id),
        )
    })
}

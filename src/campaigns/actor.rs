//! `CampaignRunner` starts one `CampaignActor` per running campaign this node holds the lease
//! of; the actor releases recipients to the delivery queue at the pace the account absorbs,
//! refreshes the counters, and ends the campaign when every recipient is final.
//!
//! Pacing itself is the account actor's (its buckets see every campaign and alert of the
//! account); a campaign only keeps `lookahead` seconds of the account's rate queued, divided
//! among the campaigns running on that account, so campaigns share an account fairly and a
//! pause takes effect within that many seconds.
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use chrono::Utc;

use super::{
    SendWindow,
    repo::{self, CampaignStatus},
};
use crate::{
    domain::{CampaignId, ChannelId, MessageId, MessageStatus},
    leases,
    state::AppState,
};

/// Which campaigns run on which account on this node (for fair shares).
#[derive(Debug, Default)]
pub struct Shares(Mutex<HashMap<ChannelId, BTreeSet<CampaignId>>>);

impl Shares {
    fn join(&self, channel: &ChannelId, campaign: &CampaignId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(channel.clone())
            .or_default()
            .insert(campaign.clone());
    }

    fn leave(&self, channel: &ChannelId, campaign: &CampaignId) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = map.get_mut(channel) {
            set.remove(campaign);
            if set.is_empty() {
                map.remove(channel);
            }
        }
    }

    fn count(&self, channel: &ChannelId) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(channel)
            .map_or(1, |s| s.len().max(1) as u64)
    }
}

fn lease_name(campaign_id: &CampaignId) -> String {
    format!("campaign:{campaign_id}")
}

/// Supervises the campaign actors of this node.
pub struct CampaignRunner {
    state: AppState,
    actors: HashMap<CampaignId, Addr<CampaignActor>>,
    shares: Arc<Shares>,
    scanning: bool,
    /// Set by [`StopCampaigns`]: the runner starts nothing any more.
    stopped: bool,
}

impl CampaignRunner {
    /// A runner for `state` (start it on worker nodes only).
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            actors: HashMap::new(),
            shares: Default::default(),
            scanning: false,
            stopped: false,
        }
    }
}

/// Recipients one release moves to the queue at most: one transaction's worth that keeps
/// SQLite's write lock short. A number allowed 100,000 msg/s once released 200,000 in one
/// transaction that held the lock 14 s, and every other write of the server failed meanwhile.
const MAX_RELEASE: u64 = 1_000;
/// Recipients of one campaign queued ahead of the sender at most, whatever the rate.
const MAX_AHEAD: u64 = 10_000;

/// How many recipients to release now: the campaign's share of `lookahead_secs` of the account's
/// `rate`, less those already queued or sending, within [`MAX_AHEAD`] and [`MAX_RELEASE`].
fn release_size(rate: u32, lookahead_secs: u64, shares: u64, in_flight: u64) -> u64 {
    let ahead = (u64::from(rate) * lookahead_secs)
        .div_ceil(shares.max(1))
        .clamp(1, MAX_AHEAD);
    ahead.saturating_sub(in_flight).min(MAX_RELEASE)
}

/// Pages of the audience a preparing campaign's runner adds to its ledger between lease renewals.
const PREPARE_PAGES: usize = 5;

/// How often the runner looks for campaigns to run.
const SCAN_EVERY: Duration = Duration::from_secs(1);

impl Actor for CampaignRunner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SCAN_EVERY, |act, ctx| act.scan(ctx));
    }
}

impl Supervised for CampaignRunner {}

impl CampaignRunner {
    fn scan(&mut self, ctx: &mut Context<Self>) {
        if self.scanning || self.stopped {
            return;
        }
        self.actors.retain(|_, addr| addr.connected());
        self.scanning = true;
        let state = self.state.clone();
        let fut = async move { repo::due(&state.db, Utc::now()).await };
        ctx.spawn(actix::fut::wrap_future(fut).map(|due, act: &mut Self, _| {
            act.scanning = false;
            if act.stopped {
                return;
            }
            match due {
                Ok(due) => {
                    for row in due {
                        if !act.actors.contains_key(&row.id) {
                            let actor = CampaignActor {
                                id: row.id.clone(),
                                channel_id: row.channel_id.clone(),
                                state: act.state.clone(),
                                shares: act.shares.clone(),
                            };
                            // Not supervised: an actor that stops is done (the campaign left
                            // `running`); one that died is started again by the next scan.
                            let addr = actor.start();
                            act.actors.insert(row.id, addr);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not list due campaigns"),
            }
        }));
    }
}

/// Stops every campaign actor (shutdown): leases go back so another node continues at once.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopCampaigns;

impl Handler<StopCampaigns> for CampaignRunner {
    type Result = ();

    fn handle(&mut self, _: StopCampaigns, _: &mut Self::Context) {
        // Not `ctx.stop()`: a supervised actor stopped while its address is alive (the caller
        // holds it while it waits for this answer) is started again by its supervisor, and went
        // on releasing recipients after the server had stopped.
        self.stopped = true;
        for (_, addr) in self.actors.drain() {
            addr.do_send(Finish);
        }
    }
}

/// Owns one running campaign on this node while it holds the campaign's lease.
pub struct CampaignActor {
    id: CampaignId,
    channel_id: ChannelId,
    state: AppState,
    shares: Arc<Shares>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Finish;

impl Handler<Finish> for CampaignActor {
    type Result = ();

    fn handle(&mut self, _: Finish, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Actor for CampaignActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shares.join(&self.channel_id, &self.id);
        let fut = drive(
            self.state.clone(),
            self.id.clone(),
            self.channel_id.clone(),
            self.shares.clone(),
        );
        ctx.spawn(actix::fut::wrap_future(fut).map(|result, act: &mut Self, ctx| {
            if let Err(e) = result {
                tracing::error!(campaign_id = %act.id, error = ?e, "campaign loop failed; the runner restarts it");
            }
            ctx.stop();
        }));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.shares.leave(&self.channel_id, &self.id);
        let (db, name, node) = (
            self.state.db.clone(),
            lease_name(&self.id),
            self.state.node_name.clone(),
        );
        // Hand the lease back whatever term we hold: the campaign is not ours any more.
        actix::spawn(async move {
            let _ = leases::release_any(&db, &name, &node).await;
        });
        tracing::debug!(campaign_id = %self.id, "campaign actor stopped");
    }
}

/// Counters of a running campaign are refreshed at least this often...
const COUNT_EVERY_MIN: Duration = Duration::from_secs(1);
/// ...and at most this rarely, however long the ledger.
const COUNT_EVERY_MAX: Duration = Duration::from_secs(10);

/// Next full count after one that took `took`: the count may use a tenth of a database
/// connection's time (at 100,000 recipients a count every second was 0.4 of a PostgreSQL
/// backend on 2 cores, and the campaign slowed to 0.8 of the account's rate).
fn count_interval(took: Duration) -> Duration {
    (took * 10).clamp(COUNT_EVERY_MIN, COUNT_EVERY_MAX)
}

/// The campaign's loop: returns when it is no longer running here (paused, cancelled,
/// completed, deleted, or its lease went to another node).
async fn drive(
    state: AppState,
    id: CampaignId,
    channel_id: ChannelId,
    shares: Arc<Shares>,
) -> anyhow::Result<()> {
    let settings = state.settings.campaigns.clone();
    let tick = Duration::from_millis(settings.tick_ms);
    let lease_for = chrono::Duration::seconds(settings.lease_secs as i64);
    let mut renewed: Option<Instant> = None;
    let mut counted = Instant::now() - Duration::from_secs(60);
    // Where building a `preparing` campaign's ledger has got to (None: not asked yet).
    let mut prepared: Option<String> = None;
    let mut count_every = COUNT_EVERY_MIN;
    // Where this run has got to: the last recipient it released, and the lowest one in flight at
    // the last count. The next release reads on from the first, the count from the second, so
    // neither walks the index entries of the messages already done (`repo::pending`).
    let mut released_to: Option<MessageId> = None;
    let mut in_flight_from: Option<MessageId> = None;
    let rate = match crate::channels::repo::find(&state.db, &channel_id).await? {
        Some(row) => crate::channels::account_limits(&state.adapters, &row, &state.settings)
            .map_or(1, |l| l.account_per_sec),
        None => 1,
    };
    loop {
        if renewed.is_none_or(|r| r.elapsed() >= Duration::from_secs(settings.lease_secs / 3)) {
            let now = Utc::now();
            let until = now + lease_for;
            if !leases::acquire(&state.db, &lease_name(&id), &state.node_name, now, until).await? {
                tracing::debug!(campaign_id = %id, "another node runs this campaign");
                return Ok(());
            }
            renewed = Some(Instant::now());
        }
        let Some(row) = repo::find(&state.db, &id).await? else {
            return Ok(());
        };
        match CampaignStatus::parse(&row.status) {
            Some(CampaignStatus::Running) => {}
            Some(CampaignStatus::Preparing) => {
                // A few pages a turn, so the lease is renewed between them; after a crash the
                // next runner goes on after the last contact already in the ledger.
                let after = match &mut prepared {
                    Some(after) => after,
                    None => prepared.insert(
                        repo::last_contact(&state.db, &id)
                            .await?
                            .unwrap_or_default(),
                    ),
                };
                if super::service::build_ledger(&state, &row, after, PREPARE_PAGES).await? {
                    super::service::ledger_built(&state, &row, CampaignStatus::Preparing).await?;
                }
                continue;
            }
            Some(CampaignStatus::Scheduled) => {
                repo::transition(
                    &state.db,
                    &id,
                    &[CampaignStatus::Scheduled],
                    CampaignStatus::Running,
                    None,
                )
                .await?;
                tracing::info!(campaign_id = %id, "scheduled campaign started");
            }
            status => {
                if prepared.is_some() && status == Some(CampaignStatus::Cancelled) {
                    // Cancelled while its ledger was being built: a page written after the
                    // cancel is skipped too.
                    repo::change(
                        &state.db,
                        &id,
                        &[CampaignStatus::Cancelled],
                        CampaignStatus::Cancelled,
                        &[(
                            &[MessageStatus::Pending],
                            MessageStatus::Skipped,
                            Some("cancelled"),
                        )],
                    )
                    .await?;
                }
                let c = repo::count(&state.db, &id).await?;
                repo::store_counters(&state.db, &id, &c).await?;
                return Ok(());
            }
        }
        let open = row
            .send_window
            .as_deref()
            .and_then(|w| serde_json::from_str::<SendWindow>(w).ok())
            .is_none_or(|w| w.contains(Utc::now()));
        let (in_flight, lowest) = repo::in_flight(&state.db, &id, in_flight_from.as_ref()).await?;
        // Whatever is released from now on comes after `released_to`.
        in_flight_from = lowest.or_else(|| released_to.clone());
        if open {
            let n = release_size(
                rate,
                settings.lookahead_secs,
                shares.count(&channel_id),
                in_flight,
            );
            let ids = repo::release(&state.db, &id, n, released_to.as_ref()).await?;
            if let Some(last) = ids.last() {
                released_to = Some(last.clone());
            }
            if !ids.is_empty() {
                if let Err(e) = state.queue.push_many(&ids).await {
                    // The rows are queued without a job: the recovery sweep pushes them.
                    tracing::warn!(campaign_id = %id, error = ?e, "could not push campaign jobs; the sweep will");
                } else {
                    crate::outbox::repo::mark_enqueued(&state.db, &ids).await?;
                }
            }
        }
        // Whether it is done is cheap to ask (the few released rows, one pending row); the
        // full count reads the whole ledger, so it runs at most every `count_every`, which
        // grows with what the count costs.
        let mut finished =
            in_flight == 0 && !repo::has_pending(&state.db, &id, released_to.as_ref()).await?;
        if finished && released_to.is_some() && repo::has_pending(&state.db, &id, None).await? {
            // Recipients pending behind where this run got to: failed ones retried while it
            // ran. Read from the start again (they go after the rest).
            finished = false;
            released_to = None;
            in_flight_from = None;
        }
        if finished || counted.elapsed() >= count_every {
            let started = Instant::now();
            let c = repo::count(&state.db, &id).await?;
            repo::store_counters(&state.db, &id, &c).await?;
            counted = Instant::now();
            count_every = count_interval(started.elapsed());
            if c.done()
                && repo::transition(
                    &state.db,
                    &id,
                    &[CampaignStatus::Running],
                    CampaignStatus::Completed,
                    None,
                )
                .await?
            {
                tracing::info!(campaign_id = %id, sent = c.sent, failed = c.failed, skipped = c.skipped, "campaign completed");
                return Ok(());
            }
        }
        tokio::time::sleep(tick).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_stay_small_whatever_the_rate() {
        // 80 msg/s, 2 s ahead, alone on the number: 160, less what is in flight.
        assert_eq!(release_size(80, 2, 1, 0), 160);
        assert_eq!(release_size(80, 2, 1, 100), 60);
        assert_eq!(release_size(80, 2, 2, 0), 80);
        assert_eq!(release_size(1, 2, 4, 0), 1);
        // An unlimited number: never more than one release's worth, never more than the most
        // queued ahead.
        assert_eq!(release_size(100_000, 2, 1, 0), MAX_RELEASE);
        assert_eq!(release_size(100_000, 2, 1, MAX_AHEAD - 10), 10);
        assert_eq!(release_size(100_000, 2, 1, MAX_AHEAD + 5), 0);
    }

    #[test]
    fn counting_takes_at_most_a_tenth_of_the_time_within_bounds() {
        assert_eq!(count_interval(Duration::from_millis(5)), COUNT_EVERY_MIN);
        assert_eq!(
            count_interval(Duration::from_millis(300)),
            Duration::from_secs(3)
        );
        assert_eq!(count_interval(Duration::from_secs(4)), COUNT_EVERY_MAX);
    }
}

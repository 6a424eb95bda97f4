//! Keeps this process's registry in step with the stored accounts. Replicas share one database
//! but each runs its own actors: an account added or deleted through one replica's API must
//! start or stop on the others too. [`sync`] runs at start, every [`SYNC_INTERVAL`], and for one
//! account when a delivery names an account this process does not run yet.
use std::collections::HashSet;
use std::time::Duration;

use actix::Addr;
use sea_orm::DatabaseConnection;

use super::{
    AccountSpec, Adapters, ChannelRegistry, Register, Unregister, registry::Known, repo,
    repo::ChannelRow,
};
use crate::{
    config::Settings,
    crypto::Cipher,
    domain::{ChannelId, ChannelStatus},
};

/// How often every process compares its running accounts with the stored ones.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(5);

/// What starting and stopping accounts needs.
#[derive(Clone)]
pub struct Accounts {
    pub db: DatabaseConnection,
    pub cipher: Cipher,
    pub adapters: Adapters,
    pub settings: std::sync::Arc<Settings>,
    pub registry: Addr<ChannelRegistry>,
}

impl Accounts {
    /// Starts every stored account this process does not run and stops every running one that
    /// is no longer stored. Accounts in `broken` (their secrets could not be read before) are
    /// not tried again. Returns how many were started and stopped.
    pub async fn sync(&self, broken: &mut HashSet<ChannelId>) -> anyhow::Result<(usize, usize)> {
        let rows = repo::all(&self.db).await?;
        let running: HashSet<ChannelId> = self.registry.send(Known).await?.into_iter().collect();
        let stored: HashSet<ChannelId> = rows.iter().map(|r| r.id.clone()).collect();
        let mut started = 0;
        for row in rows {
            if running.contains(&row.id) || broken.contains(&row.id) {
                continue;
            }
            let id = row.id.clone();
            if self.start(row).await? {
                started += 1;
            } else {
                broken.insert(id);
            }
        }
        let mut stopped = 0;
        for id in running.difference(&stored) {
            tracing::info!(channel_id = %id, "channel account deleted elsewhere; stopping it here");
            self.registry.send(Unregister(id.clone())).await?;
            stopped += 1;
        }
        broken.retain(|id| stored.contains(id));
        Ok((started, stopped))
    }

    /// Starts account `id` if it is stored and not marked `error` (an account that could not
    /// start is tried again by the next process start, not by each of its messages); whether it
    /// runs now.
    pub async fn start_one(&self, id: &ChannelId) -> anyhow::Result<bool> {
        match repo::find(&self.db, id).await? {
            Some(row) if row.status != ChannelStatus::Error.as_str() => self.start(row).await,
            _ => Ok(false),
        }
    }

    /// Marks an account that cannot run here (`error`, with why); always `false`.
    async fn cannot_start(&self, id: &ChannelId, why: &str) -> anyhow::Result<bool> {
        repo::set_status(&self.db, id, ChannelStatus::Error, why).await?;
        Ok(false)
    }

    /// Starts one stored account; one whose secret can't be read is marked, not fatal (false).
    async fn start(&self, row: ChannelRow) -> anyhow::Result<bool> {
        let token = match self.cipher.decrypt(&row.credentials) {
            Ok(token) if self.cipher.is_current(&row.credentials) => token,
            Ok(token) => {
                // Encrypted with a previous key: re-encrypt with the current one.
                let fresh = self.cipher.encrypt(&token)?;
                repo::set_credentials(&self.db, &row.id, &fresh).await?;
                tracing::info!(channel_id = %row.id, key_id = self.cipher.key_id(), "channel credentials re-encrypted with the current key");
                token
            }
            Err(e) => {
                tracing::error!(channel_id = %row.id, error = %e, "cannot decrypt channel credentials");
                return self
                    .cannot_start(
                        &row.id,
                        "credentials unreadable with the configured secret key",
                    )
                    .await;
            }
        };
        let Some(adapter) = self.adapters.get(&row.kind) else {
            tracing::error!(channel_id = %row.id, kind = %row.kind, "unknown channel kind");
            return self.cannot_start(&row.id, "unknown channel kind").await;
        };
        let connection = match adapter.connect(&token) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(channel_id = %row.id, error = %e, "unreadable channel credentials");
                return Ok(false);
            }
        };
        let limits = adapter.limits(&repo::stored_limits(&row), &self.settings);
        self.registry
            .send(Register(AccountSpec {
                id: row.id,
                kind: adapter.kind(),
                connection,
                limits,
            }))
            .await?;
        Ok(true)
    }

    /// Runs [`Accounts::sync`] every [`SYNC_INTERVAL`], not trying again the accounts in
    /// `broken` (those the start-up sync could not start).
    pub async fn sync_periodically(self, mut broken: HashSet<ChannelId>) {
        loop {
            tokio::time::sleep(SYNC_INTERVAL).await;
            if let Err(e) = self.sync(&mut broken).await {
                tracing::warn!(error = %e, "could not compare the running channel accounts with the stored ones");
            }
        }
    }
}

//! A WhatsApp Web session's protocol state in our database: the library's storage traits
//! (`wacore::store::traits`) implemented over one table, `wa_session_store`, on SQLite or
//! PostgreSQL. Nothing lives in files beside the binary, so a session survives restarts and moves
//! with the database to whichever replica holds its lease.
//!
//! Every record is one row keyed by `(channel, kind, HMAC(key))`; the value is the record and its
//! own key, encrypted with the server's secret key. Keys name contacts' phone numbers, hence the
//! HMAC; the scans some methods need (expiry, all LID mappings) decrypt one kind's rows.
//!
//! Semantics follow the library's `InMemoryBackend`, which the tests hold this store to.
use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bytes::Bytes;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set, sea_query::OnConflict,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use whatsapp_rust::wacore::{
    appstate::{hash::HashState, processor::AppStateMutationMAC},
    store::{
        Device,
        error::{Result, StoreError},
        traits::{
            AppStateSyncKey, AppSyncStore, DeviceListRecord, DeviceStore, LidPnMappingEntry,
            MsgSecretEntry, MsgSecretStore, ProtocolStore, SignalStore, TcTokenEntry,
            merge_msg_secret_expiry, merge_msg_secret_message_ts,
        },
    },
};

use crate::{crypto::Cipher, domain::ChannelId, entities::wa_session_store as rows};

/// One channel's session records.
#[derive(Clone)]
pub struct DbStore {
    db: DatabaseConnection,
    channel: String,
    cipher: Cipher,
    /// Key of the HMAC over record keys (derived from the server's key).
    mac_key: Arc<[u8; 32]>,
    /// Held by every read-modify-write, so the library's concurrent writers (which the trait
    /// says must see them atomic) never lose each other's writes. Shared by clones.
    rmw: Arc<tokio::sync::Mutex<()>>,
    /// Set when the connection run this store serves has ended for good (its device logged
    /// out, or another replica took the session): the library's late writes (a detached task's
    /// pre-keys, the device saved while closing) then go nowhere instead of re-creating the
    /// keys we delete or overwriting the new owner's. Shared by clones. Every write holds it
    /// (read) from its check to its commit, so a fence waits for the writes already going.
    fenced: Arc<tokio::sync::RwLock<bool>>,
}

impl std::fmt::Debug for DbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbStore")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// Bytes, as base64 in the stored JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Blob(Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s)
            .map(Blob)
            .map_err(serde::de::Error::custom)
    }
}

/// What one row holds once decrypted: the record's key (for scans) and the record.
#[derive(Deserialize)]
struct Record<T> {
    k: String,
    v: T,
}

/// [`Record`], for writing.
#[derive(Serialize)]
struct RecordRef<'a, T> {
    k: &'a str,
    v: &'a T,
}

#[derive(Serialize, Deserialize)]
struct PreKey {
    record: Blob,
    uploaded: bool,
}

#[derive(Serialize, Deserialize)]
struct Stamped {
    payload: Blob,
    at: i64,
}

#[derive(Serialize, Deserialize)]
struct Secret {
    secret: Blob,
    expires_at: i64,
    message_ts: i64,
}

fn db_err(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn ser_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Serialization(e.to_string().into())
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

// Record kinds (the `ns` column).
const IDENTITY: &str = "identity";
const SESSION: &str = "session";
const PREKEY: &str = "prekey";
const SIGNED: &str = "signed_prekey";
const SENDER_KEY: &str = "sender_key";
const SYNC_KEY: &str = "sync_key";
const VERSION: &str = "version";
const MUTATION_MAC: &str = "mutation_mac";
const META: &str = "meta";
const SKD: &str = "sk_devices";
const LID: &str = "lid";
const PN: &str = "pn";
const BASE_KEY: &str = "base_key";
const DEVICES: &str = "devices";
const TC_TOKEN: &str = "tc_token";
const SENT: &str = "sent";
const PENDING: &str = "pending_in";
const MSG_SECRET: &str = "msg_secret";
const DEVICE: &str = "device";

impl DbStore {
    /// The store of channel `channel` (its rows only).
    pub fn new(db: DatabaseConnection, channel: &ChannelId, cipher: Cipher) -> Self {
        let mac_key = Arc::new(cipher.derive("whatsapp-web-store"));
        Self {
            db,
            channel: channel.as_str().to_owned(),
            cipher,
            mac_key,
            rmw: Arc::default(),
            fenced: Arc::default(),
        }
    }

    /// Drops every later write through this store and its clones (reads still work), once the
    /// writes already going have landed.
    pub async fn fence(&self) {
        *self.fenced.write().await = true;
    }

    fn mac(&self, ns: &str, key: &str) -> String {
        let mut data = Vec::with_capacity(ns.len() + 1 + key.len());
        data.extend_from_slice(ns.as_bytes());
        data.push(0);
        data.extend_from_slice(key.as_bytes());
        hex::encode(crate::crypto::hmac_sha256(&*self.mac_key, &data))
    }

    fn open<T: DeserializeOwned>(&self, stored: &str) -> Result<Record<T>> {
        let json = self.cipher.decrypt(stored).map_err(ser_err)?;
        serde_json::from_str(&json).map_err(ser_err)
    }

    async fn get<T: DeserializeOwned>(&self, ns: &str, key: &str) -> Result<Option<T>> {
        let row =
            rows::Entity::find_by_id((self.channel.clone(), ns.to_owned(), self.mac(ns, key)))
                .one(&self.db)
                .await
                .map_err(db_err)?;
        row.map(|r| self.open::<T>(&r.v).map(|rec| rec.v))
            .transpose()
    }

    async fn put<T: Serialize>(&self, ns: &str, key: &str, value: &T) -> Result<()> {
        self.put_many(ns, &[(key, value)]).await
    }

    async fn put_many<T: Serialize>(&self, ns: &str, items: &[(&str, &T)]) -> Result<()> {
        let fenced = self.fenced.read().await;
        if items.is_empty() || *fenced {
            return Ok(());
        }
        let now = now_secs();
        let mut models = Vec::with_capacity(items.len());
        for (key, value) in items {
            let json = serde_json::to_string(&RecordRef { k: key, v: *value }).map_err(ser_err)?;
            models.push(rows::ActiveModel {
                channel_id: Set(self.channel.clone()),
                ns: Set(ns.to_owned()),
                k: Set(self.mac(ns, key)),
                v: Set(self.cipher.encrypt(&json).map_err(ser_err)?),
                updated_at: Set(now),
            });
        }
        // A batch may name one key twice: the last write wins, as in a map.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<_> = models
            .into_iter()
            .rev()
            .filter(|m| seen.insert(m.k.clone().unwrap()))
            .collect();
        unique.reverse();
        for chunk in unique.chunks(200) {
            rows::Entity::insert_many(chunk.to_vec())
                .on_conflict(
                    OnConflict::columns([
                        rows::Column::ChannelId,
                        rows::Column::Ns,
                        rows::Column::K,
                    ])
                    .update_columns([rows::Column::V, rows::Column::UpdatedAt])
                    .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }

    async fn del(&self, ns: &str, keys: &[&str]) -> Result<u32> {
        let fenced = self.fenced.read().await;
        if keys.is_empty() || *fenced {
            return Ok(0);
        }
        let macs: Vec<String> = keys.iter().map(|k| self.mac(ns, k)).collect();
        let mut deleted = 0;
        for chunk in macs.chunks(500) {
            let res = rows::Entity::delete_many()
                .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
                .filter(rows::Column::Ns.eq(ns))
                .filter(rows::Column::K.is_in(chunk.iter().cloned()))
                .exec(&self.db)
                .await
                .map_err(db_err)?;
            deleted += u32::try_from(res.rows_affected).unwrap_or(u32::MAX);
        }
        Ok(deleted)
    }

    async fn clear(&self, ns: &str) -> Result<()> {
        let fenced = self.fenced.read().await;
        if *fenced {
            return Ok(());
        }
        rows::Entity::delete_many()
            .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
            .filter(rows::Column::Ns.eq(ns))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn scan<T: DeserializeOwned>(&self, ns: &str) -> Result<Vec<(String, T)>> {
        let found = rows::Entity::find()
            .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
            .filter(rows::Column::Ns.eq(ns))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        found
            .iter()
            .map(|r| self.open::<T>(&r.v).map(|rec| (rec.k, rec.v)))
            .collect()
    }

    /// Moves every record of this channel under the current secret key (after a rotation:
    /// the row keys are HMACs under a key derived from it, and values written with a previous
    /// key are re-encrypted). Returns how many records moved. Run before each connection.
    pub async fn rekey(&self) -> Result<usize> {
        let found = rows::Entity::find()
            .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
            .all(&self.db)
            .await
            .map_err(db_err)?;
        let mut moved = 0;
        for row in found {
            let rec = self.open::<serde_json::Value>(&row.v)?;
            let mac = self.mac(&row.ns, &rec.k);
            if mac == row.k && self.cipher.is_current(&row.v) {
                continue;
            }
            self.put(&row.ns, &rec.k, &rec.v).await?;
            if mac != row.k {
                rows::Entity::delete_many()
                    .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
                    .filter(rows::Column::Ns.eq(row.ns.as_str()))
                    .filter(rows::Column::K.eq(row.k.as_str()))
                    .exec(&self.db)
                    .await
                    .map_err(db_err)?;
            }
            moved += 1;
        }
        Ok(moved)
    }

    /// Deletes every record of this channel (the device was logged out or the channel deleted).
    pub async fn wipe(&self) -> Result<()> {
        rows::Entity::delete_many()
            .filter(rows::Column::ChannelId.eq(self.channel.as_str()))
            .exec(&self.db)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    /// Leaves a command for whichever replica runs the session (it looks every 2 s, and at once
    /// when it is this one).
    pub async fn put_command(&self, command: &SessionCommand) -> Result<()> {
        self.put(META, "command", command).await
    }

    /// Takes the command left for the session, if any (only one taker gets it).
    pub async fn take_command(&self) -> Result<Option<SessionCommand>> {
        let Some(command) = self.get::<SessionCommand>(META, "command").await? else {
            return Ok(None);
        };
        Ok((self.del(META, &["command"]).await? == 1).then_some(command))
    }

    /// The session as the replica that runs it last showed it (for the API on other replicas).
    pub async fn stored_view<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.get(META, "view").await
    }

    /// Keeps the session's view for the other replicas.
    pub async fn store_view<T: Serialize>(&self, view: &T) -> Result<()> {
        self.put(META, "view", view).await
    }

    /// When the device was linked to its phone (the warm-up's day 0), if known.
    pub async fn linked_at(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        self.get(META, "linked_at").await
    }

    /// Records when the device was linked (kept from the first time unless `reset`).
    pub async fn set_linked_at(
        &self,
        at: chrono::DateTime<chrono::Utc>,
        reset: bool,
    ) -> Result<()> {
        if !reset && self.linked_at().await?.is_some() {
            return Ok(());
        }
        self.put(META, "linked_at", &at).await
    }

    /// Whether a paired device is stored (a session that can reconnect without a new QR).
    pub async fn paired(&self) -> Result<bool> {
        Ok(self
            .get::<Device>(DEVICE, "")
            .await?
            .is_some_and(|d| d.pn.is_some()))
    }
}

/// What an owner asked a session for, through the API of any replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCommand {
    /// Unlink the device (else: start again now).
    pub logout: bool,
    /// Pair by code for this phone at the restart (else by QR).
    pub pair_phone: Option<String>,
}

fn array32(v: Vec<u8>) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Validation("stored key is not 32 bytes".into()))
}

fn two(a: &str, b: &str) -> String {
    format!("{a}\u{1f}{b}")
}

#[async_trait]
impl SignalStore for DbStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put(IDENTITY, address, &Blob(key.to_vec())).await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let blobs: Vec<Blob> = identities.iter().map(|(_, k)| Blob(k.to_vec())).collect();
        let items: Vec<(&str, &Blob)> = identities
            .iter()
            .zip(&blobs)
            .map(|((a, _), b)| (&**a, b))
            .collect();
        self.put_many(IDENTITY, &items).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        self.get::<Blob>(IDENTITY, address)
            .await?
            .map(|b| array32(b.0))
            .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.del(IDENTITY, &[address]).await.map(drop)
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self
            .get::<Blob>(SESSION, address)
            .await?
            .map(|b| Bytes::from(b.0)))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put(SESSION, address, &Blob(session.to_vec())).await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let blobs: Vec<Blob> = sessions.iter().map(|(_, s)| Blob(s.to_vec())).collect();
        let items: Vec<(&str, &Blob)> = sessions
            .iter()
            .zip(&blobs)
            .map(|((a, _), b)| (&**a, b))
            .collect();
        self.put_many(SESSION, &items).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.del(SESSION, &[address]).await.map(drop)
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let value = PreKey {
            record: Blob(record.to_vec()),
            uploaded,
        };
        self.put(PREKEY, &id.to_string(), &value).await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let ids: Vec<String> = keys.iter().map(|(id, _)| id.to_string()).collect();
        let values: Vec<PreKey> = keys
            .iter()
            .map(|(_, r)| PreKey {
                record: Blob(r.to_vec()),
                uploaded,
            })
            .collect();
        let items: Vec<(&str, &PreKey)> = ids.iter().map(String::as_str).zip(&values).collect();
        self.put_many(PREKEY, &items).await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self
            .get::<PreKey>(PREKEY, &id.to_string())
            .await?
            .map(|p| Bytes::from(p.record.0)))
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        for id in ids {
            let key = id.to_string();
            if let Some(mut p) = self.get::<PreKey>(PREKEY, &key).await? {
                p.uploaded = true;
                self.put(PREKEY, &key, &p).await?;
            }
        }
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.del(PREKEY, &[&id.to_string()]).await.map(drop)
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        Ok(self
            .scan::<serde::de::IgnoredAny>(PREKEY)
            .await?
            .iter()
            .filter_map(|(k, _)| k.parse::<u32>().ok())
            .max()
            .unwrap_or(0))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put(SIGNED, &id.to_string(), &Blob(record.to_vec()))
            .await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Blob>(SIGNED, &id.to_string())
            .await?
            .map(|b| b.0))
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut all: Vec<(u32, Vec<u8>)> = self
            .scan::<Blob>(SIGNED)
            .await?
            .into_iter()
            .filter_map(|(k, b)| k.parse().ok().map(|id| (id, b.0)))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        Ok(all)
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.del(SIGNED, &[&id.to_string()]).await.map(drop)
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put(SENDER_KEY, address, &Blob(record.to_vec())).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get::<Blob>(SENDER_KEY, address).await?.map(|b| b.0))
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.del(SENDER_KEY, &[address]).await.map(drop)
    }
}

#[async_trait]
impl AppSyncStore for DbStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get(SYNC_KEY, &hex::encode(key_id)).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        self.put(SYNC_KEY, &hex::encode(key_id), &key).await?;
        self.put(META, "latest_sync_key_id", &Blob(key_id.to_vec()))
            .await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(self.get(VERSION, name).await?.unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put(VERSION, name, &state).await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let keys: Vec<String> = mutations
            .iter()
            .map(|m| two(name, &hex::encode(&m.index_mac)))
            .collect();
        let values: Vec<Blob> = mutations
            .iter()
            .map(|m| Blob(m.value_mac.clone()))
            .collect();
        let items: Vec<(&str, &Blob)> = keys.iter().map(String::as_str).zip(&values).collect();
        self.put_many(MUTATION_MAC, &items).await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Blob>(MUTATION_MAC, &two(name, &hex::encode(index_mac)))
            .await?
            .map(|b| b.0))
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let keys: Vec<String> = index_macs
            .iter()
            .map(|m| two(name, &hex::encode(m)))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.del(MUTATION_MAC, &refs).await.map(drop)
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        let prefix = two(name, "");
        let keys: Vec<String> = self
            .scan::<serde::de::IgnoredAny>(MUTATION_MAC)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(&prefix))
            .collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        self.del(MUTATION_MAC, &refs).await.map(drop)
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Blob>(META, "latest_sync_key_id")
            .await?
            .map(|b| b.0))
    }
}

#[async_trait]
impl ProtocolStore for DbStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        Ok(self
            .get::<Vec<(String, bool)>>(SKD, group_jid)
            .await?
            .unwrap_or_default())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        let mut map: Vec<(String, bool)> = self.get_sender_key_devices(group_jid).await?;
        for (device, has) in entries {
            match map.iter_mut().find(|(d, _)| d == device) {
                Some(slot) => slot.1 = *has,
                None => map.push(((*device).to_owned(), *has)),
            }
        }
        self.put(SKD, group_jid, &map).await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.del(SKD, &[group_jid]).await.map(drop)
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let _rmw = self.rmw.lock().await;
        for (group, mut map) in self.scan::<Vec<(String, bool)>>(SKD).await? {
            let before = map.len();
            map.retain(|(d, _)| !device_jids.contains(&d.as_str()));
            if map.len() != before {
                self.put(SKD, &group, &map).await?;
            }
        }
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.clear(SKD).await
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get(LID, lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        match self.get::<String>(PN, phone).await? {
            Some(lid) => self.get(LID, &lid).await,
            None => Ok(None),
        }
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        if let Some(old) = self.get::<LidPnMappingEntry>(LID, &entry.lid).await?
            && old.phone_number != entry.phone_number
        {
            self.del(PN, &[&old.phone_number]).await?;
        }
        self.put(PN, &entry.phone_number, &entry.lid).await?;
        self.put(LID, &entry.lid, entry).await
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        Ok(self
            .scan::<LidPnMappingEntry>(LID)
            .await?
            .into_iter()
            .map(|(_, e)| e)
            .collect())
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put(
            BASE_KEY,
            &two(address, message_id),
            &Blob(base_key.to_vec()),
        )
        .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        Ok(self
            .get::<Blob>(BASE_KEY, &two(address, message_id))
            .await?
            .is_some_and(|b| b.0 == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.del(BASE_KEY, &[&two(address, message_id)])
            .await
            .map(drop)
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.put(DEVICES, &record.user.clone(), &record).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get(DEVICES, user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.del(DEVICES, &[user]).await.map(drop)
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get(TC_TOKEN, jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        self.put(TC_TOKEN, jid, entry).await
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        let entry = match self.get::<TcTokenEntry>(TC_TOKEN, jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(
                    existing
                        .sender_timestamp
                        .map_or(sender_timestamp, |e| e.max(sender_timestamp)),
                ),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put(TC_TOKEN, jid, &entry).await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        let _rmw = self.rmw.lock().await;
        let existing = self.get::<TcTokenEntry>(TC_TOKEN, jid).await?;
        // A fresher real token is kept; a placeholder never blocks the first real one.
        if let Some(existing) = &existing
            && !existing.token.is_empty()
            && token_timestamp < existing.token_timestamp
        {
            return Ok(());
        }
        let entry = TcTokenEntry {
            token: token.to_vec(),
            token_timestamp,
            sender_timestamp: existing.and_then(|e| e.sender_timestamp),
        };
        self.put(TC_TOKEN, jid, &entry).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.del(TC_TOKEN, &[jid]).await.map(drop)
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self
            .scan::<serde::de::IgnoredAny>(TC_TOKEN)
            .await?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let expired: Vec<String> = self
            .scan::<TcTokenEntry>(TC_TOKEN)
            .await?
            .into_iter()
            .filter(|(_, e)| {
                let token_live = !e.token.is_empty() && e.token_timestamp >= token_cutoff;
                let sender_live = e.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
                !(token_live || sender_live)
            })
            .map(|(k, _)| k)
            .collect();
        let refs: Vec<&str> = expired.iter().map(String::as_str).collect();
        self.del(TC_TOKEN, &refs).await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        let value = Stamped {
            payload: Blob(payload.to_vec()),
            at: now_secs(),
        };
        self.put(SENT, &two(chat_jid, message_id), &value).await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        let key = two(chat_jid, message_id);
        let found = self.get::<Stamped>(SENT, &key).await?;
        // Only the caller whose delete removed the row gets it: a take is atomic.
        if found.is_none() || self.del(SENT, &[&key]).await? != 1 {
            return Ok(None);
        }
        Ok(found.map(|s| s.payload.0))
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_stamped_before(SENT, cutoff_timestamp).await
    }

    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        let value = Stamped {
            payload: Blob(message.to_vec()),
            at: now_secs(),
        };
        self.put(PENDING, &two(&two(chat, sender), id), &value)
            .await
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get::<Stamped>(PENDING, &two(&two(chat, sender), id))
            .await?
            .map(|s| s.payload.0))
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.del(PENDING, &[&two(&two(chat, sender), id)])
            .await
            .map(drop)
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_stamped_before(PENDING, cutoff_timestamp).await
    }
}

impl DbStore {
    async fn delete_stamped_before(&self, ns: &str, cutoff: i64) -> Result<u32> {
        let old: Vec<String> = self
            .scan::<Stamped>(ns)
            .await?
            .into_iter()
            .filter(|(_, s)| s.at < cutoff)
            .map(|(k, _)| k)
            .collect();
        let refs: Vec<&str> = old.iter().map(String::as_str).collect();
        self.del(ns, &refs).await
    }
}

#[async_trait]
impl MsgSecretStore for DbStore {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let _rmw = self.rmw.lock().await;
        let stored = entries.len();
        let mut merged: HashMap<String, Secret> = HashMap::with_capacity(stored);
        for e in entries {
            let key = two(&two(&e.chat, &e.sender), &e.msg_id);
            let existing = match merged.remove(&key) {
                Some(s) => Some(s),
                None => self.get::<Secret>(MSG_SECRET, &key).await?,
            };
            let value = match existing {
                Some(old) => Secret {
                    secret: Blob(e.secret.to_vec()),
                    expires_at: merge_msg_secret_expiry(old.expires_at, e.expires_at),
                    message_ts: merge_msg_secret_message_ts(old.message_ts, e.message_ts),
                },
                None => Secret {
                    secret: Blob(e.secret.to_vec()),
                    expires_at: e.expires_at,
                    message_ts: e.message_ts,
                },
            };
            merged.insert(key, value);
        }
        let items: Vec<(&str, &Secret)> = merged.iter().map(|(k, v)| (k.as_str(), v)).collect();
        self.put_many(MSG_SECRET, &items).await?;
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        Ok(self
            .get_msg_secret_with_ts(chat, sender, msg_id)
            .await?
            .map(|(s, _)| s))
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .get::<Secret>(MSG_SECRET, &two(&two(chat, sender), msg_id))
            .await?
            .map(|s| (s.secret.0, s.message_ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        let old: Vec<String> = self
            .scan::<Secret>(MSG_SECRET)
            .await?
            .into_iter()
            .filter(|(_, s)| s.expires_at != 0 && s.expires_at <= cutoff_timestamp)
            .map(|(k, _)| k)
            .collect();
        let refs: Vec<&str> = old.iter().map(String::as_str).collect();
        self.del(MSG_SECRET, &refs).await
    }
}

#[async_trait]
impl DeviceStore for DbStore {
    async fn save(&self, device: &Device) -> Result<()> {
        self.put(DEVICE, "", device).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        self.get(DEVICE, "").await
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self
            .get::<serde::de::IgnoredAny>(DEVICE, "")
            .await?
            .is_some())
    }

    async fn create(&self) -> Result<i32> {
        if !self.exists().await? {
            self.save(&Device::new()).await?;
        }
        Ok(1)
    }
}

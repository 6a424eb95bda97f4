//! A local WhatsApp server for the real `whatsapp-rust` library. The server's engine
//! (`src/channels/whatsapp_web/real.rs`) runs unchanged over our database store; only the
//! library's two network seams point here (`WhatsAppRust::over`): the transport that carries the
//! Noise frames, and the HTTP client (the Web client's version, media uploads).
//!
//! What it speaks, as WhatsApp does and as the library implements it:
//! - the Noise handshake with its own static key and certificate chain: XX on a first connection
//!   and while pairing, IK when a paired device comes back with the chain it cached. (Test
//!   builds only turn off the check of that chain against WhatsApp's root key: see the
//!   dev-dependency in `Cargo.toml`.)
//! - frames: a 3-byte length, AES-GCM with a counter per direction, a flag byte, a binary node;
//! - pairing by QR: six `pair-device` refs. [`WaServer::scan`] is the phone: it reads the QR
//!   code, and answers `pair-success` with an ADV identity signed by the phone's account key
//!   and MACed with the ADV secret the QR carries. The library checks both. Then a 515 restart;
//!   pairing by phone number: the ref for the library's code (the phone's side is not played);
//! - login: `<success>`, then the end of the offline queue. Every IQ is answered: pings, empty
//!   app-state collections (a new account), device lists (every user has one phone), pre-key
//!   bundles, a media host, and 404 for what a new account has none of;
//! - messages: each user's phone keeps Signal stores, so it decrypts what our device sends it
//!   and writes back ([`WaServer::write`], by number or by hidden id); the server acks, refuses
//!   (463) or ignores messages ([`Answer`]), the phone sends delivered and read receipts;
//! - a removed device: stream error 401 and every later login refused; a takeover: stream
//!   error 440 (`conflict replaced`); a dropped connection.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use whatsapp_rust::{
    Jid, NodeBuilder, async_channel,
    buffa::{self, Message as _},
    bytes::{Bytes, BytesMut},
    http::{HttpClient, HttpRequest, HttpResponse},
    transport::{DisconnectReason, Transport, TransportEvent, TransportFactory},
    wacore::{
        framing::encode_frame,
        handshake::{NoiseCipher, NoiseHandshake},
        iq::prekeys::PreKeyBundleUserNode,
        libsignal::protocol::{
            CiphertextMessage, Direction, GenericSignedPreKey, IdentityChange, IdentityKey,
            IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyBundle, PreKeyId, PreKeyRecord,
            PreKeySignalMessage, PreKeyStore, PrivateKey, ProtocolAddress, PublicKey,
            SessionRecord, SessionStore, SignalMessage, SignalProtocolError, SignedPreKeyId,
            SignedPreKeyRecord, SignedPreKeyStore, Timestamp, UsePQRatchet, message_decrypt,
            message_encrypt, process_prekey_bundle,
        },
        protocol::ProtocolNode,
    },
    wacore_binary::{
        OwnedNodeRef,
        consts::{NOISE_PATTERN_IK, NOISE_PATTERN_XX, WA_CONN_HEADER},
        marshal::marshal,
        node::{Node, NodeContent},
        util::unpack_bytes,
    },
    waproto::whatsapp as wa,
};

/// The phone that scans: its number, its device slot for us, its hidden id and its name.
pub const PHONE_USER: &str = "34611222333";
const DEVICE_ID: u16 = 7;
const LID_USER: &str = "99887766";
pub const PUSH_NAME: &str = "Tienda Ana";

/// What the server saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Completed handshakes, and how many of them were IK (a paired device's quick reconnect).
    pub handshakes: usize,
    pub ik: usize,
    /// Connections that asked to pair (a QR was offered on each).
    pub registrations: usize,
    /// Logins of a paired device, refused ones included.
    pub logins: usize,
    pub refused_logins: usize,
    /// Logged-in connections open now, and the most at once.
    pub live: usize,
    pub max_live: usize,
    /// The `xmlns` of every IQ the client asked.
    pub iqs: Vec<String>,
    /// Every message stanza the client sent.
    pub messages: Vec<WireMessage>,
    /// The size of every media upload.
    pub uploads: Vec<usize>,
}

/// A message as it reached the server: encrypted for each of the recipient's devices.
#[derive(Debug, Clone)]
pub struct WireMessage {
    pub id: String,
    /// The recipient's user (phone number without `+`).
    pub to: String,
    /// `text` or `media`.
    pub kind: String,
    /// The Signal message types of its `<enc>` parts (`pkmsg` for a first message).
    pub enc: Vec<String>,
    /// What the recipient's phone read, decrypted ([`describe`]).
    pub read: Option<String>,
}

/// What WhatsApp and the recipient's phone answer to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The server's ack, then the phone's delivered and read receipts.
    Read,
    /// The server's ack only (one tick).
    ServerOnly,
    /// Refused by the server (error 463).
    Refuse,
    /// Nothing at all: the connection takes messages and never answers (a zombie).
    Silent,
}

/// A WhatsApp user's phone (device 0): its Signal identity and keys as its pre-key bundle
/// publishes them, and its sessions, so it reads what it is sent and writes back.
struct Phone {
    identity: PhoneIdentity,
    sessions: PhoneSessions,
    pre_keys: PhonePreKeys,
    signed: PhoneSigned,
    bundle: PreKeyBundle,
}

impl Phone {
    fn new() -> Self {
        let mut rng = rand10::rng();
        let identity = KeyPair::generate(&mut rng);
        let signed = KeyPair::generate(&mut rng);
        let one_time = KeyPair::generate(&mut rng);
        let signature = identity
            .private_key
            .calculate_signature(&signed.public_key.serialize(), &mut rng)
            .expect("sign")
            .to_vec();
        let registration_id = rand10::random::<u32>() & 0x3FFF;
        let bundle = PreKeyBundle::new(
            registration_id,
            0.into(),
            Some((1.into(), one_time.public_key)),
            1.into(),
            signed.public_key,
            signature.clone(),
            IdentityKey::new(identity.public_key),
        )
        .expect("bundle");
        Self {
            identity: PhoneIdentity {
                pair: IdentityKeyPair::new(
                    IdentityKey::new(identity.public_key),
                    identity.private_key,
                ),
                registration_id,
                known: HashMap::new(),
            },
            sessions: PhoneSessions(HashMap::new()),
            pre_keys: PhonePreKeys(HashMap::from([(1, PreKeyRecord::new(1.into(), &one_time))])),
            signed: PhoneSigned(HashMap::from([(
                1,
                SignedPreKeyRecord::new(
                    1.into(),
                    Timestamp::from_epoch_millis(0),
                    &signed,
                    &signature,
                ),
            )])),
            bundle,
        }
    }

    /// Reads a message our device encrypted for this phone.
    async fn decrypt(
        &mut self,
        from: &ProtocolAddress,
        kind: &str,
        bytes: &[u8],
    ) -> anyhow::Result<wa::Message> {
        let ciphertext = match kind {
            "pkmsg" => {
                CiphertextMessage::PreKeySignalMessage(PreKeySignalMessage::try_from(bytes)?)
            }
            "msg" => CiphertextMessage::SignalMessage(SignalMessage::try_from(bytes)?),
            other => anyhow::bail!("not a 1:1 Signal message: {other}"),
        };
        let plain = message_decrypt(
            &ciphertext,
            from,
            &mut self.sessions,
            &mut self.identity,
            &mut self.pre_keys,
            &self.signed,
            &mut rand10::make_rng::<rand10::rngs::StdRng>(),
            UsePQRatchet::No,
        )
        .await?
        .plaintext;
        // WhatsApp pads the plaintext with n bytes of value n.
        let pad = usize::from(*plain.last().unwrap_or(&0));
        anyhow::ensure!(pad >= 1 && pad <= plain.len(), "bad padding");
        Ok(wa::Message::decode_from_slice(&plain[..plain.len() - pad])?)
    }

    /// Writes `message` to a device whose pre-key bundle is `bundle` (a first message: `pkmsg`).
    async fn encrypt(
        &mut self,
        to: &ProtocolAddress,
        bundle: &PreKeyBundle,
        message: &wa::Message,
    ) -> anyhow::Result<(String, Vec<u8>)> {
        if !self.sessions.0.contains_key(&to.to_string()) {
            process_prekey_bundle(
                to,
                &mut self.sessions,
                &mut self.identity,
                bundle,
                &mut rand10::make_rng::<rand10::rngs::StdRng>(),
                UsePQRatchet::No,
            )
            .await?;
        }
        let mut plain = message.encode_to_vec();
        plain.extend([3u8; 3]);
        let sealed = message_encrypt(&plain, to, &mut self.sessions, &mut self.identity).await?;
        let kind = match sealed {
            CiphertextMessage::PreKeySignalMessage(_) => "pkmsg",
            _ => "msg",
        };
        Ok((kind.to_owned(), sealed.serialize().to_vec()))
    }
}

struct PhoneIdentity {
    pair: IdentityKeyPair,
    registration_id: u32,
    known: HashMap<String, IdentityKey>,
}

struct PhoneSessions(HashMap<String, SessionRecord>);
struct PhonePreKeys(HashMap<u32, PreKeyRecord>);
struct PhoneSigned(HashMap<u32, SignedPreKeyRecord>);

type SignalResult<T> = Result<T, SignalProtocolError>;

#[whatsapp_rust::async_trait]
impl IdentityKeyStore for PhoneIdentity {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let old = self.known.insert(address.to_string(), *identity);
        Ok(match old {
            Some(o) if o != *identity => IdentityChange::ReplacedExisting,
            _ => IdentityChange::NewOrUnchanged,
        })
    }

    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(&address.to_string()).copied())
    }
}

#[whatsapp_rust::async_trait]
impl SessionStore for PhoneSessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(&address.to_string()).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(&address.to_string()))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        record: SessionRecord,
    ) -> SignalResult<()> {
        self.0.insert(address.to_string(), record);
        Ok(())
    }
}

#[whatsapp_rust::async_trait]
impl PreKeyStore for PhonePreKeys {
    async fn get_pre_key(&self, id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(&mut self, id: PreKeyId, record: &PreKeyRecord) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }

    async fn remove_pre_key(&mut self, id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(id));
        Ok(())
    }
}

#[whatsapp_rust::async_trait]
impl SignedPreKeyStore for PhoneSigned {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }

    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }
}

/// What a message says, for the tests: `text:…`, `image:<caption>`, `document:<file name>`.
pub fn describe(message: &wa::Message) -> String {
    if let Some(text) = &message.conversation {
        return format!("text:{text}");
    }
    if let Some(t) = message.extended_text_message.as_option() {
        return format!("text:{}", t.text.clone().unwrap_or_default());
    }
    if let Some(i) = message.image_message.as_option() {
        return format!("image:{}", i.caption.clone().unwrap_or_default());
    }
    if let Some(d) = message.document_message.as_option() {
        return format!("document:{}", d.file_name.clone().unwrap_or_default());
    }
    format!("other:{message:?}")
}

enum Cmd {
    Node(Node),
    /// The server closes the connection.
    Drop,
    /// The client closed it.
    Closed,
}

struct Conn {
    id: usize,
    cmds: UnboundedSender<Cmd>,
    /// The client's Noise static key: the device's noise key, which its QR shows.
    noise: [u8; 32],
    logged_in: bool,
}

struct Inner {
    identity: KeyPair,
    cert_chain: Vec<u8>,
    next_id: AtomicUsize,
    conns: Mutex<Vec<Conn>>,
    seen: Mutex<Seen>,
    /// Noise keys of devices the phone removed: their logins are refused.
    removed: Mutex<HashSet<[u8; 32]>>,
    /// Every user's phone (device 0), made when first asked for.
    phones: tokio::sync::Mutex<HashMap<String, Phone>>,
    /// Bundles of our device's unused one-time pre-keys (what a phone writing to it needs).
    uploaded: Mutex<Vec<PreKeyBundle>>,
    answer: Mutex<Answer>,
}

/// The server, and the phone behind it. Cheap to clone.
#[derive(Clone)]
pub struct WaServer(Arc<Inner>);

impl WaServer {
    /// A server with WhatsApp's one static key (fixed, so a device that cached its certificate
    /// chain reconnects by IK to any instance, as to WhatsApp's edge servers).
    pub fn start() -> Self {
        let private = PrivateKey::deserialize(&[0x5A; 32]).expect("key");
        let identity = KeyPair::new(private.public_key().expect("public key"), private);
        let static_pub: [u8; 32] = identity
            .public_key
            .public_key_bytes()
            .try_into()
            .expect("32 bytes");
        Self(Arc::new(Inner {
            cert_chain: cert_chain(&static_pub),
            identity,
            next_id: AtomicUsize::new(1),
            conns: Mutex::new(Vec::new()),
            seen: Mutex::new(Seen::default()),
            removed: Mutex::new(HashSet::new()),
            phones: tokio::sync::Mutex::new(HashMap::new()),
            uploaded: Mutex::new(Vec::new()),
            answer: Mutex::new(Answer::Read),
        }))
    }

    /// The engine the server runs, over this server.
    pub fn engine(&self) -> pregonero::channels::whatsapp_web::WhatsAppRust {
        pregonero::channels::whatsapp_web::WhatsAppRust::over(
            Arc::new(self.clone()),
            Arc::new(self.clone()),
        )
    }

    /// Server options with that engine.
    pub fn options(&self) -> pregonero::startup::RunOptions {
        pregonero::startup::RunOptions {
            whatsapp_web: Arc::new(self.engine()),
            ..Default::default()
        }
    }

    pub fn seen(&self) -> Seen {
        self.0.seen.lock().expect("lock").clone()
    }

    /// The phone scans `qr`: WhatsApp tells the device it showed it to that it is now linked.
    pub fn scan(&self, qr: &str) {
        let fields: Vec<&str> = qr.split(',').collect();
        assert!(fields.len() >= 4, "not a WhatsApp QR: {qr}");
        let b64 = |s: &str| -> [u8; 32] {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .expect("base64")
                .try_into()
                .expect("32 bytes")
        };
        let (noise, identity, adv_secret) = (b64(fields[1]), b64(fields[2]), b64(fields[3]));
        let conns = self.0.conns.lock().expect("lock");
        let conn = conns
            .iter()
            .find(|c| c.noise == noise && !c.logged_in)
            .expect("the QR's device is connected and pairing");
        let id = format!("pair-{}", conn.id);
        let jid: Jid = format!("{PHONE_USER}:{DEVICE_ID}@s.whatsapp.net")
            .parse()
            .expect("jid");
        let lid: Jid = format!("{LID_USER}:{DEVICE_ID}@lid").parse().expect("lid");
        let success = NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("type", "set")
            .attr("id", id)
            .attr("xmlns", "md")
            .children([NodeBuilder::new("pair-success")
                .children([
                    NodeBuilder::new("device-identity")
                        .bytes(signed_identity(&identity, &adv_secret))
                        .build(),
                    NodeBuilder::new("platform").attr("name", "android").build(),
                    NodeBuilder::new("biz").attr("name", PUSH_NAME).build(),
                    NodeBuilder::new("device")
                        .attr("jid", jid)
                        .attr("lid", lid)
                        .build(),
                ])
                .build()])
            .build();
        let _ = conn.cmds.send(Cmd::Node(success));
    }

    /// The phone of `from` (digits; `lid`: its hidden id, which WhatsApp shows instead of the
    /// number, giving the number in `sender_pn`) writes `text` to our device.
    pub async fn write(&self, from: &str, lid: Option<&str>, text: &str) {
        let bundle = self
            .0
            .uploaded
            .lock()
            .expect("lock")
            .pop()
            .expect("our device uploaded its pre-keys");
        let to = ProtocolAddress::new(PHONE_USER, u32::from(DEVICE_ID).into());
        let message = wa::Message {
            conversation: Some(text.to_owned()),
            ..Default::default()
        };
        let (kind, sealed) = {
            let mut phones = self.0.phones.lock().await;
            let phone = phones.entry(from.to_owned()).or_insert_with(Phone::new);
            phone
                .encrypt(&to, &bundle, &message)
                .await
                .expect("encrypt")
        };
        let id = format!("3A{:018X}", rand10::random::<u64>());
        let pn: Jid = format!("{from}@s.whatsapp.net").parse().expect("pn");
        let mut stanza = NodeBuilder::new("message")
            .attr("id", id)
            .attr("type", "text")
            .attr("t", chrono::Utc::now().timestamp().to_string())
            .attr("notify", "Cliente");
        stanza = match lid {
            Some(lid) => stanza
                .attr("from", format!("{lid}@lid").parse::<Jid>().expect("lid"))
                .attr("sender_pn", pn)
                .attr("addressing_mode", "lid"),
            None => stanza.attr("from", pn),
        };
        let stanza = stanza
            .children([NodeBuilder::new("enc")
                .attr("v", "2")
                .attr("type", kind)
                .bytes(sealed)
                .build()])
            .build();
        for c in self
            .0
            .conns
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.logged_in)
        {
            let _ = c.cmds.send(Cmd::Node(stanza.clone()));
        }
    }

    /// How WhatsApp and the recipients answer the next messages.
    pub fn set_answer(&self, answer: Answer) {
        *self.0.answer.lock().expect("lock") = answer;
    }

    /// The owner removes the linked device on the phone: 401 now, and every later login refused.
    pub fn remove_device(&self) {
        let conns = self.0.conns.lock().expect("lock");
        for c in conns.iter().filter(|c| c.logged_in) {
            self.0.removed.lock().expect("lock").insert(c.noise);
            let _ = c.cmds.send(Cmd::Node(
                NodeBuilder::new("stream:error")
                    .attr("code", "401")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "device_removed")
                        .build()])
                    .build(),
            ));
        }
    }

    /// Another client opens this session: 440.
    pub fn replace(&self) {
        for c in self
            .0
            .conns
            .lock()
            .expect("lock")
            .iter()
            .filter(|c| c.logged_in)
        {
            let _ = c.cmds.send(Cmd::Node(
                NodeBuilder::new("stream:error")
                    .children([NodeBuilder::new("conflict")
                        .attr("type", "replaced")
                        .build()])
                    .build(),
            ));
        }
    }

    /// The network drops every connection.
    pub fn drop_connections(&self) {
        for c in self.0.conns.lock().expect("lock").iter() {
            let _ = c.cmds.send(Cmd::Drop);
        }
    }
}

/// A certificate chain whose leaf is the server's static key, valid for decades. (WhatsApp's
/// would be signed by its root key; the test build does not check that signature.)
fn cert_chain(static_pub: &[u8; 32]) -> Vec<u8> {
    let details = |serial, issuer, key: Vec<u8>| {
        wa::cert_chain::noise_certificate::Details {
            serial: Some(serial),
            issuer_serial: Some(issuer),
            key: Some(key),
            not_before: Some(1_700_000_000),
            not_after: Some(4_000_000_000),
        }
        .encode_to_vec()
    };
    wa::CertChain {
        leaf: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            details: Some(details(2, 1, static_pub.to_vec())),
            signature: Some(vec![0; 64]),
        }),
        intermediate: buffa::MessageField::some(wa::cert_chain::NoiseCertificate {
            details: Some(details(1, 0, vec![0xCC; 32])),
            signature: Some(vec![0; 64]),
        }),
    }
    .encode_to_vec()
}

/// What the phone signs when it links a device: the device's identity key under the account
/// key (prefix 6,0), wrapped in an HMAC keyed by the ADV secret from the QR.
fn signed_identity(device_identity: &[u8; 32], adv_secret: &[u8; 32]) -> Vec<u8> {
    let mut rng = rand10::rng();
    let account = KeyPair::generate(&mut rng);
    let details = wa::ADVDeviceIdentity {
        raw_id: Some(DEVICE_ID as u32),
        timestamp: Some(chrono::Utc::now().timestamp() as u64),
        key_index: Some(1),
        account_type: Some(wa::ADVEncryptionType::E2EE),
        device_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec();
    let mut signed = vec![6u8, 0];
    signed.extend_from_slice(&details);
    signed.extend_from_slice(device_identity);
    let signature = account
        .private_key
        .calculate_signature(&signed, &mut rng)
        .expect("sign");
    let identity = wa::ADVSignedDeviceIdentity {
        details: Some(details),
        account_signature_key: Some(account.public_key.public_key_bytes().to_vec()),
        account_signature: Some(signature.to_vec()),
        device_signature: None,
    }
    .encode_to_vec();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(adv_secret).expect("hmac key");
    mac.update(&identity);
    wa::ADVSignedDeviceIdentityHMAC {
        details: Some(identity),
        hmac: Some(mac.finalize().into_bytes().to_vec()),
        account_type: Some(wa::ADVEncryptionType::E2EE),
    }
    .encode_to_vec()
}

/// A node's bytes (empty when it holds none).
fn content_bytes(node: &Node) -> &[u8] {
    match &node.content {
        Some(NodeContent::Bytes(b)) => b,
        _ => &[],
    }
}

/// Our device's pre-key upload: each one-time key goes into one bundle (WhatsApp hands each out
/// once), most recent upload first.
fn uploaded_bundles(iq: &Node) -> anyhow::Result<Vec<PreKeyBundle>> {
    let bytes = |n: Option<&Node>, what: &str| -> anyhow::Result<Vec<u8>> {
        n.map(content_bytes)
            .filter(|b| !b.is_empty())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow::anyhow!("the upload has no {what}"))
    };
    let id = |b: Vec<u8>| b.iter().fold(0u32, |acc, x| (acc << 8) | u32::from(*x));
    let key = |b: Vec<u8>| PublicKey::from_djb_public_key_bytes(&b);
    let registration = id(bytes(
        iq.get_optional_child("registration"),
        "registration",
    )?);
    let identity = key(bytes(iq.get_optional_child("identity"), "identity")?)?;
    let skey = iq.get_optional_child("skey");
    let skey_part = |tag: &str| bytes(skey.and_then(|k| k.get_optional_child(tag)), tag);
    let (signed_id, signed, signature) = (
        id(skey_part("id")?),
        key(skey_part("value")?)?,
        skey_part("signature")?,
    );
    let keys = iq
        .get_optional_child("list")
        .map(|l| l.get_children_by_tag("key").collect::<Vec<_>>())
        .unwrap_or_default();
    keys.into_iter()
        .map(|k| {
            Ok(PreKeyBundle::new(
                registration,
                u32::from(DEVICE_ID).into(),
                Some((
                    id(bytes(k.get_optional_child("id"), "key id")?).into(),
                    key(bytes(k.get_optional_child("value"), "key")?)?,
                )),
                signed_id.into(),
                signed,
                signature.clone(),
                IdentityKey::new(identity),
            )?)
        })
        .collect()
}

/// The `jid`s of the `<user>` nodes under `path` in an IQ.
fn users_of(iq: &Node, path: &[&str]) -> Vec<Jid> {
    let mut node = Some(iq);
    for tag in path {
        node = node.and_then(|n| n.get_optional_child(tag));
    }
    node.map(|n| {
        n.get_children_by_tag("user")
            .filter_map(|u| u.attrs().optional_string("jid")?.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

fn noise_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("noise: {e}")
}

/// The client's end of one connection.
struct ClientEnd {
    to_server: UnboundedSender<Bytes>,
    cmds: UnboundedSender<Cmd>,
}

#[whatsapp_rust::async_trait]
impl Transport for ClientEnd {
    async fn send(&self, data: Bytes) -> anyhow::Result<()> {
        self.to_server
            .send(data)
            .map_err(|_| anyhow::anyhow!("connection closed"))
    }

    async fn disconnect(&self) {
        let _ = self.cmds.send(Cmd::Closed);
    }
}

#[whatsapp_rust::async_trait]
impl TransportFactory for WaServer {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let (to_server, from_client) = unbounded_channel();
        let (cmds, cmd_rx) = unbounded_channel();
        let (events, events_rx) = async_channel::unbounded();
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let server = self.clone();
        let own = cmds.clone();
        tokio::spawn(async move {
            let mut conn = Connection {
                server: server.clone(),
                id,
                from_client,
                cmds: cmd_rx,
                own,
                events: events.clone(),
                buf: Vec::new(),
                header_read: false,
                ciphers: None,
            };
            if let Err(e) = conn.run().await {
                tracing::debug!(conn = id, "fake WhatsApp connection ended: {e:#}");
            }
            server.forget(id);
            let _ = events
                .send(TransportEvent::Disconnected(DisconnectReason::StreamEnded))
                .await;
        });
        Ok((Arc::new(ClientEnd { to_server, cmds }), events_rx))
    }
}

#[whatsapp_rust::async_trait]
impl HttpClient for WaServer {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        // The Web client's current version, as web.whatsapp.com/sw.js gives it.
        let body = if request.url.ends_with("/sw.js") {
            br#"self.__swData={"client_revision":1027000000,"x":1};"#.to_vec()
        } else if request.method == "POST" && request.url.contains("mmg.pregonero-fake.test/mms/") {
            // A media upload (encrypted by the library): the file's new home.
            let size = request.body.as_ref().map_or(0, |b| b.len());
            self.0.seen.lock().expect("lock").uploads.push(size);
            br#"{"url":"https://mmg.pregonero-fake.test/o1/v/t62/f","direct_path":"/o1/v/t62/f"}"#
                .to_vec()
        } else {
            return Ok(HttpResponse {
                status_code: 404,
                body: Vec::new(),
            });
        };
        Ok(HttpResponse {
            status_code: 200,
            body,
        })
    }
}

impl WaServer {
    fn forget(&self, id: usize) {
        let mut conns = self.0.conns.lock().expect("lock");
        if let Some(i) = conns.iter().position(|c| c.id == id) {
            let c = conns.remove(i);
            if c.logged_in {
                self.0.seen.lock().expect("lock").live -= 1;
            }
        }
    }
}

/// The server's end of one connection.
struct Connection {
    server: WaServer,
    id: usize,
    from_client: UnboundedReceiver<Bytes>,
    cmds: UnboundedReceiver<Cmd>,
    own: UnboundedSender<Cmd>,
    events: async_channel::Sender<TransportEvent>,
    buf: Vec<u8>,
    header_read: bool,
    /// Reading the client's frames and writing ours, with their counters.
    ciphers: Option<(NoiseCipher, u32, NoiseCipher, u32)>,
}

impl Connection {
    /// The next frame from the client; `None` when the connection ends.
    async fn frame(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if !self.header_read && self.buf.len() >= WA_CONN_HEADER.len() {
                anyhow::ensure!(
                    self.buf.starts_with(&WA_CONN_HEADER),
                    "no WA header: {:?}",
                    &self.buf[..4]
                );
                self.buf.drain(..WA_CONN_HEADER.len());
                self.header_read = true;
            }
            if self.header_read && self.buf.len() >= 3 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 3 + len {
                    let frame = self.buf[3..3 + len].to_vec();
                    self.buf.drain(..3 + len);
                    return Ok(Some(frame));
                }
            }
            tokio::select! {
                data = self.from_client.recv() => match data {
                    Some(data) => self.buf.extend_from_slice(&data),
                    None => return Ok(None),
                },
                cmd = self.cmds.recv() => match cmd {
                    Some(Cmd::Node(node)) => self.send(&node).await?,
                    Some(Cmd::Drop) | Some(Cmd::Closed) | None => return Ok(None),
                },
            }
        }
    }

    async fn raw(&self, payload: &[u8]) -> anyhow::Result<()> {
        self.events
            .send(TransportEvent::DataReceived(Bytes::from(encode_frame(
                payload, None,
            )?)))
            .await?;
        Ok(())
    }

    async fn send(&mut self, node: &Node) -> anyhow::Result<()> {
        let (_, _, write, counter) = self.ciphers.as_mut().expect("after the handshake");
        let sealed = write
            .encrypt_with_counter(*counter, &marshal(node)?)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        *counter += 1;
        self.raw(&sealed).await
    }

    fn open(&mut self, mut frame: Vec<u8>) -> anyhow::Result<Node> {
        let (read, counter, _, _) = self.ciphers.as_mut().expect("after the handshake");
        read.decrypt_in_place_with_counter(*counter, &mut frame)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        *counter += 1;
        let plain = unpack_bytes(BytesMut::from(&frame[..]))?;
        Ok(OwnedNodeRef::new(plain)?.to_owned_node())
    }

    async fn run(&mut self) -> anyhow::Result<()> {
        let (client_static, payload) = self.handshake().await?;
        let payload = wa::ClientPayload::decode_from_slice(&payload)?;
        let logged_in = payload.username.is_some();
        {
            let mut seen = self.server.0.seen.lock().expect("lock");
            if logged_in {
                seen.logins += 1;
            } else {
                seen.registrations += 1;
            }
        }
        self.server.0.conns.lock().expect("lock").push(Conn {
            id: self.id,
            cmds: self.own.clone(),
            noise: client_static,
            logged_in: false,
        });
        let now = chrono::Utc::now().timestamp().to_string();
        if logged_in {
            if self
                .server
                .0
                .removed
                .lock()
                .expect("lock")
                .contains(&client_static)
            {
                self.server.0.seen.lock().expect("lock").refused_logins += 1;
                let failure = NodeBuilder::new("failure").attr("reason", "401").build();
                self.send(&failure).await?;
                return Ok(());
            }
            self.mark_logged_in();
            let lid = format!("{LID_USER}:{DEVICE_ID}@lid");
            let success = NodeBuilder::new("success")
                .attr("t", now.clone())
                .attr("lid", lid.parse::<Jid>().expect("lid"))
                .build();
            self.send(&success).await?;
            let offline = NodeBuilder::new("ib")
                .attr("from", "s.whatsapp.net")
                .children([NodeBuilder::new("offline").attr("count", "0").build()])
                .build();
            self.send(&offline).await?;
        } else {
            let refs = (0..6).map(|i| {
                NodeBuilder::new("ref")
                    .bytes(format!("2@pregonero-fake-{}-{i}", self.id).into_bytes())
                    .build()
            });
            let offer = NodeBuilder::new("iq")
                .attr("from", "s.whatsapp.net")
                .attr("type", "set")
                .attr("id", format!("offer-{}", self.id))
                .attr("xmlns", "md")
                .attr("t", now)
                .children([NodeBuilder::new("pair-device").children(refs).build()])
                .build();
            self.send(&offer).await?;
        }
        while let Some(frame) = self.frame().await? {
            let node = self.open(frame)?;
            self.answer(&node).await?;
        }
        Ok(())
    }

    fn mark_logged_in(&self) {
        let mut conns = self.server.0.conns.lock().expect("lock");
        if let Some(c) = conns.iter_mut().find(|c| c.id == self.id) {
            c.logged_in = true;
        }
        let mut seen = self.server.0.seen.lock().expect("lock");
        seen.live += 1;
        seen.max_live = seen.max_live.max(seen.live);
    }

    /// What the server says to one stanza from the client.
    async fn answer(&mut self, node: &Node) -> anyhow::Result<()> {
        let attrs =
            |k: &str| -> Option<String> { node.attrs().optional_string(k).map(|v| v.into_owned()) };
        if node.tag == "message" {
            return self.message(node).await;
        }
        if node.tag != "iq" {
            return Ok(());
        }
        let (Some(id), Some(kind)) = (attrs("id"), attrs("type")) else {
            return Ok(());
        };
        if kind == "result" && id.starts_with("pair-") {
            // The device signed its identity: WhatsApp restarts the stream (515) and the
            // device logs in.
            let restart = NodeBuilder::new("stream:error").attr("code", "515").build();
            self.send(&restart).await?;
            return Ok(());
        }
        if kind != "get" && kind != "set" {
            return Ok(());
        }
        let xmlns = attrs("xmlns").unwrap_or_default();
        self.server
            .0
            .seen
            .lock()
            .expect("lock")
            .iqs
            .push(xmlns.clone());
        let reply = NodeBuilder::new("iq")
            .attr("from", "s.whatsapp.net")
            .attr("id", id);
        let reply = match xmlns.as_str() {
            // A new account's app state: every collection asked for is there, and empty.
            "w:sync:app:state" => {
                let names: Vec<Node> = node
                    .get_optional_child("sync")
                    .map(|s| {
                        s.get_children_by_tag("collection")
                            .filter_map(|c| c.attrs().optional_string("name"))
                            .map(|n| {
                                NodeBuilder::new("collection")
                                    .attr("name", n.into_owned())
                                    .build()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                reply
                    .attr("type", "result")
                    .children([NodeBuilder::new("sync").children(names).build()])
                    .build()
            }
            "usync" => reply
                .attr("type", "result")
                .children([NodeBuilder::new("usync")
                    .children([NodeBuilder::new("list")
                        .children(users_of(node, &["usync", "list"]).into_iter().map(|jid| {
                            // Every user has one device: the phone.
                            NodeBuilder::new("user")
                                .attr("jid", jid)
                                .children([NodeBuilder::new("devices")
                                    .children([NodeBuilder::new("device-list")
                                        .children([NodeBuilder::new("device")
                                            .attr("id", "0")
                                            .build()])
                                        .build()])
                                    .build()])
                                .build()
                        }))
                        .build()])
                    .build()])
                .build(),
            // The pre-key bundles of the devices a message goes to.
            "encrypt" if node.get_optional_child("key").is_some() => {
                let users = users_of(node, &["key"]);
                let mut phones = self.server.0.phones.lock().await;
                let bundles: Vec<Node> = users
                    .into_iter()
                    .map(|jid| {
                        let phone = phones
                            .entry(jid.user.to_string())
                            .or_insert_with(Phone::new);
                        PreKeyBundleUserNode::from_bundle(jid.clone(), &phone.bundle, None)
                            .expect("bundle node")
                            .into_node()
                    })
                    .collect();
                drop(phones);
                reply
                    .attr("type", "result")
                    .children([NodeBuilder::new("list").children(bundles).build()])
                    .build()
            }
            // Our device publishes its pre-keys: keep the bundle a phone needs to write to it.
            "encrypt" if node.get_optional_child("skey").is_some() => {
                *self.server.0.uploaded.lock().expect("lock") = uploaded_bundles(node)?;
                reply.attr("type", "result").build()
            }
            // Where media goes: one upload host.
            "w:m" => reply
                .attr("type", "result")
                .children([NodeBuilder::new("media_conn")
                    .attr("auth", "fake-media-auth")
                    .attr("ttl", "3600")
                    .attr("max_buckets", "12")
                    .children([NodeBuilder::new("host")
                        .attr("hostname", "mmg.pregonero-fake.test")
                        .build()])
                    .build()])
                .build(),
            // Pairing by phone number: the server's ref for the code the library made.
            "md" if node
                .get_optional_child("link_code_companion_reg")
                .is_some_and(|r| {
                    r.attrs().optional_string("stage").as_deref() == Some("companion_hello")
                }) =>
            {
                reply
                    .attr("type", "result")
                    .children([NodeBuilder::new("link_code_companion_reg")
                        .children([NodeBuilder::new("link_code_pairing_ref")
                            .bytes(format!("pregonero-code-ref-{}", self.id).into_bytes())
                            .build()])
                        .build()])
                    .build()
            }
            "w:p" | "passive" | "md" => reply.attr("type", "result").build(),
            _ if kind == "set" => reply.attr("type", "result").build(),
            _ => reply
                .attr("type", "error")
                .children([NodeBuilder::new("error")
                    .attr("code", "404")
                    .attr("text", "item-not-found")
                    .build()])
                .build(),
        };
        self.send(&reply).await
    }

    /// A message from the device: the server acks it (or refuses it), and the recipient's phone
    /// reports it delivered and read.
    async fn message(&mut self, node: &Node) -> anyhow::Result<()> {
        let attr = |k: &str| node.attrs().optional_string(k).map(|v| v.into_owned());
        let (Some(id), Some(to)) = (attr("id"), attr("to")) else {
            return Ok(());
        };
        let to_jid: Jid = to.parse()?;
        // One <enc> per device: under <participants><to jid=…>, or directly for one device.
        let mut parts: Vec<(Jid, &Node)> = Vec::new();
        for child in node.children().into_iter().flatten() {
            if child.tag == "enc" {
                parts.push((to_jid.clone(), child));
            }
            for dest in child.get_children_by_tag("to") {
                let Some(jid) = dest.attrs().optional_jid("jid") else {
                    continue;
                };
                for e in dest.get_children_by_tag("enc") {
                    parts.push((jid.clone(), e));
                }
            }
        }
        let enc_type = |e: &Node| {
            e.attrs()
                .optional_string("type")
                .unwrap_or_default()
                .into_owned()
        };
        let enc: Vec<String> = parts.iter().map(|(_, e)| enc_type(e)).collect();
        let mut read = None;
        if let Some((_, part)) = parts.iter().find(|(j, _)| j.user == to_jid.user) {
            let from = ProtocolAddress::new(PHONE_USER, u32::from(DEVICE_ID).into());
            let mut phones = self.server.0.phones.lock().await;
            let phone = phones
                .entry(to_jid.user.to_string())
                .or_insert_with(Phone::new);
            let bytes = content_bytes(part).to_vec();
            read = Some(match phone.decrypt(&from, &enc_type(part), &bytes).await {
                Ok(m) => describe(&m),
                Err(e) => format!("undecryptable: {e:#}"),
            });
        }
        self.server
            .0
            .seen
            .lock()
            .expect("lock")
            .messages
            .push(WireMessage {
                id: id.clone(),
                to: to_jid.user.to_string(),
                kind: attr("type").unwrap_or_default(),
                enc,
                read,
            });
        let answer = *self.server.0.answer.lock().expect("lock");
        if answer == Answer::Silent {
            return Ok(());
        }
        let now = chrono::Utc::now().timestamp().to_string();
        let mut ack = NodeBuilder::new("ack")
            .attr("class", "message")
            .attr("id", id.clone())
            .attr("from", to_jid.clone())
            .attr("t", now.clone());
        if answer == Answer::Refuse {
            ack = ack.attr("error", "463");
        }
        self.send(&ack.build()).await?;
        if answer == Answer::Read {
            for kind in [None, Some("read")] {
                let mut receipt = NodeBuilder::new("receipt")
                    .attr("from", to_jid.clone())
                    .attr("id", id.clone())
                    .attr("t", now.clone());
                if let Some(kind) = kind {
                    receipt = receipt.attr("type", kind);
                }
                self.send(&receipt.build()).await?;
            }
        }
        Ok(())
    }

    /// The Noise handshake, as the responder: the client's static key and its login payload.
    async fn handshake(&mut self) -> anyhow::Result<([u8; 32], Vec<u8>)> {
        let closed = || anyhow::anyhow!("closed during the handshake");
        let hello = self.frame().await?.ok_or_else(closed)?;
        let hello = wa::HandshakeMessage::decode_from_slice(&hello)?
            .client_hello
            .into_option()
            .ok_or_else(|| anyhow::anyhow!("no client hello"))?;
        let key = |v: Option<Vec<u8>>| -> anyhow::Result<[u8; 32]> {
            v.and_then(|v| v.try_into().ok())
                .ok_or_else(|| anyhow::anyhow!("not a 32-byte key"))
        };
        let client_eph = key(hello.ephemeral.clone())?;
        let eph = KeyPair::generate(&mut rand10::rng());
        let eph_pub = key(Some(eph.public_key.public_key_bytes().to_vec()))?;
        let identity = &self.server.0.identity;
        let static_pub = key(Some(identity.public_key.public_key_bytes().to_vec()))?;
        let ik = hello.r#static.is_some();
        let (client_static, payload, noise) =
            if let (Some(s), Some(p)) = (hello.r#static.clone(), hello.payload.clone()) {
                // IK: the client already knows our static key (from the chain it cached).
                let mut noise =
                    NoiseHandshake::new(NOISE_PATTERN_IK, &WA_CONN_HEADER).map_err(noise_err)?;
                noise.authenticate(&static_pub);
                noise.authenticate(&client_eph);
                noise
                    .mix_shared_secret(identity.private_key.serialize(), &client_eph)
                    .map_err(noise_err)?;
                let client_static = key(Some(noise.decrypt(&s).map_err(noise_err)?))?;
                noise
                    .mix_shared_secret(identity.private_key.serialize(), &client_static)
                    .map_err(noise_err)?;
                let payload = noise.decrypt(&p).map_err(noise_err)?;
                noise.authenticate(&eph_pub);
                noise
                    .mix_shared_secret(eph.private_key.serialize(), &client_eph)
                    .map_err(noise_err)?;
                noise
                    .mix_shared_secret(eph.private_key.serialize(), &client_static)
                    .map_err(noise_err)?;
                let cert = noise
                    .encrypt(&self.server.0.cert_chain)
                    .map_err(noise_err)?;
                self.server_hello(eph_pub, None, cert).await?;
                (client_static, payload, noise)
            } else {
                let mut noise =
                    NoiseHandshake::new(NOISE_PATTERN_XX, &WA_CONN_HEADER).map_err(noise_err)?;
                noise.authenticate(&client_eph);
                noise.authenticate(&eph_pub);
                noise
                    .mix_shared_secret(eph.private_key.serialize(), &client_eph)
                    .map_err(noise_err)?;
                let sealed_static = noise.encrypt(&static_pub).map_err(noise_err)?;
                noise
                    .mix_shared_secret(identity.private_key.serialize(), &client_eph)
                    .map_err(noise_err)?;
                let cert = noise
                    .encrypt(&self.server.0.cert_chain)
                    .map_err(noise_err)?;
                self.server_hello(eph_pub, Some(sealed_static), cert)
                    .await?;
                let finish = self.frame().await?.ok_or_else(closed)?;
                let finish = wa::HandshakeMessage::decode_from_slice(&finish)?
                    .client_finish
                    .into_option()
                    .ok_or_else(|| anyhow::anyhow!("no client finish"))?;
                let client_static = key(Some(
                    noise
                        .decrypt(finish.r#static.as_deref().unwrap_or_default())
                        .map_err(noise_err)?,
                ))?;
                noise
                    .mix_shared_secret(eph.private_key.serialize(), &client_static)
                    .map_err(noise_err)?;
                let payload = noise
                    .decrypt(finish.payload.as_deref().unwrap_or_default())
                    .map_err(noise_err)?;
                (client_static, payload, noise)
            };
        // The initiator writes with the first key, so we read with it.
        let (read, write) = noise.finish().map_err(noise_err)?;
        self.ciphers = Some((read, 0, write, 0));
        let mut seen = self.server.0.seen.lock().expect("lock");
        seen.handshakes += 1;
        seen.ik += usize::from(ik);
        Ok((client_static, payload))
    }

    async fn server_hello(
        &self,
        eph: [u8; 32],
        sealed_static: Option<Vec<u8>>,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        let hello = wa::HandshakeMessage {
            server_hello: buffa::MessageField::some(wa::handshake_message::ServerHello {
                ephemeral: Some(eph.to_vec()),
                r#static: sealed_static,
                payload: Some(payload),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.raw(&hello.encode_to_vec()).await
    }
}

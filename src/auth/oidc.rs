//! OpenID Connect against Keycloak (or any certified provider): discovery, authorization code
//! with PKCE, ID token verification, refresh, RP-initiated logout, and verification of access
//! tokens sent as `Authorization: Bearer`.
//!
//! The provider's keys (JWKS) are cached; a token signed with a key id the cache does not know
//! makes one refetch (at most every [`JWKS_MIN_REFETCH`]), so key rotation needs no restart.
use std::{sync::Arc, time::Duration};

use anyhow::{Context, anyhow};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndSessionUrl, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, LogoutRequest, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
    core::{
        CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet,
    },
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::RwLock;

use super::Role;
use crate::{clock::Clock, config::OidcSettings};

/// A token with an unknown key id refetches the JWKS at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(2);
/// Clock skew tolerated on `exp` of bearer tokens.
const LEEWAY_SECS: i64 = 30;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why an OIDC step failed; each maps to a stable error code.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered badly.
    #[error("the OpenID provider is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The code exchange was refused (replayed, expired or forged code).
    #[error("the OpenID provider refused the authorization code: {0}")]
    CodeRejected(String),
    /// The refresh token was refused (session ended at the provider).
    #[error("the OpenID provider refused to refresh the session: {0}")]
    RefreshRejected(String),
    /// The ID or access token has expired.
    #[error("the token has expired")]
    Expired,
    /// The ID token's nonce is not the one this login sent.
    #[error("the ID token's nonce does not match this login")]
    NonceMismatch,
    /// Signature, issuer, audience or shape is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// What a verified token says about the user.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `sub`.
    pub subject: String,
    /// `email`, if present.
    pub email: Option<String>,
    /// `name`, else `preferred_username`, else the subject.
    pub name: String,
    /// Strongest of our roles found in the configured claims.
    pub role: Option<Role>,
}

/// Tokens from a code exchange or a refresh.
pub struct Tokens {
    /// Who logged in.
    pub identity: Identity,
    /// The raw ID token (kept for `id_token_hint` at logout).
    pub id_token: Option<String>,
    /// The refresh token, if the provider issued one.
    pub refresh_token: Option<SecretString>,
    /// When the access token expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An authorization request to send the browser to.
pub struct LoginStart {
    /// The provider's authorization URL.
    pub url: String,
    /// `state` (the key of the pending login).
    pub state: String,
    /// PKCE verifier, kept server-side until the callback.
    pub pkce_verifier: String,
    /// Nonce expected in the ID token.
    pub nonce: String,
}

struct Discovered {
    client: Client,
    issuer: String,
    jwks_url: String,
    end_session: Option<EndSessionUrl>,
}

struct Keys {
    core: CoreJsonWebKeySet,
    jwt: JwkSet,
    fetched: std::time::Instant,
}

/// The OIDC relying party; cheap to clone.
#[derive(Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

struct Inner {
    settings: OidcSettings,
    issuer_url: String,
    client_secret: SecretString,
    redirect_url: String,
    post_logout_url: String,
    http: reqwest::Client,
    clock: Clock,
    discovered: RwLock<Option<Arc<Discovered>>>,
    keys: RwLock<Option<Arc<Keys>>>,
}

impl Oidc {
    /// A relying party for `settings`, or `None` in local mode (no issuer configured).
    /// Nothing is fetched until first use, so the server starts while the provider is down.
    pub fn new(
        settings: &OidcSettings,
        public_base_url: &str,
        clock: Clock,
    ) -> anyhow::Result<Option<Self>> {
        let Some(issuer_url) = settings.issuer_url.clone() else {
            return Ok(None);
        };
        let client_secret = settings
            .client_secret
            .clone()
            .context("oidc.client_secret is required with oidc.issuer_url")?;
        // The token endpoint must not be followed through redirects (SSRF), per openidconnect's docs.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Some(Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                issuer_url: issuer_url.trim_end_matches('/').to_owned(),
                client_secret,
                redirect_url: format!("{public_base_url}/auth/callback"),
                post_logout_url: format!("{public_base_url}/"),
                http,
                clock,
                discovered: RwLock::new(None),
                keys: RwLock::new(None),
            }),
        }))
    }

    /// The redirect URI registered at the provider (`<public_url>/auth/callback`).
    pub fn redirect_url(&self) -> &str {
        &self.inner.redirect_url
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.inner.discovered.read().await.as_ref() {
            return Ok(d.clone());
        }
        let mut slot = self.inner.discovered.write().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(self.discover().await.map_err(OidcError::Unavailable)?);
        *slot = Some(d.clone());
        Ok(d)
    }

    async fn discover(&self) -> anyhow::Result<Discovered> {
        let issuer = IssuerUrl::new(self.inner.issuer_url.clone()).context("oidc.issuer_url")?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.inner.http)
            .await
            .map_err(|e| anyhow!("discovery at {} failed: {e}", self.inner.issuer_url))?;
        let jwks_url = metadata.jwks_uri().url().to_string();
        let end_session = metadata.additional_metadata().end_session_endpoint.clone();
        let issuer = metadata.issuer().to_string();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.inner.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.inner.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(RedirectUrl::new(self.inner.redirect_url.clone())?);
        tracing::info!(issuer = %issuer, "OpenID provider discovered");
        Ok(Discovered {
            client,
            issuer,
            jwks_url,
            end_session,
        })
    }

    /// The cached keys, fetched on first use; `refetch` asks for fresh ones (rate limited).
    async fn keys(&self, refetch: bool) -> Result<Arc<Keys>, OidcError> {
        if let Some(k) = self.inner.keys.read().await.as_ref()
            && (!refetch || k.fetched.elapsed() < JWKS_MIN_REFETCH)
        {
            return Ok(k.clone());
        }
        let d = self.discovered().await?;
        let mut slot = self.inner.keys.write().await;
        if let Some(k) = slot.as_ref()
            && (!refetch || k.fetched.elapsed() < JWKS_MIN_REFETCH)
        {
            return Ok(k.clone());
        }
        let body = self
            .inner
            .http
            .get(&d.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| OidcError::Unavailable(anyhow!("JWKS fetch failed: {e}")))?
            .bytes()
            .await
            .map_err(|e| OidcError::Unavailable(anyhow!("JWKS fetch failed: {e}")))?;
        let keys = Arc::new(Keys {
            core: serde_json::from_slice(&body)
                .map_err(|e| OidcError::Unavailable(anyhow!("JWKS is not valid: {e}")))?,
            jwt: serde_json::from_slice(&body)
                .map_err(|e| OidcError::Unavailable(anyhow!("JWKS is not valid: {e}")))?,
            fetched: std::time::Instant::now(),
        });
        tracing::info!(
            keys = keys.jwt.keys.len(),
            refetch,
            "OpenID provider keys fetched"
        );
        *slot = Some(keys.clone());
        Ok(keys)
    }

    /// Starts a login: the URL to send the browser to, with PKCE (S256), state and nonce.
    pub async fn start_login(&self) -> Result<LoginStart, OidcError> {
        let d = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = d.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.inner.settings.scopes {
            req = req.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(LoginStart {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Exchanges the callback's code (with the PKCE verifier) and verifies the ID token.
    pub async fn finish_login(
        &self,
        code: &str,
        pkce_verifier: String,
        nonce: &str,
    ) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let response = d
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Unavailable(e.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request_async(&self.inner.http)
            .await
            .map_err(|e| OidcError::CodeRejected(describe_request_error(&e)))?;
        let id_token = response
            .id_token()
            .ok_or_else(|| OidcError::Invalid("the token response has no ID token".into()))?;
        let identity = self
            .verify_id_token(&d, id_token, Some(nonce), response.access_token().secret())
            .await?;
        Ok(Tokens {
            identity,
            id_token: Some(id_token.to_string()),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            expires_at: response.expires_in().map(|d| {
                self.inner.clock.now() + chrono::Duration::from_std(d).unwrap_or_default()
            }),
        })
    }

    /// Uses a refresh token; the provider may rotate it and return a new ID token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, OidcError> {
        let d = self.discovered().await?;
        let token = RefreshToken::new(refresh_token.to_owned());
        let response = d
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Unavailable(e.into()))?
            .request_async(&self.inner.http)
            .await
            .map_err(|e| OidcError::RefreshRejected(describe_request_error(&e)))?;
        let access = response.access_token().secret();
        let identity = match response.id_token() {
            Some(id) => self.verify_id_token(&d, id, None, access).await?,
            None => self.verify_access_token(access).await?,
        };
        Ok(Tokens {
            identity,
            id_token: response.id_token().map(ToString::to_string),
            refresh_token: response
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
            expires_at: response.expires_in().map(|d| {
                self.inner.clock.now() + chrono::Duration::from_std(d).unwrap_or_default()
            }),
        })
    }

    async fn verify_id_token(
        &self,
        d: &Discovered,
        id_token: &CoreIdToken,
        nonce: Option<&str>,
        access_token: &str,
    ) -> Result<Identity, OidcError> {
        let mut keys = self.keys(false).await?;
        for attempt in 0..2 {
            let clock = self.inner.clock.clone();
            let verifier = CoreIdTokenVerifier::new_confidential_client(
                ClientId::new(self.inner.settings.client_id.clone()),
                ClientSecret::new(self.inner.client_secret.expose_secret().to_owned()),
                IssuerUrl::new(d.issuer.clone()).map_err(|e| OidcError::Invalid(e.to_string()))?,
                keys.core.clone(),
            )
            .set_time_fn(move || clock.now());
            let result = match nonce {
                Some(n) => id_token
                    .claims(&verifier, &Nonce::new(n.to_owned()))
                    .map(|_| ()),
                // Refreshed ID tokens carry the original nonce or none; only the signature
                // and claims are checked.
                None => id_token
                    .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                    .map(|_| ()),
            };
            use openidconnect::{ClaimsVerificationError as C, SignatureVerificationError as S};
            match result {
                Ok(()) => break,
                Err(C::SignatureVerification(S::NoMatchingKey)) if attempt == 0 => {
                    keys = self.keys(true).await?;
                }
                Err(C::Expired(_)) => return Err(OidcError::Expired),
                Err(C::InvalidNonce(_)) => return Err(OidcError::NonceMismatch),
                Err(e) => return Err(OidcError::Invalid(e.to_string())),
            }
        }
        // Verified: read every claim, including the ones the library has no type for (roles).
        let mut claims = jwt_payload(&id_token.to_string())?;
        if self.role_from(&claims).is_none()
            && let Ok(at) = self.verified_claims(access_token).await
        {
            // Keycloak puts roles in the access token only, unless a mapper adds them to the ID token.
            merge_missing(&mut claims, at);
        }
        Ok(self.identity(&claims))
    }

    /// Verifies a Keycloak access token (`Authorization: Bearer`): RS256 signature by the
    /// realm's keys, `iss`, `aud` (`oidc.audience`, default the client id) and `exp`.
    pub async fn verify_access_token(&self, token: &str) -> Result<Identity, OidcError> {
        let claims = self.verified_claims(token).await?;
        Ok(self.identity(&claims))
    }

    async fn verified_claims(&self, token: &str) -> Result<Value, OidcError> {
        let d = self.discovered().await?;
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| OidcError::Invalid("the token has no key id".into()))?;
        let mut keys = self.keys(false).await?;
        if keys.jwt.find(&kid).is_none() {
            keys = self.keys(true).await?;
        }
        let jwk = keys
            .jwt
            .find(&kid)
            .ok_or_else(|| OidcError::Invalid(format!("no key `{kid}` in the provider's JWKS")))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| OidcError::Invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&d.issuer]);
        let audience = self
            .inner
            .settings
            .audience
            .clone()
            .unwrap_or_else(|| self.inner.settings.client_id.clone());
        validation.set_audience(&[audience]);
        // `exp` is checked below against the server's clock (which tests can move).
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map_err(|e| OidcError::Invalid(e.to_string()))?;
        let exp = data.claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        if exp + LEEWAY_SECS <= self.inner.clock.now().timestamp() {
            return Err(OidcError::Expired);
        }
        Ok(data.claims)
    }

    fn identity(&self, claims: &Value) -> Identity {
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let subject = str_claim("sub").unwrap_or_default();
        Identity {
            email: str_claim("email"),
            name: str_claim("name")
                .or_else(|| str_claim("preferred_username"))
                .unwrap_or_else(|| subject.clone()),
            role: self.role_from(claims),
            subject,
        }
    }

    /// The strongest of our roles under the configured claim paths.
    fn role_from(&self, claims: &Value) -> Option<Role> {
        let client_id = &self.inner.settings.client_id;
        self.inner
            .settings
            .role_claims
            .iter()
            .flat_map(|path| {
                let path = path.replace("{client_id}", client_id);
                let mut node = claims;
                for part in path.split('.') {
                    node = node.get(part).unwrap_or(&Value::Null);
                }
                node.as_array().cloned().unwrap_or_default()
            })
            .filter_map(|v| v.as_str().and_then(Role::parse))
            .max()
    }

    /// The provider's logout URL for the browser (RP-initiated logout), if it has one.
    pub async fn logout_url(&self, id_token: Option<&str>) -> Option<String> {
        let d = self.discovered().await.ok()?;
        let mut request = LogoutRequest::from(d.end_session.clone()?)
            .set_client_id(ClientId::new(self.inner.settings.client_id.clone()))
            .set_post_logout_redirect_uri(
                PostLogoutRedirectUrl::new(self.inner.post_logout_url.clone()).ok()?,
            );
        if let Some(hint) = id_token.and_then(|t| t.parse::<CoreIdToken>().ok()) {
            request = request.set_id_token_hint(&hint);
        }
        Some(request.http_get_url().to_string())
    }
}

/// The payload of a JWT whose signature was already checked.
fn jwt_payload(token: &str) -> Result<Value, OidcError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| OidcError::Invalid("not a JWT".into()))?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| OidcError::Invalid(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| OidcError::Invalid(e.to_string()))
}

fn merge_missing(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (k, v) in from {
            into.entry(k).or_insert(v);
        }
    }
}

/// The provider's error code and description, without the request (which holds secrets).
fn describe_request_error<E: std::error::Error>(e: &E) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

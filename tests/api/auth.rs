//! Sign-in against a real OpenID provider (oidc-provider from npm, configured like a Keycloak
//! realm by `tests/oidc/provider.mjs`), Keycloak bearer tokens, API key lifecycle, local mode,
//! CSRF, the audit log, and secrets kept out of the logs.
use std::{process::Stdio, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::{StatusCode, Url, redirect::Policy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{BOT_TOKEN, Backend, LOGS, TestApp, secret, spawn_app_with, status_and_json};

const CLIENT_SECRET: &str = "test-client-secret-Kc9vQ2";
pub const LOCAL_PASSWORD: &str = "correct horse battery staple 42";

/// How long one start of the provider may take to listen (it takes about a second).
const START_WAIT: Duration = Duration::from_secs(30);
/// Starts tried before a test fails.
const START_TRIES: u32 = 3;

/// The OpenID provider process; killed when dropped.
pub struct Provider {
    child: tokio::process::Child,
    port: u16,
    app_port: u16,
    /// `http://127.0.0.1:<port>/realms/pregonero`.
    pub issuer: String,
}

impl Provider {
    /// Starts the provider (`port` 0 picks one), with the app's callback registered; `None`
    /// with a printed reason when the test script could not install it.
    ///
    /// A start that is not ready within [`START_WAIT`] is killed and tried again (up to
    /// [`START_TRIES`] times), printing what the provider wrote to stderr: once in CI a node
    /// process printed nothing for 60 s while the other tests kept running, and its stderr was
    /// thrown away, so why is unknown. A provider that never starts still fails the test, with
    /// every try's stderr.
    pub async fn start(port: u16, app_port: u16) -> Option<Self> {
        if let Ok(reason) = std::env::var("TEST_SKIP_OIDC") {
            eprintln!("SKIPPED OpenID Connect test: {reason}");
            return None;
        }
        let mut failures = Vec::new();
        for attempt in 1..=START_TRIES {
            match Self::start_once(port, app_port).await {
                Ok(provider) => return Some(provider),
                Err(why) => {
                    eprintln!("OpenID provider start {attempt}/{START_TRIES} failed: {why}");
                    failures.push(why);
                }
            }
        }
        panic!(
            "the OpenID provider did not start in {START_TRIES} tries (run `node tests/oidc/provider.mjs` to see why):\n{}",
            failures.join("\n")
        );
    }

    async fn start_once(port: u16, app_port: u16) -> Result<Self, String> {
        let dir = std::env::var("TEST_OIDC_DIR")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oidc").to_owned());
        let app = format!("http://127.0.0.1:{app_port}");
        let started = std::time::Instant::now();
        let mut child = tokio::process::Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .env("OIDC_PORT", port.to_string())
            .env("OIDC_CLIENT_SECRET", CLIENT_SECRET)
            .env("OIDC_REDIRECT_URIS", format!("{app}/auth/callback"))
            .env("OIDC_POST_LOGOUT_URIS", format!("{app}/"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run node in {dir} ({e}); scripts/services.sh installs it, or set TEST_SKIP_OIDC=<reason>")
            });
        // The last lines of stderr, kept for a failed start's message.
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let kept = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == 40 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(START_WAIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(p) = line.strip_prefix("ready ") {
                    return p.trim().parse::<u16>().ok();
                }
            }
            None
        })
        .await;
        let port = match ready {
            Ok(Some(port)) => port,
            outcome => {
                let _ = child.kill().await;
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                let what = if outcome.is_err() {
                    "not ready"
                } else {
                    "exited"
                };
                return Err(format!(
                    "{what} after {:.1} s ({status}); stderr:\n{}",
                    started.elapsed().as_secs_f64(),
                    stderr.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
                ));
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            port,
            app_port,
            issuer: format!("http://127.0.0.1:{port}/realms/pregonero"),
        })
    }

    /// Stops and starts it again on the same port: new signing key with a new `kid`, and every
    /// provider session and token forgotten.
    pub async fn restart(&mut self) {
        self.child.kill().await.expect("kill provider");
        let _ = self.child.wait().await;
        let again = Self::start(self.port, self.app_port)
            .await
            .expect("provider restarts");
        *self = again;
    }
}

/// A port that was free a moment ago (the provider must know the app's callback URL first).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A server whose browser login goes through a fresh provider.
pub async fn oidc_app() -> Option<(TestApp, Provider)> {
    let app_port = free_port();
    let provider = Provider::start(0, app_port).await?;
    let issuer = provider.issuer.clone();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.port = app_port;
        s.oidc.issuer_url = Some(issuer);
        s.oidc.client_secret = Some(CLIENT_SECRET.into());
    })
    .await;
    Some((app, provider))
}

/// A browser: keeps cookies, follows nothing by itself.
struct Browser {
    client: reqwest::Client,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
    app: String,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        Self {
            client: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(Policy::none())
                .build()
                .expect("client"),
            jar,
            app: app.address.clone(),
        }
    }

    /// The value of the session cookie the app set, if any.
    fn session_cookie(&self) -> Option<String> {
        use reqwest::cookie::CookieStore;
        let url = Url::parse(&self.app).ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|c| c.strip_prefix("pregonero_session="))
            .map(str::to_owned)
    }

    /// Follows redirects from `url`, signing in as `login` on the provider's form, until the
    /// provider sends the browser back to the app's callback; returns that URL.
    async fn to_callback(&self, url: &str, login: &str) -> Url {
        let mut url = Url::parse(url).expect("url");
        for _ in 0..20 {
            if url
                .as_str()
                .starts_with(&format!("{}/auth/callback", self.app))
            {
                return url;
            }
            let res = self.client.get(url.clone()).send().await.expect("get");
            if res.status().is_redirection() {
                url = url.join(location(&res)).expect("location");
                continue;
            }
            assert_eq!(res.status(), StatusCode::OK, "at {url}");
            let html = res.text().await.expect("html");
            let action = attr_after(&html, "action=\"").expect("a login form");
            let res = self
                .client
                .post(url.join(&action).expect("action"))
                .form(&[("prompt", "login"), ("login", login), ("password", "any")])
                .send()
                .await
                .expect("submit login");
            assert!(
                res.status().is_redirection(),
                "login form answered {}",
                res.status()
            );
            url = url.join(location(&res)).expect("location");
        }
        panic!("no callback after 20 redirects");
    }

    /// Signs in through the provider; returns the CSRF token of the new session.
    async fn login(&self, login: &str) -> String {
        let res = self.get("/auth/login").await;
        assert_eq!(res.status(), StatusCode::FOUND);
        let callback = self.to_callback(location(&res), login).await;
        let res = self.client.get(callback).send().await.expect("callback");
        assert_eq!(
            res.status(),
            StatusCode::SEE_OTHER,
            "callback answered {:?}",
            res.text().await
        );
        assert_eq!(location(&res), "/");
        let (status, me) = self.json("/auth/me").await;
        assert_eq!(status, 200, "{me}");
        me["csrf_token"].as_str().expect("csrf token").to_owned()
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.app))
            .send()
            .await
            .expect("get")
    }

    async fn json(&self, path: &str) -> (u16, Value) {
        let res = self.get(path).await;
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    async fn post(&self, path: &str, csrf: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.client.post(format!("{}{path}", self.app)).json(body);
        if let Some(csrf) = csrf {
            req = req.header("X-CSRF-Token", csrf);
        }
        let res = req.send().await.expect("post");
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }
}

fn location(res: &reqwest::Response) -> &str {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location header")
}

fn attr_after(html: &str, marker: &str) -> Option<String> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&"))
}

/// Tokens straight from the provider's token endpoint, as a machine with Keycloak credentials
/// would get them (code flow with PKCE, through the provider's login form).
async fn provider_tokens(app: &TestApp, provider: &Provider, login: &str) -> Value {
    let browser = Browser::new(app);
    let verifier = pregonero::crypto::random_urlsafe(32);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let redirect = format!("{}/auth/callback", app.address);
    let auth = Url::parse_with_params(
        &format!("{}/protocol/openid-connect/auth", provider.issuer),
        &[
            ("client_id", "pregonero"),
            ("response_type", "code"),
            ("scope", "openid profile email"),
            ("redirect_uri", redirect.as_str()),
            ("state", "machine-state"),
            ("nonce", "machine-nonce"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("auth url");
    let callback = browser.to_callback(auth.as_str(), login).await;
    let code = callback
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let res = reqwest::Client::new()
        .post(format!("{}/protocol/openid-connect/token", provider.issuer))
        .basic_auth("pregonero", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.expect("tokens")
}

#[actix_web::test]
async fn browser_login_with_code_and_pkce_then_csrf_and_logout() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    let browser = Browser::new(&app);

    // The login redirect carries PKCE S256, state and nonce.
    let res = browser.get("/auth/login?return_to=/campaigns").await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let auth = Url::parse(location(&res)).expect("url");
    let q: std::collections::HashMap<_, _> = auth.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("state") && q.contains_key("nonce") && q.contains_key("code_challenge"));
    assert!(auth.as_str().starts_with(&app_issuer(&app)));

    let callback = browser.to_callback(auth.as_str(), "alice").await;
    let res = browser.client.get(callback).send().await.expect("callback");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/campaigns");
    let cookie = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("pregonero_session="))
        .expect("session cookie")
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP here: {cookie}");

    // The user was created from the token: subject, name, email, role from realm_access.
    let (status, me) = browser.json("/auth/me").await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "operator");
    assert_eq!(me["email"], "alice@example.test");
    assert_eq!(me["name"], "Test alice");
    assert_eq!(me["via"], "session");
    let csrf = me["csrf_token"].as_str().expect("csrf").to_owned();

    // A session may read without more; a change needs the CSRF token.
    let res = browser.get("/api/v1/channels").await;
    assert_eq!(res.status(), StatusCode::OK);
    let (status, body) = browser
        .post("/api/v1/api-keys", None, &json!({"name": "ci"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("csrf-failed")));
    let (status, body) = browser
        .post("/api/v1/api-keys", Some("wrong"), &json!({"name": "ci"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("csrf-failed")));
    let (status, body) = browser
        .post("/api/v1/api-keys", Some(&csrf), &json!({"name": "ci"}))
        .await;
    assert_eq!(status, 201, "{body}");

    // Logout (CSRF too) ends the session here and hands back the provider's logout URL.
    let (status, _) = browser.post("/auth/logout", None, &json!({})).await;
    assert_eq!(status, 403);
    let (status, body) = browser.post("/auth/logout", Some(&csrf), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let logout = Url::parse(body["logout_url"].as_str().expect("logout url")).expect("url");
    assert!(logout.as_str().starts_with(&format!(
        "{}/protocol/openid-connect/logout",
        app_issuer(&app)
    )));
    let q: std::collections::HashMap<_, _> = logout.query_pairs().into_owned().collect();
    assert!(q.contains_key("id_token_hint"));
    assert_eq!(q["post_logout_redirect_uri"], format!("{}/", app.address));
    let (status, body) = browser.json("/auth/me").await;
    assert_eq!(status, 401, "{body}");

    // The provider signs the browser out too (its confirmation form, answered as a browser
    // would), so the next login asks for credentials again.
    let res = browser
        .client
        .get(logout.clone())
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.expect("html");
    let action = attr_after(&html, "action=\"").expect("logout form");
    let xsrf = attr_after(&html, "name=\"xsrf\" value=\"").expect("xsrf");
    let res = browser
        .client
        .post(logout.join(&action).expect("action"))
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await
        .expect("confirm logout");
    assert!(res.status().is_redirection(), "{}", res.status());
    assert_eq!(location(&res), format!("{}/", app.address));
    let res = browser.get("/auth/login").await;
    let mut url = Url::parse(location(&res)).expect("url");
    // Follow the provider's redirects: it must stop at its login form, not come back signed in.
    loop {
        let res = browser.client.get(url.clone()).send().await.expect("get");
        if !res.status().is_redirection() {
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.text().await.expect("html").contains("name=\"login\""));
            break;
        }
        url = url.join(location(&res)).expect("location");
        assert!(
            !url.as_str().starts_with(&app.address),
            "still signed in at the provider"
        );
    }
}

fn app_issuer(app: &TestApp) -> String {
    app.settings.oidc.issuer_url.clone().expect("issuer")
}

#[actix_web::test]
async fn wrong_state_replayed_code_and_expired_id_token_are_refused() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    let browser = Browser::new(&app);

    let (status, body) = browser.json("/auth/callback?code=abc&state=forged").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid-state"))
    );
    let (status, body) = browser
        .json("/auth/callback?error=access_denied&error_description=nope")
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("login-refused"))
    );

    // A callback works once; replayed, its state is gone.
    let res = browser.get("/auth/login").await;
    let first = browser.to_callback(location(&res), "bob").await;
    let res = browser
        .client
        .get(first.clone())
        .send()
        .await
        .expect("callback");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, body) = browser.json(&path_and_query(&first)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid-state"))
    );

    // The used code with a fresh state: the provider refuses the code.
    let res = browser.get("/auth/login").await;
    let second = browser.to_callback(location(&res), "bob").await;
    let code = param(&first, "code");
    let state = param(&second, "state");
    let (status, body) = browser
        .json(&format!("/auth/callback?code={code}&state={state}"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("code-rejected")),
        "{body}"
    );

    // An ID token that has expired by the server's clock is refused.
    let res = browser.get("/auth/login").await;
    let third = browser.to_callback(location(&res), "bob").await;
    // (8 minutes: past the ID token's 5, within the pending login's 10.)
    app.state.clock.advance(chrono::Duration::minutes(8));
    let (status, body) = browser.json(&path_and_query(&third)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("id-token-expired")),
        "{body}"
    );
}

fn param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .expect("param")
}

fn path_and_query(url: &Url) -> String {
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

#[actix_web::test]
async fn roles_come_from_keycloak_claims() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };

    let admin = Browser::new(&app);
    admin.login("admin-carol").await;
    assert_eq!(admin.json("/auth/me").await.1["role"], "admin");
    let (status, _) = admin.json("/api/v1/audit-log").await;
    assert_eq!(status, 200);

    let viewer = Browser::new(&app);
    let csrf = viewer.login("viewer-dan").await;
    assert_eq!(viewer.json("/auth/me").await.1["role"], "viewer");
    assert_eq!(
        viewer.get("/api/v1/channels").await.status(),
        StatusCode::OK
    );
    let (status, body) = viewer
        .post("/api/v1/api-keys", Some(&csrf), &json!({"name": "x"}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("read-only-role"))
    );
    let (status, body) = viewer.json("/api/v1/audit-log").await;
    assert_eq!((status, body["error"].as_str()), (403, Some("admin-only")));

    // A Keycloak user with none of our roles does not get in.
    let nobody = Browser::new(&app);
    let res = nobody.get("/auth/login").await;
    let callback = nobody.to_callback(location(&res), "norole-eve").await;
    let res = nobody.client.get(callback).send().await.expect("callback");
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body: Value = res.json().await.expect("json");
    assert_eq!(body["error"], "no-role");
}

#[actix_web::test]
async fn keycloak_bearer_tokens_and_key_rotation() {
    let Some((app, mut provider)) = oidc_app().await else {
        return;
    };
    let tokens = provider_tokens(&app, &provider, "frank").await;
    let access = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    secret(&access);
    let call = |token: String| {
        let client = app.client.clone();
        let url = format!("{}/api/v1/channels", app.address);
        async move {
            let res = client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = call(access.clone()).await;
    assert_eq!(status, 200, "{body}");
    // The user exists now, created from the token.
    let (_, me) = status_and_json(
        app.client
            .get(format!("{}/auth/me", app.address))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(
        (me["via"].as_str(), me["role"].as_str()),
        (Some("bearer"), Some("operator"))
    );

    // A tampered token fails the signature check.
    let mut parts: Vec<String> = access.split('.').map(str::to_owned).collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).expect("b64")).expect("json");
    claims["realm_access"]["roles"] = json!(["admin"]);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let (status, body) = call(parts.join(".")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid-token"))
    );

    // The provider restarts with a new signing key: an unknown `kid` makes the server refetch
    // the JWKS, so both new bearer tokens and new browser logins work without a restart here.
    provider.restart().await;
    // Refetches on unknown key ids are at most one per 2 s; the first fetch was just now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tokens = provider_tokens(&app, &provider, "frank").await;
    let rotated = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let header = |t: &str| -> Value {
        serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(t.split('.').next().expect("h"))
                .expect("b64"),
        )
        .expect("json")
    };
    assert_ne!(header(&access)["kid"], header(&rotated)["kid"]);
    let (status, body) = call(rotated.clone()).await;
    assert_eq!(status, 200, "{body}");
    Browser::new(&app).login("grace").await;
    // Tokens signed with the retired key are no longer accepted.
    let (status, _) = call(access).await;
    assert_eq!(status, 401);

    // Expired by the server's clock.
    app.state.clock.advance(chrono::Duration::hours(1));
    let (status, body) = call(rotated).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token-expired"))
    );
}

#[actix_web::test]
async fn sessions_refresh_tokens_before_they_expire() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    let browser = Browser::new(&app);
    browser.login("heidi").await;
    let db = app.inspect_db().await;
    use sea_orm::EntityTrait;
    let before = pregonero::entities::sessions::Entity::find()
        .all(&db)
        .await
        .expect("sessions");
    assert_eq!(before.len(), 1);
    let expires = before[0].token_expires_at.expect("token expiry");
    // Within a minute of the access token's expiry, the next request refreshes it.
    app.state.clock.set(expires - chrono::Duration::seconds(30));
    let (status, me) = browser.json("/auth/me").await;
    assert_eq!(status, 200, "{me}");
    let after = pregonero::entities::sessions::Entity::find()
        .all(&db)
        .await
        .expect("sessions");
    assert!(
        after[0].token_expires_at.expect("expiry") > expires,
        "tokens were refreshed"
    );
    assert_ne!(
        after[0].refresh_token, before[0].refresh_token,
        "rotated refresh token stored"
    );
}

/// A user with an API key of their own (made by the admin's key through the CLI path).
async fn user_with_key(app: &TestApp, name: &str, role: &str) -> (String, String) {
    let db = app.inspect_db().await;
    let user = pregonero::auth::repo::create_user(&db, name, role)
        .await
        .expect("user");
    let key = pregonero::auth::repo::create_api_key(&db, &user.id, "test")
        .await
        .expect("key");
    (user.id.into_string(), key)
}

#[actix_web::test]
async fn api_key_lifecycle_scopes_expiry_and_revocation() {
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let (_, key) = user_with_key(&app, "ivan", "operator").await;
    let api = |method: reqwest::Method, path: &str, token: &str, body: Option<Value>| {
        let mut req = app
            .client
            .request(method, format!("{}/api/v1/{path}", app.address))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        status_and_json(req)
    };
    let (status, created) = api(
        reqwest::Method::POST,
        "api-keys",
        &key,
        Some(json!({"name": "dashboard reader", "scopes": ["read"], "expires_in_days": 1})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = created["token"]
        .as_str()
        .expect("token shown once")
        .to_owned();
    secret(&token);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["scopes"], json!(["read"]));
    assert!(token.starts_with(created["prefix"].as_str().expect("prefix")));

    // Stored hashed: the database never holds the token.
    let db = app.inspect_db().await;
    use sea_orm::EntityTrait;
    let row = pregonero::entities::api_keys::Entity::find_by_id(id.clone())
        .one(&db)
        .await
        .expect("db")
        .expect("row");
    assert_ne!(row.token_hash, token);
    assert_eq!(row.token_hash, pregonero::crypto::hash_token(&token));

    // Read scope: GET works and is recorded, a change is refused.
    let (status, _) = api(reqwest::Method::GET, "channels", &token, None).await;
    assert_eq!(status, 200);
    let (status, body) = api(
        reqwest::Method::POST,
        "api-keys",
        &token,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient-scope"))
    );
    let (_, list) = api(reqwest::Method::GET, "api-keys", &key, None).await;
    let listed = list["items"].as_array().expect("list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed.iter().all(|k| k.get("token").is_none()),
        "tokens are never listed"
    );
    let mine = listed
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("listed");
    assert!(mine["last_used_at"].is_string(), "{mine}");

    // Bad input.
    let (status, body) = api(
        reqwest::Method::POST,
        "api-keys",
        &key,
        Some(json!({"name": "", "scopes": ["root"], "expires_in_days": 0})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(3), "{body}");

    // Expiry by the server's clock, then revocation.
    app.state.clock.advance(chrono::Duration::days(2));
    let (status, body) = api(reqwest::Method::GET, "channels", &token, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("api-key-expired"))
    );
    let (status, _) = api(
        reqwest::Method::DELETE,
        &format!("api-keys/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = api(reqwest::Method::GET, "channels", &token, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("api-key-revoked"))
    );
    let (_, shown) = api(reqwest::Method::GET, &format!("api-keys/{id}"), &key, None).await;
    assert!(shown["revoked_at"].is_string());
}

#[actix_web::test]
async fn local_mode_password_login_lockout_csrf_and_audit() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.admin_password = Some(LOCAL_PASSWORD.into());
        s.auth.login_max_failures = 5;
    })
    .await;
    let browser = Browser::new(&app);
    let (status, cfg) = browser.json("/auth/config").await;
    assert_eq!((status, cfg["mode"].as_str()), (200, Some("local")));
    let (status, body) = browser.json("/auth/login").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("oidc-not-configured"))
    );

    // Stored with argon2, never in clear.
    let db = app.inspect_db().await;
    let admin = pregonero::auth::repo::first_admin(&db)
        .await
        .expect("db")
        .expect("admin");
    let hash = admin.password_hash.expect("hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    let browser = &browser;
    let login = |user: &str, password: &str| {
        let body = json!({"username": user, "password": password});
        async move { browser.post("/auth/login", None, &body).await }
    };
    let (status, body) = login("admin", "wrong").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid-login"))
    );
    let (status, body) = login("nobody", LOCAL_PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid-login"))
    );
    let (status, body) = login("admin", LOCAL_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["role"], "admin");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_owned();
    secret(LOCAL_PASSWORD);
    secret(&csrf);
    secret(&browser.session_cookie().expect("session cookie"));

    // The session acts for the admin; CSRF is required for changes.
    let (status, body) = browser
        .post("/api/v1/api-keys", None, &json!({"name": "k"}))
        .await;
    assert_eq!((status, body["error"].as_str()), (403, Some("csrf-failed")));
    let (status, key) = browser
        .post("/api/v1/api-keys", Some(&csrf), &json!({"name": "k"}))
        .await;
    assert_eq!(status, 201);

    // Five failures from one address lock it, even with the right password afterwards (the
    // success above cleared the user name's count, not the address's).
    for _ in 0..3 {
        assert_eq!(login("admin", "guess").await.0, 401);
    }
    let (status, body) = login("admin", LOCAL_PASSWORD).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("too-many-attempts")),
        "{body}"
    );
    assert!(body["retry_after"].as_u64().is_some_and(|s| s > 0));

    // The audit log: who did what, from where, with the request id; no secret in it.
    let (status, log) = status_and_json(
        app.client
            .get(format!("{}/api/v1/audit-log", app.address))
            .bearer_auth(&app.api_key),
    )
    .await;
    assert_eq!(status, 200);
    let entries = log["items"].as_array().expect("entries");
    let created = entries
        .iter()
        .find(|e| e["action"] == "POST /api/v1/api-keys" && e["status"] == 201)
        .expect("key creation audited");
    assert_eq!(created["actor_id"], admin.id.as_str());
    assert_eq!(created["actor_kind"], "session");
    assert_eq!(created["ip"], "127.0.0.1");
    assert!(created["request_id"].is_string());
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "POST /api/v1/api-keys" && e["status"] == 403)
    );
    let failed = entries
        .iter()
        .filter(|e| e["action"] == "POST /auth/login" && e["status"] == 401)
        .count();
    assert_eq!(failed, 5, "every failed login is audited");
    let text = log.to_string();
    for secret in [
        LOCAL_PASSWORD,
        key["token"].as_str().expect("token"),
        csrf.as_str(),
    ] {
        assert!(!text.contains(secret), "a secret is in the audit log");
    }

    // OIDC mode would refuse password logins; a generated password is printed once when none is set.
    let fresh = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let db = fresh.inspect_db().await;
    let admin = pregonero::auth::repo::first_admin(&db)
        .await
        .expect("db")
        .expect("admin");
    assert!(admin.password_hash.is_some(), "a password was generated");
}

#[actix_web::test]
async fn secrets_never_reach_the_logs() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    crate::helpers::capture_logs();
    // Exercise every kind of secret: bot token, API keys, session cookie, OIDC tokens.
    app.create_bot(None).await;
    let res = app.post("api-keys", &json!({"name": "secret test"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let key: Value = res.json().await.expect("json");
    let browser = Browser::new(&app);
    let csrf = browser.login("ivy").await;
    let cookie = browser.session_cookie().expect("session cookie");
    let tokens = provider_tokens(&app, &_provider, "ivy").await;
    let access = tokens["access_token"].as_str().expect("at").to_owned();
    let refresh = tokens["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = status_and_json(
        app.client
            .get(format!("{}/api/v1/channels", app.address))
            .bearer_auth(&access),
    )
    .await;
    assert_eq!(status, 200);
    let db = app.inspect_db().await;
    use sea_orm::EntityTrait;
    let channel = pregonero::entities::channel_accounts::Entity::find()
        .one(&db)
        .await
        .expect("db")
        .expect("channel");
    assert!(
        !channel.credentials.contains(BOT_TOKEN),
        "bot token encrypted at rest"
    );
    assert!(channel.credentials.starts_with("v1:"), "with the key id");
    let session = pregonero::entities::sessions::Entity::find()
        .one(&db)
        .await
        .expect("db")
        .expect("session");
    assert!(
        session
            .refresh_token
            .as_deref()
            .is_some_and(|t| t.starts_with("v1:"))
    );

    let logs = String::from_utf8_lossy(&LOGS.lock().expect("logs")).into_owned();
    assert!(!logs.is_empty(), "logs are captured");
    let mut secrets = vec![
        BOT_TOKEN.to_owned(),
        app.api_key.clone(),
        key["token"].as_str().expect("token").to_owned(),
        CLIENT_SECRET.to_owned(),
        LOCAL_PASSWORD.to_owned(),
        csrf,
        cookie,
        access,
    ];
    if !refresh.is_empty() {
        secrets.push(refresh);
    }
    for s in &secrets {
        crate::helpers::secret(s);
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret ({}…) appears in the logs",
            &secret[..6]
        );
    }
    // The bot token's secret half alone must not appear either.
    let (_, bot_secret) = BOT_TOKEN.split_once(':').expect("token shape");
    assert!(!logs.contains(bot_secret));
}

/// With Redis, the login lockout holds on every replica: failures counted on one lock the
/// name on another, whatever the password there.
#[actix_web::test]
async fn the_login_lockout_is_shared_by_replicas_through_redis() {
    let Some(redis) = crate::helpers::redis_url() else {
        return;
    };
    let key = pregonero::crypto::Cipher::generate_key();
    let user = format!("admin{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
    let tweak = |s: &mut pregonero::config::Settings| {
        s.admin_password = Some(LOCAL_PASSWORD.into());
        s.auth.login_max_failures = 3;
        s.redis_url = Some(redis.clone().into());
        s.secret_key = Some(key.clone().into());
    };
    let a = spawn_app_with(Backend::Sqlite, tweak).await;
    let b = spawn_app_with(Backend::Sqlite, tweak).await;
    let login = |app: &crate::helpers::TestApp, user: &str, password: &str| {
        let req = app
            .client
            .post(format!("{}/auth/login", app.address))
            .json(&json!({"username": user, "password": password}));
        async move {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Act: three failures for one name on replica A.
    for _ in 0..3 {
        assert_eq!(login(&a, &user, "guess").await.0, 401);
    }

    // Assert: replica B refuses that name at once, and the address too (the right password of
    // another user there changes nothing).
    for (who, password) in [(user.as_str(), "guess"), ("admin", LOCAL_PASSWORD)] {
        let (status, body) = login(&b, who, password).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (429, Some("too-many-attempts")),
            "{who}: {body}"
        );
        assert!(
            body["retry_after"]
                .as_u64()
                .is_some_and(|s| s > 0 && s <= 900)
        );
    }
}

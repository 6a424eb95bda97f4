//! The dashboard in a real browser: `tests/e2e/dashboard.mjs` drives Debian's Chromium (through
//! `playwright-core`) against a live server, in local mode and through the OpenID provider.
use std::process::Stdio;

use crate::{
    auth::{LOCAL_PASSWORD, oidc_app},
    helpers::{Backend, TestApp, spawn_app_with},
};

/// Runs the browser script; `None` (with a printed reason) when scripts/services.sh could not
/// install Chromium or the npm packages.
async fn run_browser(app: &TestApp, env: &[(&str, &str)]) -> Option<()> {
    if let Ok(reason) = std::env::var("TEST_SKIP_BROWSER") {
        eprintln!("SKIPPED browser test: {reason}");
        return None;
    }
    let dir = std::env::var("TEST_E2E_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e").to_owned());
    let output = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&dir)
        .env("APP_URL", &app.address)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run node in {dir}: {e}; scripts/services.sh installs it, or set TEST_SKIP_BROWSER=<reason>"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "browser run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    Some(())
}

#[actix_web::test]
async fn dashboard_local_sign_in_api_keys_audit_and_sign_out() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.admin_password = Some(LOCAL_PASSWORD.into());
    })
    .await;
    run_browser(&app, &[("MODE", "local"), ("PASSWORD", LOCAL_PASSWORD)]).await;
}

#[actix_web::test]
async fn dashboard_keycloak_sign_in_and_rp_initiated_logout() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    run_browser(&app, &[("MODE", "oidc"), ("LOGIN", "admin-olga")]).await;
}

//! The dashboard in a real browser: `tests/e2e/dashboard.mjs` drives Debian's Chromium (through
//! `playwright-core`) against a live server, in local mode and through the OpenID provider;
//! `tests/e2e/campaign.mjs` runs a whole WhatsApp campaign from the dashboard against the fake
//! Cloud API.
use std::process::Stdio;

use crate::{
    auth::{LOCAL_PASSWORD, oidc_app},
    helpers::{Backend, TestApp, spawn_app_with},
};

/// Runs the browser script; `None` (with a printed reason) when scripts/services.sh could not
/// install Chromium or the npm packages.
pub(crate) async fn run_browser(app: &TestApp, script: &str, env: &[(&str, &str)]) -> Option<()> {
    if let Ok(reason) = std::env::var("TEST_SKIP_BROWSER") {
        eprintln!("SKIPPED browser test: {reason}");
        return None;
    }
    let dir = std::env::var("TEST_E2E_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e").to_owned());
    let output = tokio::process::Command::new("node")
        .arg(script)
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
    // The budgets the run measured (first-load bytes, time to interactive), for the log.
    for line in stdout.lines().filter(|l| l.starts_with("budget:")) {
        println!("{line}");
    }
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
    run_browser(
        &app,
        "dashboard.mjs",
        &[("MODE", "local"), ("PASSWORD", LOCAL_PASSWORD)],
    )
    .await;
}

#[actix_web::test]
async fn dashboard_keycloak_sign_in_and_rp_initiated_logout() {
    let Some((app, _provider)) = oidc_app().await else {
        return;
    };
    run_browser(
        &app,
        "dashboard.mjs",
        &[("MODE", "oidc"), ("LOGIN", "admin-olga")],
    )
    .await;
}

#[actix_web::test]
async fn a_whatsapp_campaign_from_the_dashboard() {
    use fakes::{FakeWhatsApp, FakeWhatsAppConfig, WindowMode};
    const NUMBER: &str = "106540352242999";
    const TOKEN: &str = "EAAGbrowser-access-token-0123456789";
    const SECRET: &str = "wa-browser-app-secret-0123456789";
    let fake = FakeWhatsApp::start(FakeWhatsAppConfig {
        window_mode: WindowMode::Off,
        ..Default::default()
    })
    .await
    .expect("fake whatsapp");
    fake.add_number(NUMBER, TOKEN, SECRET);
    let base = format!("{}/v21.0", fake.base_url());
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.admin_password = Some(LOCAL_PASSWORD.into());
        s.whatsapp.api_base_url = base;
        s.campaigns.tick_ms = 50;
    })
    .await;
    crate::helpers::secret(TOKEN);
    crate::helpers::secret(SECRET);
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("contactos.csv");
    std::fs::write(
        &csv,
        "cliente;sustantivo;grupo;telefono;notas\nAna;Sra.;VIP;600000001;llamar\n\
         Luis;Sr.;VIP;+34 600 000 002;\nEva;;General;600000003;\nMal;Sr.;VIP;12;\n",
    )
    .expect("csv");
    let image = dir.path().join("oferta.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend([0u8; 2000]);
    std::fs::write(&image, &png).expect("png");
    let fake_url = fake.base_url();
    let ran = run_browser(
        &app,
        "campaign.mjs",
        &[
            ("PASSWORD", LOCAL_PASSWORD),
            ("FAKE_URL", &fake_url),
            ("WA_NUMBER", NUMBER),
            ("WA_TOKEN", TOKEN),
            ("WA_SECRET", SECRET),
            ("CSV_PATH", csv.to_str().expect("path")),
            ("IMAGE_PATH", image.to_str().expect("path")),
        ],
    )
    .await;
    if ran.is_none() {
        return;
    }
    let mut sent: Vec<_> = fake
        .sent()
        .into_iter()
        .map(|s| (s.to.clone(), s.kind.clone(), s.body.clone()))
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "+34600000001".into(),
                "image".into(),
                Some("Hola Sra. Ana".into())
            ),
            (
                "+34600000001".into(),
                "text".into(),
                Some("Hola VIP".into())
            ),
            (
                "+34600000002".into(),
                "image".into(),
                Some("Hola Sr. Luis".into())
            ),
            (
                "+34600000002".into(),
                "text".into(),
                Some("Hola VIP".into())
            ),
            (
                "+34600000003".into(),
                "text".into(),
                Some("Hola General".into())
            ),
        ],
        "the campaign's two messages with the image, and the three of Mensajes"
    );
}

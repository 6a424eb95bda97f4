//! The dashboard: a single-page app built by Vite from `frontend/` into `frontend/dist/`
//! (`index.html`, `app.js`, `app.css`), compiled into the binary so the server needs no files
//! next to it. CI rebuilds `dist/` from the sources and fails if it differs, so the embedded
//! bundle is never stale. Each file is gzipped once, at its first request, and served with an
//! `ETag`, so a reload that changed nothing costs a `304`. No inline script or style: the CSP
//! allows only this origin.
use std::{
    hash::{Hash, Hasher},
    io::Write,
    sync::OnceLock,
};

use actix_web::{HttpRequest, HttpResponse, http::header, web};

const INDEX: &str = include_str!("../../frontend/dist/index.html");
const APP_JS: &str = include_str!("../../frontend/dist/app.js");
const APP_CSS: &str = include_str!("../../frontend/dist/app.css");

/// One embedded file, with its gzip and its entity tag made on first use.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    prepared: OnceLock<(Vec<u8>, String)>,
}

impl Asset {
    const fn new(content_type: &'static str, body: &'static str) -> Self {
        Self {
            content_type,
            body,
            prepared: OnceLock::new(),
        }
    }

    fn prepared(&self) -> &(Vec<u8>, String) {
        self.prepared.get_or_init(|| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            gz.write_all(self.body.as_bytes())
                .expect("gzip into memory");
            let gzipped = gz.finish().expect("gzip into memory");
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            self.body.hash(&mut hasher);
            (gzipped, format!("\"{:016x}\"", hasher.finish()))
        })
    }
}

static INDEX_ASSET: Asset = Asset::new("text/html; charset=utf-8", INDEX);
static JS_ASSET: Asset = Asset::new("text/javascript; charset=utf-8", APP_JS);
static CSS_ASSET: Asset = Asset::new("text/css; charset=utf-8", APP_CSS);

/// `GET /`, `/app.js`, `/app.css`.
pub fn configure(cfg: &mut crate::mount::Routes) {
    cfg.route("/", web::get().to(|req| serve(req, &INDEX_ASSET)))
        .route("/app.js", web::get().to(|req| serve(req, &JS_ASSET)))
        .route("/app.css", web::get().to(|req| serve(req, &CSS_ASSET)));
}

async fn serve(req: HttpRequest, asset: &'static Asset) -> HttpResponse {
    let (gzipped, etag) = asset.prepared();
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.content_type(asset.content_type)
        .insert_header((header::ETAG, etag.as_str()))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
        .insert_header(("Referrer-Policy", "same-origin"));
    let gzip_ok = req
        .headers()
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if unchanged {
        res.finish()
    } else if gzip_ok {
        res.insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gzipped.clone())
    } else {
        res.body(asset.body)
    }
}

//! Chart snapshots: headless Chromium (Debian's, driven over CDP by `chromiumoxide`) opens each
//! signal's chart with its owner's TradingView cookies, waits until it has rendered, captures a
//! PNG into the media library, and then the signal is delivered with its picture.
//!
//! The queue is the `signals` table itself: pending snapshots are claimed by plan priority,
//! then by arrival, with a conditional update (so replicas never take the same one), and a
//! claim whose worker died is taken back after the timeout. It survives restarts with the
//! signals, and the order is one `ORDER BY`. One browser process is shared by `concurrency`
//! workers; each capture gets a fresh browser context (one user's cookies never reach
//! another's page) that is disposed afterwards. A browser that crashed or hung is killed and
//! started again for the next capture.
use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, anyhow};
use chromiumoxide::{
    Browser, BrowserConfig,
    cdp::browser_protocol::{
        network::{CookieParam, SetCookiesParams},
        page::CaptureScreenshotFormat,
        target::{CreateBrowserContextParams, CreateTargetParams},
    },
    error::CdpError,
    handler::viewport::Viewport,
    page::ScreenshotParams,
};
use futures::StreamExt;
use tokio::sync::{Mutex, Notify};

use crate::config::SnapshotSettings;

/// Where Chromium is looked for when `signals.snapshots.chromium_path` is not set.
const CHROMIUM_CANDIDATES: [&str; 3] = [
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];
/// How often a worker with nothing to do looks at the queue (new signals also wake it).
pub(super) const IDLE_POLL: Duration = Duration::from_secs(1);
/// Longest a browser may take to start.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest closing a page and its context may take before the browser counts as hung.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A running browser: its CDP client and the task that drives it.
struct Running {
    browser: Arc<Mutex<Browser>>,
    driver: tokio::task::JoinHandle<()>,
    pid: Option<u32>,
}

/// The snapshot pool: settings, the browser, and counters for `/health` and estimates.
#[derive(Clone)]
pub struct Snapshots {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SnapshotSettings,
    executable: Option<PathBuf>,
    profile_dir: PathBuf,
    browser: Mutex<Option<Running>>,
    wake: Notify,
    active: AtomicUsize,
    /// Average capture time, in milliseconds.
    average_ms: AtomicU64,
}

impl Snapshots {
    /// The pool for `settings`; disabled (with a warning) when no Chromium is found.
    pub fn new(settings: &SnapshotSettings, data_dir: &Path) -> Self {
        let executable = settings.enabled.then(|| find_chromium(settings)).flatten();
        if settings.enabled && executable.is_none() {
            tracing::warn!(
                "chart snapshots are off: no Chromium at signals.snapshots.chromium_path or {}; \
                 signals are delivered without pictures",
                CHROMIUM_CANDIDATES.join(", ")
            );
        }
        Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                executable,
                profile_dir: data_dir.join("chromium"),
                browser: Mutex::new(None),
                wake: Notify::new(),
                active: AtomicUsize::new(0),
                average_ms: AtomicU64::new(5_000),
            }),
        }
    }

    /// Whether charts are captured.
    pub fn enabled(&self) -> bool {
        self.inner.executable.is_some()
    }

    /// A new snapshot is waiting.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Captures running now.
    pub fn active(&self) -> usize {
        self.inner.active.load(Ordering::Relaxed)
    }

    /// Seconds until a snapshot queued behind `waiting` others is done, from recent captures.
    pub fn estimated_wait(&self, waiting: u64) -> u64 {
        let per = self.inner.average_ms.load(Ordering::Relaxed);
        let rounds = waiting / self.inner.settings.concurrency.max(1) as u64 + 1;
        (rounds * per).div_ceil(1000)
    }

    /// The browser's process id, while one runs.
    pub async fn browser_pid(&self) -> Option<u32> {
        self.inner.browser.lock().await.as_ref().and_then(|r| r.pid)
    }

    /// Captures at once.
    pub fn concurrency(&self) -> usize {
        self.inner.settings.concurrency
    }

    /// Waits until a snapshot may be waiting (woken, or `IDLE_POLL` passed).
    pub(super) async fn idle(&self) {
        let _ = tokio::time::timeout(IDLE_POLL, self.inner.wake.notified()).await;
    }

    /// A capture starts (`true`) or ends (`false`), for `/health` and the estimates.
    pub(super) fn busy(&self, starting: bool) {
        if starting {
            self.inner.active.fetch_add(1, Ordering::Relaxed);
        } else {
            self.inner.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Which Chromium captures.
    pub fn executable(&self) -> Option<&Path> {
        self.inner.executable.as_deref()
    }

    /// Records how long a capture took, for the estimates.
    pub(super) fn took(&self, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        let old = self.inner.average_ms.load(Ordering::Relaxed);
        self.inner
            .average_ms
            .store((old * 4 + ms) / 5, Ordering::Relaxed);
    }

    /// Opens `url` with `cookies` (sent to the chart's host only) in a fresh browser context,
    /// waits until the chart is ready, and returns the PNG. A failure that leaves the browser
    /// in doubt (a timeout, a dead connection) kills it; the next capture starts a new one.
    pub async fn capture(
        &self,
        url: &str,
        cookies: &[(String, String)],
    ) -> anyhow::Result<Vec<u8>> {
        let settings = &self.inner.settings;
        let deadline = Duration::from_secs(settings.timeout_secs);
        // Starting a browser has its own limit (`LAUNCH_TIMEOUT`); the capture's starts after.
        let browser = self.browser().await?;
        let setup = tokio::time::timeout(deadline, async {
            let context = {
                let b = browser.lock().await;
                b.create_browser_context(CreateBrowserContextParams::default())
                    .await
                    .context("could not create a browser context")?
            };
            let target = CreateTargetParams::builder()
                .url("about:blank")
                .browser_context_id(context.clone())
                .build()
                .map_err(|e| anyhow!(e))?;
            let page = {
                let b = browser.lock().await;
                b.new_page(target).await.context("could not open a page")?
            };
            anyhow::Ok((context, page))
        })
        .await;
        let (context, page) = match setup {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                self.reap("could not open a page").await;
                return Err(e);
            }
            Err(_) => {
                self.reap("the browser did not open a page in time").await;
                return Err(anyhow!("the browser did not open a page in time"));
            }
        };
        let result = tokio::time::timeout(deadline, async {
            if !cookies.is_empty() {
                let origin = origin(url).ok_or_else(|| anyhow!("`{url}` has no host"))?;
                let params: Vec<CookieParam> = cookies
                    .iter()
                    .map(|(name, value)| {
                        let mut c = CookieParam::new(name.clone(), value.clone());
                        c.url = Some(origin.clone());
                        c.secure = Some(origin.starts_with("https://"));
                        c.http_only = Some(true);
                        c
                    })
                    .collect();
                page.execute(SetCookiesParams::new(params))
                    .await
                    .context("could not set the cookies")?;
            }
            page.goto(url).await.context("could not open the chart")?;
            loop {
                let ready = page
                    .evaluate(settings.ready_expression.as_str())
                    .await
                    .ok()
                    .and_then(|r| r.into_value::<bool>().ok())
                    .unwrap_or(false);
                if ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_millis(settings.settle_ms)).await;
            page.screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .build(),
            )
            .await
            .context("could not capture the chart")
        })
        .await;
        let closed = tokio::time::timeout(CLOSE_TIMEOUT, async {
            let _ = page.close().await;
            browser.lock().await.dispose_browser_context(context).await
        })
        .await;
        let png = match result {
            Ok(Ok(png)) => png,
            Ok(Err(e)) => {
                // A lost connection ends the driver, and the next capture starts a new browser;
                // one that stopped answering is killed here.
                if closed.is_err() {
                    self.reap("the browser stopped answering").await;
                }
                return Err(e);
            }
            Err(_) => {
                if closed.is_err() {
                    self.reap("the browser hung").await;
                }
                return Err(anyhow!(
                    "the chart was not ready within {} s",
                    settings.timeout_secs
                ));
            }
        };
        if !matches!(closed, Ok(Ok(()))) {
            self.reap("could not close a browser context").await;
        }
        Ok(png)
    }

    /// The running browser, started (again) when there is none or it exited.
    async fn browser(&self) -> anyhow::Result<Arc<Mutex<Browser>>> {
        let mut slot = self.inner.browser.lock().await;
        if let Some(running) = slot.as_ref() {
            let exited = running.driver.is_finished()
                || running
                    .browser
                    .lock()
                    .await
                    .try_wait()
                    .ok()
                    .flatten()
                    .is_some();
            if !exited {
                return Ok(running.browser.clone());
            }
            tracing::warn!(pid = ?running.pid, "the browser exited; starting a new one");
            metrics::counter!("pregonero_snapshot_browser_restarts_total").increment(1);
            if let Some(old) = slot.take() {
                old.driver.abort();
            }
        }
        let running = self.launch().await?;
        let browser = running.browser.clone();
        *slot = Some(running);
        Ok(browser)
    }

    async fn launch(&self) -> anyhow::Result<Running> {
        let settings = &self.inner.settings;
        let executable = self
            .inner
            .executable
            .as_ref()
            .ok_or_else(|| anyhow!("no Chromium"))?;
        // A profile per process: two servers on one machine never share one.
        let profile = self
            .inner
            .profile_dir
            .join(format!("profile-{}", std::process::id()));
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .no_sandbox()
            .user_data_dir(&profile)
            .window_size(settings.width, settings.height)
            .viewport(Viewport {
                width: settings.width,
                height: settings.height,
                device_scale_factor: Some(1.0),
                ..Default::default()
            })
            .launch_timeout(LAUNCH_TIMEOUT)
            .request_timeout(Duration::from_secs(settings.timeout_secs))
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .arg("--no-first-run")
            .arg("--mute-audio")
            .build()
            .map_err(|e| anyhow!(e))?;
        let (mut browser, mut handler) = Browser::launch(config)
            .await
            .with_context(|| format!("could not start {}", executable.display()))?;
        let pid = browser.get_mut_child().and_then(|c| c.as_mut_inner().id());
        let driver = tokio::spawn(async move {
            // A message the handler cannot read is its to report; a broken connection ends the
            // driver, which drops the handler (every call waiting on it fails at once) and tells
            // the next capture to start a new browser.
            while let Some(event) = handler.next().await {
                match event {
                    Ok(()) | Err(CdpError::InvalidMessage(..)) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "lost the connection to the snapshot browser");
                        break;
                    }
                }
            }
        });
        if let Some(pid) = pid {
            lower_priority(pid);
        }
        tracing::info!(?pid, "browser started for chart snapshots");
        Ok(Running {
            browser: Arc::new(Mutex::new(browser)),
            driver,
            pid,
        })
    }

    /// Kills the browser (crashed, hung or in doubt); the next capture starts a new one.
    async fn reap(&self, why: &str) {
        let Some(running) = self.inner.browser.lock().await.take() else {
            return;
        };
        tracing::warn!(pid = ?running.pid, why, "killing the snapshot browser");
        metrics::counter!("pregonero_snapshot_browser_restarts_total").increment(1);
        running.driver.abort();
        if let Ok(mut b) = tokio::time::timeout(CLOSE_TIMEOUT, running.browser.lock()).await {
            let _ = b.kill().await;
        } else if let Some(pid) = running.pid {
            // Someone still holds the browser (a hung call): kill the process itself.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// Niceness of the browser's processes: rendering a chart must never slow the webhook's
/// answers down (on 2 cores, Chromium at the same priority pushed their p99 from ~10 to ~70 ms).
const BROWSER_NICENESS: &str = "15";

/// Lowers the CPU priority of the browser and of every process it has started (the zygote its
/// renderers fork from, so later renderers inherit it). Best effort: Linux `/proc` and `renice`.
fn lower_priority(pid: u32) {
    let mut family = vec![pid];
    // Children name their parent in the 4th field of /proc/<pid>/stat (after the `(comm)`).
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let parent = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((child, parent))
        })
        .collect();
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        family.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    let ids: Vec<String> = family.iter().map(u32::to_string).collect();
    let quiet = |cmd: &mut std::process::Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let niced = quiet(
        std::process::Command::new("renice")
            .args(["-n", BROWSER_NICENESS, "-p"])
            .args(&ids),
    );
    // SCHED_IDLE: the browser runs only when nothing else wants the CPU (inherited by the
    // renderers its zygote forks later). Niceness alone still let it delay answers on 2 cores.
    let idle = ids.iter().all(|id| {
        quiet(std::process::Command::new("chrt").args(["--idle", "--all-tasks", "--pid", "0", id]))
    });
    if !niced || !idle {
        tracing::debug!(
            ?ids,
            niced,
            idle,
            "could not lower the browser's CPU priority"
        );
    }
}

/// `scheme://host[:port]` of `url`.
pub fn origin(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    parsed.host_str()?;
    Some(parsed.origin().ascii_serialization())
}

fn find_chromium(settings: &SnapshotSettings) -> Option<PathBuf> {
    match &settings.chromium_path {
        Some(path) => path.exists().then(|| path.clone()),
        None => CHROMIUM_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists()),
    }
}

//! A small async WebDriver (W3C) client for the browser tests: Debian's `chromedriver`
//! driving a headless `chromium`, spoken to with drhub's own HTTP/1.1 client
//! ([`drhub::api::request`]). Async throughout (tokio's process and sockets), so the
//! daemon the tests run on the same runtime is never blocked.
//!
//! ```ignore
//! let Some(browser) = Browser::start_or_skip().await else { return };
//! browser.goto(&format!("http://{addr}/")).await?;
//! let row = browser.wait_for_text("tr", "call-id", Duration::from_secs(5)).await?;
//! browser.screenshot(&screenshot_dir().join("status.png")).await?;
//! browser.close().await;
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The key a W3C element reference is kept under in JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long one WebDriver command may take: above the session's page-load and script
/// timeouts, so those report first.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// The session's page-load and script timeouts (WebDriver's defaults: 300 s and 30 s).
const PAGE_LOAD_MS: u64 = 30_000;
const SCRIPT_MS: u64 = 30_000;
/// How long chromedriver may take to say it is ready.
const DRIVER_READY: Duration = Duration::from_secs(10);
/// How often `wait_for` and `wait_for_text` look again.
const POLL: Duration = Duration::from_millis(100);

/// Chromium's flags. Without the background-networking ones, Chromium keeps trying to
/// reach Google's services, which this lab's closed network refuses.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
];

/// What went wrong, with enough context to read in a test's panic.
#[derive(Debug)]
pub enum BrowserError {
    /// chromedriver or chromium is not installed: the test is skipped.
    Missing(String),
    /// chromedriver answered a command with a W3C error; `error` is its code (such as
    /// `no such element`), `message` its explanation.
    WebDriver {
        command: String,
        status: u16,
        error: String,
        message: String,
    },
    /// Anything else: chromedriver unreachable or too slow, a page that never showed
    /// what was waited for, an answer of the wrong shape, a file not written.
    Failed(String),
}

impl BrowserError {
    fn is_webdriver(&self, code: &str) -> bool {
        matches!(self, BrowserError::WebDriver { error, .. } if error == code)
    }
}

impl fmt::Display for BrowserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrowserError::Missing(why) => write!(f, "{why}"),
            BrowserError::WebDriver {
                command,
                status,
                error,
                message,
            } => write!(f, "WebDriver {command}: {error} ({status}): {message}"),
            BrowserError::Failed(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for BrowserError {}

pub type Result<T> = std::result::Result<T, BrowserError>;

/// An element found on the page, as WebDriver references it; `selector` (the CSS it
/// was found by) only names it in errors.
#[derive(Clone, Debug)]
pub struct Element {
    pub id: String,
    pub selector: String,
}

impl Element {
    /// The element as an argument for [`Browser::execute`] (the script gets the DOM node).
    pub fn to_arg(&self) -> Value {
        json!({ ELEMENT_KEY: self.id })
    }

    fn from_value(value: &Value, selector: String) -> Result<Element> {
        let id = value
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| {
                BrowserError::Failed(format!(
                    "`{selector}`: not an element reference in the answer: {value}"
                ))
            })?;
        Ok(Element {
            id: id.to_owned(),
            selector,
        })
    }
}

/// Where the browser tests save their screenshots: `screenshots/` in the target dir
/// (next to the `tmp/` cargo gives integration tests), created if need be.
pub fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("screenshots");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A chromedriver with one Chromium session. [`Browser::close`] ends both; dropping it
/// without closing kills them (best effort, without waiting).
pub struct Browser {
    driver: SocketAddr,
    session: String,
    /// chromedriver, the leader of its own process group, which Chromium joins.
    child: Option<Child>,
    /// Chromium's profile and chromedriver's output; removed when done.
    dir: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or says why it cannot:
    /// [`BrowserError::Missing`] when either is not installed, other errors when they are
    /// but do not start.
    pub async fn start() -> Result<Browser> {
        let (driver, chromium) = find_tools()?;
        let dir = std::env::temp_dir().join(format!(
            "drhub-browser-{}-{}",
            std::process::id(),
            next_id()
        ));
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir_all(dir.join("profile"))
            .await
            .map_err(|e| BrowserError::Failed(format!("{}: {e}", dir.display())))?;
        let mut browser = Browser {
            driver: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            session: String::new(),
            child: None,
            dir,
        };
        // The port is found free, then given to chromedriver: another process may take
        // it in between, so try again on a new one when chromedriver cannot bind.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match browser.spawn_driver(&driver).await {
                Ok(()) => break,
                // "IPv4 port not available. Exiting..."
                Err(_) if attempt < 3 && browser.driver_output().contains("port not available") => {
                    browser.kill();
                }
                Err(e) => return Err(e),
            }
        }
        browser.new_session(&chromium).await?;
        Ok(browser)
    }

    /// [`Browser::start`] for a test: `None` after printing `SKIPPED: <why>` when the
    /// browser is not installed; panics when it is but does not start (a broken browser
    /// must fail the test, not skip it).
    pub async fn start_or_skip() -> Option<Browser> {
        match Browser::start().await {
            Ok(b) => Some(b),
            Err(BrowserError::Missing(why)) => {
                eprintln!("SKIPPED: {why}");
                None
            }
            Err(e) => panic!("the browser does not start: {e}"),
        }
    }

    async fn spawn_driver(&mut self, program: &Path) -> Result<()> {
        let port = free_port()?;
        self.driver = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let output = self.dir.join("chromedriver.out");
        let file_error =
            |e: std::io::Error| BrowserError::Failed(format!("{}: {e}", output.display()));
        let stdout = std::fs::File::create(&output).map_err(file_error)?;
        let stderr = stdout.try_clone().map_err(file_error)?;
        // --enable-chrome-logs: Chromium's own log (why it did not start, the pages'
        // console messages) goes to chromedriver's output too.
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .arg("--enable-chrome-logs")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BrowserError::Failed(format!("{}: {e}", program.display())))?;
        self.child = Some(child);

        let deadline = Instant::now() + DRIVER_READY;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(BrowserError::Failed(format!(
                        "chromedriver on port {port} exited ({status}): {}",
                        self.driver_output()
                    )));
                }
            }
            if let Ok(Ok((200, answer))) = tokio::time::timeout(
                Duration::from_secs(2),
                drhub::api::request(self.driver, "GET", "/status", None, None),
            )
            .await
            {
                if answer["value"]["ready"] == json!(true) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(BrowserError::Failed(format!(
                    "chromedriver on port {port} not ready after {DRIVER_READY:?}: {}",
                    self.driver_output()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn new_session(&mut self, chromium: &Path) -> Result<()> {
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!(
            "--user-data-dir={}",
            self.dir.join("profile").display()
        ));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "timeouts": { "pageLoad": PAGE_LOAD_MS, "script": SCRIPT_MS, "implicit": 0 },
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    },
                }
            }
        });
        let answer = self
            .send("POST", "/session".into(), Some(capabilities))
            .await
            .map_err(|e| {
                BrowserError::Failed(format!(
                    "new session with {}: {e}; chromedriver's output: {}",
                    chromium.display(),
                    self.driver_output()
                ))
            })?;
        self.session = answer["sessionId"]
            .as_str()
            .ok_or_else(|| BrowserError::Failed(format!("new session: no sessionId in {answer}")))?
            .to_owned();
        Ok(())
    }

    /// Everything chromedriver and Chromium printed so far: Chromium's log, with the
    /// pages' console messages (`CONSOLE` lines) and script errors.
    pub async fn log(&self) -> String {
        tokio::fs::read_to_string(self.dir.join("chromedriver.out"))
            .await
            .unwrap_or_default()
    }

    /// The end of what chromedriver and Chromium printed.
    fn driver_output(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("chromedriver.out")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            "(nothing)".into()
        } else {
            tail
        }
    }

    /// One WebDriver command; its `value` on success.
    async fn send(&self, method: &str, path: String, body: Option<Value>) -> Result<Value> {
        let command = format!("{method} {path}");
        let answer = tokio::time::timeout(
            COMMAND_TIMEOUT,
            drhub::api::request(self.driver, method, &path, None, body.as_ref()),
        )
        .await
        .map_err(|_| {
            BrowserError::Failed(format!(
                "WebDriver {command}: no answer from chromedriver in {COMMAND_TIMEOUT:?}"
            ))
        })?;
        let (status, mut answer) = answer.map_err(|e| {
            let why = match e {
                drhub::api::ClientError::Connect { source, .. } => {
                    format!("cannot connect: {source}")
                }
                drhub::api::ClientError::Io { source, .. } => source.to_string(),
                drhub::api::ClientError::NotHttp { .. } => "the answer is not HTTP".into(),
            };
            BrowserError::Failed(format!(
                "WebDriver {command}: chromedriver at {}: {why}",
                self.driver
            ))
        })?;
        let value = answer.get_mut("value").map(Value::take);
        match (status, value) {
            (200, Some(value)) => Ok(value),
            (_, Some(value)) if value.get("error").is_some() => Err(BrowserError::WebDriver {
                command,
                status,
                error: value["error"].as_str().unwrap_or_default().to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => Err(BrowserError::Failed(format!(
                "WebDriver {command}: unexpected answer {status}: {answer}"
            ))),
        }
    }

    /// A command on the session: `path` is relative to `/session/{id}/`.
    async fn session_send(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let path = if path.is_empty() {
            format!("/session/{}", self.session)
        } else {
            format!("/session/{}/{path}", self.session)
        };
        self.send(method, path, body).await
    }

    fn string(value: Value, what: &str) -> Result<String> {
        match value {
            Value::String(s) => Ok(s),
            other => Err(BrowserError::Failed(format!(
                "{what}: expected a string, got {other}"
            ))),
        }
    }

    /// Navigates to `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.session_send("POST", "url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    pub async fn current_url(&self) -> Result<String> {
        Self::string(self.session_send("GET", "url", None).await?, "url")
    }

    pub async fn title(&self) -> Result<String> {
        Self::string(self.session_send("GET", "title", None).await?, "title")
    }

    /// The first element matching the CSS selector; a `no such element` error if none.
    pub async fn find(&self, css: &str) -> Result<Element> {
        let body = json!({ "using": "css selector", "value": css });
        let value = self.session_send("POST", "element", Some(body)).await?;
        Element::from_value(&value, css.to_owned())
    }

    /// Every element matching the CSS selector, maybe none.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        let body = json!({ "using": "css selector", "value": css });
        match self.session_send("POST", "elements", Some(body)).await? {
            Value::Array(found) => found
                .iter()
                .enumerate()
                .map(|(i, v)| Element::from_value(v, format!("{css} [{i}]")))
                .collect(),
            other => Err(BrowserError::Failed(format!(
                "`{css}`: expected a list of elements, got {other}"
            ))),
        }
    }

    /// The element's rendered text (as the user sees it: hidden parts left out).
    pub async fn text(&self, element: &Element) -> Result<String> {
        let value = self
            .session_send("GET", &format!("element/{}/text", element.id), None)
            .await?;
        Self::string(value, &format!("text of `{}`", element.selector))
    }

    /// The element's attribute as the HTML has it (an `href` as written, not made
    /// absolute), `None` when it has none.
    pub async fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>> {
        let path = format!("element/{}/attribute/{name}", element.id);
        match self.session_send("GET", &path, None).await? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Ok(Some(other.to_string())),
        }
    }

    pub async fn click(&self, element: &Element) -> Result<()> {
        let path = format!("element/{}/click", element.id);
        self.session_send("POST", &path, Some(json!({})))
            .await
            .map(drop)
    }

    /// Runs `script` as a function body in the page (`arguments[0]`.. are `args`;
    /// elements as [`Element::to_arg`]) and returns what it returns.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.session_send("POST", "execute/sync", Some(body)).await
    }

    /// The page's HTML as it is now (with what scripts changed).
    pub async fn page_source(&self) -> Result<String> {
        Self::string(self.session_send("GET", "source", None).await?, "source")
    }

    /// Waits until an element matches `css` (looking every 100 ms).
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.find(css).await {
                Ok(e) => return Ok(e),
                Err(e) if e.is_webdriver("no such element") => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(BrowserError::Failed(format!(
                    "no element `{css}` after {timeout:?} on {}",
                    self.whereabouts().await
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until an element matching `css` has `needle` in its text (looking every
    /// 100 ms); returns that element.
    pub async fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<Element> {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        loop {
            last.clear();
            for element in self.find_all(css).await? {
                match self.text(&element).await {
                    Ok(text) if text.contains(needle) => return Ok(element),
                    Ok(text) => last.push(text),
                    // The page replaced it between the two commands: look again.
                    Err(e) if e.is_webdriver("stale element reference") => {}
                    Err(e) => return Err(e),
                }
            }
            if Instant::now() >= deadline {
                let seen = if last.is_empty() {
                    "no element matches".to_owned()
                } else {
                    let mut seen = format!("{:?}", last);
                    if seen.len() > 600 {
                        let cut = (0..=600)
                            .rev()
                            .find(|&i| seen.is_char_boundary(i))
                            .unwrap_or(0);
                        seen.truncate(cut);
                        seen.push_str("...");
                    }
                    format!("their texts: {seen}")
                };
                return Err(BrowserError::Failed(format!(
                    "no `{css}` with text {needle:?} after {timeout:?} on {} ({seen})",
                    self.whereabouts().await
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The page's URL and title, for errors.
    async fn whereabouts(&self) -> String {
        let url = self
            .current_url()
            .await
            .unwrap_or_else(|e| format!("(url unknown: {e})"));
        let title = self
            .title()
            .await
            .unwrap_or_else(|e| format!("(title unknown: {e})"));
        format!("{url} (title {title:?})")
    }

    /// Saves a PNG of the viewport to `path` (its directory created if need be).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let value = self.session_send("GET", "screenshot", None).await?;
        let encoded = Self::string(value, "screenshot")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| BrowserError::Failed(format!("screenshot: not base64: {e}")))?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| BrowserError::Failed(format!("{}: {e}", dir.display())))?;
        }
        tokio::fs::write(path, png)
            .await
            .map_err(|e| BrowserError::Failed(format!("{}: {e}", path.display())))
    }

    /// Ends the session (Chromium quits), stops chromedriver, and removes the profile.
    pub async fn close(mut self) {
        if !self.session.is_empty() {
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                self.session_send("DELETE", "", None),
            )
            .await;
            self.session.clear();
        }
        // Whatever Chromium left behind goes with chromedriver's group, killed before
        // chromedriver is reaped (so the group's id cannot have been reused).
        self.kill();
        if let Some(mut child) = self.child.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
        let _ = tokio::fs::remove_dir_all(&self.dir).await;
    }

    /// SIGKILL to chromedriver's process group: chromedriver and every Chromium process.
    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(pid) = child.id() {
                // SAFETY: plain syscall; the group is chromedriver's own (process_group(0))
                // and chromedriver is not reaped yet, so its id is still this group's.
                unsafe {
                    libc::killpg(pid as libc::pid_t, libc::SIGKILL);
                }
            }
            let _ = child.start_kill();
        }
    }
}

impl Drop for Browser {
    /// Without [`Browser::close`] (a test that failed): kills chromedriver and Chromium
    /// without waiting. The profile and chromedriver's output stay for a failed test.
    fn drop(&mut self) {
        if self.child.is_none() && !self.dir.exists() {
            return;
        }
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "browser: Chromium's profile and log (chromedriver.out, with the pages' \
                 console messages) kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// chromedriver and chromium: `/usr/bin` first, then the `PATH`.
fn find_tools() -> Result<(PathBuf, PathBuf)> {
    let driver = find_program("chromedriver");
    let chromium = find_program("chromium");
    match (driver, chromium) {
        (Some(d), Some(c)) => Ok((d, c)),
        (d, c) => {
            let missing: Vec<&str> = [("chromedriver", d.is_none()), ("chromium", c.is_none())]
                .into_iter()
                .filter_map(|(name, gone)| gone.then_some(name))
                .collect();
            Err(BrowserError::Missing(format!(
                "no browser: {} not found in /usr/bin or on PATH \
                 (apt-get install chromium chromium-driver; .ci/run does)",
                missing.join(" and ")
            )))
        }
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    let usr_bin = Path::new("/usr/bin").join(name);
    if executable(&usr_bin) {
        return Some(usr_bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BrowserError::Failed(format!("no free loopback port: {e}")))
}

fn next_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

//! A headless Chromium driven over the Chrome DevTools Protocol: the handful of commands the
//! playground test needs (evaluate, type, press a key, click, set a file input, screenshot,
//! emulate a phone), sent as JSON over a blocking WebSocket (`tungstenite`).
//!
//! Not `headless_chrome`: its build script downloads the protocol description, which this
//! machine cannot. Not `chromiumoxide`: its generated protocol crate adds minutes to every
//! clean build for five commands.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with its own throwaway profile; killed on drop.
pub struct Chromium {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Start `program` headless with a `width` x `height` window.
    pub fn launch(program: &Path, width: u32, height: u32) -> Self {
        let profile = tempfile::tempdir().expect("profile folder");
        let mut child = Command::new(program)
            .args([
                "--headless=new",
                // Root in a container cannot use Chromium's sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                &format!("--window-size={width},{height}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/...` once it is up.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(60))
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{} did not open its DevTools port", program.display()));
        Self {
            child,
            port,
            _profile: profile,
        }
    }

    /// The first page target (the `about:blank` tab it started with).
    pub fn page(&self) -> Page {
        let targets: Value =
            reqwest::blocking::get(format!("http://127.0.0.1:{}/json/list", self.port))
                .and_then(|r| r.json())
                .expect("DevTools target list");
        let url = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets}"))
            .to_string();
        let (socket, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(COMMAND_TIMEOUT))
                .expect("read timeout");
        }
        Page { socket, next_id: 0 }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One tab.
pub struct Page {
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl Page {
    /// Send `method` and wait for its result (events in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let start = Instant::now();
        while start.elapsed() < COMMAND_TIMEOUT {
            let reply = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(e) => panic!("{method}: {e}"),
            };
            let reply: Value = serde_json::from_str(reply.as_str()).expect("DevTools JSON");
            if reply["id"] != id {
                continue;
            }
            if let Some(error) = reply.get("error") {
                panic!("{method} failed: {error}");
            }
            return reply["result"].clone();
        }
        panic!("{method}: no answer within {COMMAND_TIMEOUT:?}");
    }

    /// Load `url` and wait until the document is complete.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_until(
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            "the page to load",
        );
    }

    /// The value of a JavaScript expression (promises awaited).
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluate `expression` until it is `true` (30 s at most).
    pub fn wait_until(&mut self, expression: &str, what: &str) {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < COMMAND_TIMEOUT {
            last = self.evaluate(expression);
            if last == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("waited {COMMAND_TIMEOUT:?} for {what}; last: {last}");
    }

    /// Focus the element `selector` names.
    pub fn focus(&mut self, selector: &str) {
        let found = self.evaluate(&format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.focus(); return document.activeElement === e; }})()",
            json!(selector)
        ));
        assert_eq!(found, Value::Bool(true), "cannot focus {selector}");
    }

    /// Type `text` into the focused element, as an input method would.
    pub fn type_text(&mut self, text: &str) {
        self.call("Input.insertText", json!({"text": text}));
    }

    /// Press and release `Enter` or `Tab`.
    pub fn press(&mut self, key: &str) {
        let (code, text) = match key {
            "Enter" => (13, "\r"),
            "Tab" => (9, ""),
            other => panic!("press: {other} is not supported"),
        };
        let mut down = json!({"type": "keyDown", "key": key, "code": key,
                              "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down);
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key,
                   "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}),
        );
    }

    /// Click the middle of the element `selector` names, with the mouse.
    pub fn click(&mut self, selector: &str) {
        let point = self.evaluate(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}}); \
             const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        ));
        let (x, y) = (point[0].as_f64(), point[1].as_f64());
        let (Some(x), Some(y)) = (x, y) else {
            panic!("no element {selector}: {point}");
        };
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Choose `files` in the file input `selector` names.
    pub fn set_files(&mut self, selector: &str, files: &[&Path]) {
        let root = self.call("DOM.getDocument", json!({}));
        let node = self.call(
            "DOM.querySelector",
            json!({"nodeId": root["root"]["nodeId"], "selector": selector}),
        );
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        self.call(
            "DOM.setFileInputFiles",
            json!({"files": files, "nodeId": node["nodeId"]}),
        );
    }

    /// Lay the page out as a phone of `width` x `height` CSS pixels.
    pub fn emulate_phone(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 2, "mobile": true}),
        );
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let data = shot["data"].as_str().expect("screenshot data");
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 PNG")
    }
}

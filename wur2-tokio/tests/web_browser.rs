//! The web client in a real browser: headless Chromium driven through WebDriver
//! (chromedriver, Debian's `chromium-driver`; `scripts/chromium.sh` installs it and exports
//! `WUR2_TEST_CHROMEDRIVER` and `WUR2_TEST_CHROMIUM`). Without them the test says SKIPPED
//! and passes, except with CI=true, where it fails.
//!
//! Two browser users and one raw-TCP client (JSON lines, as a bot on `nc` would speak)
//! chat in a channel and privately; a file goes from a browser to the TCP client byte-exact
//! and another back; markup in a message shows as text; the server restarts and the pages
//! reconnect and log in again by themselves. The test saves a screenshot in
//! `target/web-client.png`, and with `WUR2_UPDATE_SCREENSHOT=1` the README's
//! `docs/web-client.png`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use wur2_store::Store;
use wur2_testkit::{config, store_config};
use wur2_tokio::{Options, ServerHandle, WebOptions};

/// Longest wait for anything a user would see.
const STEP: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct-horse-battery";

/// chromedriver, stopped (by its own pid) when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn start_driver(chromedriver: &str) -> Driver {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {chromedriver}: {e}"));
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = tokio::time::Instant::now() + STEP;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

/// A headless Chromium window of `width` × `height`.
async fn browser(driver: &Driver, chromium: Option<&str>, width: u32, height: u32) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--lang=en-GB",
            format!("--window-size={width},{height}"),
        ]
    });
    if let Some(binary) = chromium {
        options["binary"] = json!(binary);
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".to_owned(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// The chat server: plain and web listeners on fixed ports, so a restarted server is
/// found where the pages left it.
async fn serve(db: &Path, chat: SocketAddr, web: SocketAddr) -> ServerHandle {
    let url = format!("sqlite://{}", db.display());
    let (store, writer) = Store::open(&url, store_config()).await.expect("open");
    tokio::spawn(writer.run());
    let listener = TcpListener::bind(chat).await.expect("bind chat");
    let mut handle =
        wur2_tokio::serve_with(listener, store, config(), Options::default()).expect("serve");
    let web_listener = TcpListener::bind(web).await.expect("bind web");
    handle
        .serve_web(web_listener, WebOptions::default())
        .expect("serve web");
    handle
}

/// Polls `script` (the body of a function returning a value) until it returns `true`.
async fn until(client: &Client, what: &str, script: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let value = client.execute(script, vec![]).await.unwrap_or(Value::Null);
        if value == Value::Bool(true) {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let page = client
                .execute(
                    "return document.getElementById('messages').innerText + ' | ' + \
                     document.getElementById('status').innerText",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            panic!("never {what}; the page shows: {page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A script that is true once a message line from `from` with exactly `text` is shown.
fn shows_message(from: &str, text: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#messages li')].some(li => \
         li.querySelector('.who')?.textContent === {from} && \
         li.querySelector('.text')?.textContent === {text});",
        from = json!(from),
        text = json!(text),
    )
}

async fn type_line(client: &Client, text: &str) {
    let input = client.find(Locator::Css("#input")).await.expect("input");
    input.send_keys(text).await.expect("type");
    client
        .find(Locator::Css("#send-form button[type=submit]"))
        .await
        .expect("send button")
        .click()
        .await
        .expect("send");
}

/// Clicks the element `css` once it is there (again if the page re-rendered it between
/// finding and clicking).
async fn click(client: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let clicked = match client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match clicked {
            Ok(()) => return,
            Err(error) if tokio::time::Instant::now() > deadline => {
                panic!("cannot click {css}: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn fill(client: &Client, css: &str, text: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("type into {css}: {e}"));
}

/// Opens the page and registers `user` through the form.
async fn register(client: &Client, web: SocketAddr, user: &str) {
    client
        .goto(&format!("http://{web}/"))
        .await
        .expect("open the page");
    until(
        client,
        "the login form",
        "return !document.getElementById('login').hidden;",
    )
    .await;
    fill(client, "#username", user).await;
    fill(client, "#password", PASSWORD).await;
    click(client, "#register-button").await;
    until(
        client,
        &format!("{user} logged in"),
        &format!(
            "return document.getElementById('status').textContent === {};",
            json!(format!("connected as {user}"))
        ),
    )
    .await;
}

/// A raw TCP client in JSON lines mode.
struct Tcp {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Tcp {
    async fn register(addr: SocketAddr, user: &str, new: bool) -> Tcp {
        let (read, write) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let mut tcp = Tcp {
            read: BufReader::new(read),
            write,
        };
        let verb = if new { "register" } else { "login" };
        tcp.send(format!("/mode json\n/{verb} {user} {PASSWORD}\n").as_bytes())
            .await;
        tcp.expect("welcome").await;
        tcp
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.expect("send");
    }

    /// The next JSON object (text lines before `/mode json` is answered are skipped).
    async fn next(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(STEP, self.read.read_line(&mut line))
                .await
                .expect("a line in time")
                .expect("read");
            assert!(n > 0, "the TCP client was closed");
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                return value;
            }
        }
    }

    async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let value = self.next().await;
            if value["type"] == kind {
                return value;
            }
        }
    }
}

/// Bytes of every value, in an order that is not a text.
fn file_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_and_a_tcp_client_chat_send_files_and_survive_a_restart() {
    let Some(chromedriver) = std::env::var("WUR2_TEST_CHROMEDRIVER")
        .ok()
        .filter(|path| !path.is_empty())
    else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but WUR2_TEST_CHROMEDRIVER is not set (scripts/chromium.sh)"
        );
        eprintln!(
            "SKIPPED: the web client's browser test needs WUR2_TEST_CHROMEDRIVER \
             (scripts/chromium.sh installs Debian's chromium and chromium-driver)"
        );
        return;
    };
    let chromium = std::env::var("WUR2_TEST_CHROMIUM").ok();
    let dir = tempfile::tempdir().expect("temporary directory");
    let db = dir.path().join("wur2.db");
    let chat: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let web: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let server = serve(&db, chat, web).await;
    let driver = start_driver(&chromedriver).await;
    let ann = browser(&driver, chromium.as_deref(), 1100, 720).await;
    // Bob is on a phone-sized screen.
    let bob = browser(&driver, chromium.as_deref(), 390, 760).await;

    register(&ann, web, "ann").await;
    register(&bob, web, "bob").await;
    let mut tess = Tcp::register(chat, "tess", true).await;

    // In Global, all three.
    type_line(&ann, "hello from the browser").await;
    until(
        &bob,
        "ann's message",
        &shows_message("ann", "hello from the browser"),
    )
    .await;
    let message = tess.expect("message").await;
    assert_eq!(message["from"], "ann");
    assert_eq!(message["text"], "hello from the browser");

    // Markup from others is text, never HTML.
    let markup =
        "look <script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\"> &amp; done";
    tess.send(format!("{markup}\n").as_bytes()).await;
    for client in [&ann, &bob] {
        until(client, "the markup as text", &shows_message("tess", markup)).await;
        let clean = client
            .execute(
                "return window.__xss === undefined && \
                 document.querySelectorAll('#messages img, #messages script').length === 0;",
                vec![],
            )
            .await
            .expect("check the page");
        assert_eq!(clean, Value::Bool(true), "markup ran or became elements");
    }

    // A channel: ann creates #rust; bob finds it in the list (on a narrow screen, behind
    // the menu) with its member count, and joins.
    fill(&ann, "#join-name", "#rust").await;
    click(&ann, "#join-form button").await;
    until(
        &ann,
        "ann in #rust",
        "return document.getElementById('view-title').textContent === '#rust';",
    )
    .await;
    click(&bob, "#menu").await;
    until(
        &bob,
        "#rust listed with 1 member",
        "return document.querySelector('[data-channel=\"#rust\"] .count')?.textContent === '1';",
    )
    .await;
    click(&bob, "[data-channel=\"#rust\"]").await;
    until(
        &bob,
        "bob in #rust",
        "return document.getElementById('view-title').textContent === '#rust';",
    )
    .await;
    until(
        &ann,
        "#rust with 2 members",
        "return document.querySelector('[data-channel=\"#rust\"] .count')?.textContent === '2';",
    )
    .await;
    type_line(&bob, "rust is fun").await;
    until(
        &ann,
        "bob's message in #rust",
        &shows_message("bob", "rust is fun"),
    )
    .await;
    // A /command typed in the input and sent with the keyboard alone (Enter).
    let input = ann.find(Locator::Css("#input")).await.expect("input");
    input
        .send_keys("/names\u{E007}")
        .await
        .expect("type /names and press Enter");
    until(
        &ann,
        "the answer to /names",
        "return document.getElementById('messages').innerText.includes('In #rust: ann, bob');",
    )
    .await;

    // Privately: ann to bob, who sees an unread count while he is in #rust.
    fill(&ann, "#dm-name", "bob").await;
    click(&ann, "#dm-form button").await;
    type_line(&ann, "psst, bob").await;
    until(
        &bob,
        "an unread count from ann",
        "return document.querySelector('[data-user=\"ann\"] .unread')?.textContent === '1';",
    )
    .await;
    click(&bob, "#menu").await;
    click(&bob, "[data-user=\"ann\"]").await;
    until(
        &bob,
        "ann's private message",
        &shows_message("ann", "psst, bob"),
    )
    .await;
    type_line(&bob, "hi ann, only you").await;
    until(
        &ann,
        "bob's private answer",
        &shows_message("bob", "hi ann, only you"),
    )
    .await;

    // The TCP client writes to ann privately; ann answers from the browser.
    tess.send(b"/msg ann from the terminal\n").await;
    until(
        &ann,
        "an unread count from tess",
        "return document.querySelector('[data-user=\"tess\"] .unread')?.textContent === '1';",
    )
    .await;
    click(&ann, "[data-user=\"tess\"]").await;
    until(
        &ann,
        "tess's private message",
        &shows_message("tess", "from the terminal"),
    )
    .await;
    type_line(&ann, "hello terminal").await;
    let dm = tess.expect("dm").await;
    assert_eq!(
        (dm["from"].as_str(), dm["text"].as_str()),
        (Some("ann"), Some("hello terminal"))
    );

    // A file from the browser to the TCP client, byte-exact.
    let upload = file_bytes(150_000, 7);
    let upload_path: PathBuf = dir.path().join("photo.bin");
    std::fs::write(&upload_path, &upload).expect("write the file");
    // Every value the upload's progress bar shows, recorded as it changes.
    ann.execute(
        "window.progressSeen = [];
         const seen = (node) => { if (node.tagName === 'PROGRESS') \
             window.progressSeen.push(Number(node.value)); };
         new MutationObserver((records) => records.forEach((record) => {
             seen(record.target);
             record.addedNodes.forEach((n) => n.querySelectorAll?.('progress').forEach(seen));
         })).observe(document.getElementById('transfers'),
             { subtree: true, childList: true, attributes: true });
         return true;",
        vec![],
    )
    .await
    .expect("watch the progress bar");
    fill(&ann, "#file", &upload_path.display().to_string()).await;
    let offer = tess.expect("file_offer").await;
    assert_eq!(
        (offer["from"].as_str(), offer["name"].as_str()),
        (Some("ann"), Some("photo.bin"))
    );
    let mut received = Vec::new();
    loop {
        let event = tess.next().await;
        match event["type"].as_str() {
            Some("file_chunk") => received.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(event["data"].as_str().expect("chunk data"))
                    .expect("base64"),
            ),
            Some("file_done") => break,
            Some("file_cancelled") => panic!("upload cancelled: {event}"),
            _ => {}
        }
    }
    assert!(received == upload, "the TCP client got the file byte-exact");
    until(
        &ann,
        "the upload confirmed",
        "return document.getElementById('messages').innerText.includes('Sent photo.bin to tess');",
    )
    .await;
    until(
        &ann,
        "the progress bar full before it goes",
        "return window.progressSeen.at(-1) === 1;",
    )
    .await;
    let progress = ann
        .execute("return window.progressSeen;", vec![])
        .await
        .expect("the progress seen");
    let progress: Vec<f64> = progress
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(
        progress.first() == Some(&0.0) && progress.last() == Some(&1.0),
        "the bar went from 0 to full: {progress:?}"
    );
    assert!(
        progress.windows(2).all(|pair| pair[0] <= pair[1]),
        "and never back: {progress:?}"
    );

    // And one back, from the TCP client to the browser, downloaded byte-exact.
    let download = file_bytes(90_000, 101);
    let mut line = format!("/send ann notes.bin {}\n", download.len()).into_bytes();
    line.extend_from_slice(&download);
    tess.send(&line).await;
    until(
        &ann,
        "a download link",
        "return document.querySelector('a.download[download=\"notes.bin\"]') !== null;",
    )
    .await;
    let fetched = ann
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const link = document.querySelector('a.download[download=\"notes.bin\"]');
             fetch(link.href).then(r => r.arrayBuffer()).then(buffer => {
               let binary = '';
               for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
               done(btoa(binary));
             }, error => done('error: ' + error));",
            vec![],
        )
        .await
        .expect("read the download");
    let fetched = base64::engine::general_purpose::STANDARD
        .decode(fetched.as_str().expect("base64 text"))
        .expect("base64");
    assert!(fetched == download, "the browser got the file byte-exact");

    // Older history on scrolling up: the join shows the last 20, the page before them
    // comes when the reader scrolls to the top (or presses the button there, which is
    // how a keyboard reaches it).
    tess.send(b"/join #hist\n").await;
    tess.expect("switched").await;
    let mut lines = String::new();
    for n in 0..30 {
        lines.push_str(&format!("history line {n}\n"));
    }
    lines.push_str("/ping stored\n");
    tess.send(lines.as_bytes()).await;
    tess.expect("pong").await;
    fill(&ann, "#join-name", "#hist").await;
    click(&ann, "#join-form button").await;
    until(
        &ann,
        "the replayed history",
        &shows_message("tess", "history line 29"),
    )
    .await;
    let replayed = ann
        .execute(
            &shows_message("tess", "history line 0").replace("return ", "return !"),
            vec![],
        )
        .await
        .expect("check the page");
    assert_eq!(
        replayed,
        Value::Bool(true),
        "only the last messages are replayed"
    );
    ann.execute(
        "const list = document.getElementById('messages'); list.scrollTop = 0; \
         if (list.scrollHeight <= list.clientHeight) document.getElementById('older').click();",
        vec![],
    )
    .await
    .expect("scroll up");
    until(
        &ann,
        "the older page",
        &shows_message("tess", "history line 0"),
    )
    .await;

    // The screenshot for the README: ann in #rust, with the conversations listed.
    click(&ann, "[data-channel=\"#rust\"]").await;
    type_line(&ann, "a file and a chat, from the browser").await;
    until(
        &ann,
        "her own line",
        &shows_message("ann", "a file and a chat, from the browser"),
    )
    .await;
    let png = ann.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    // Into target/ on every run; into docs/ (the README's) only when asked, so a test run
    // leaves the working tree as it was.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let shot = match std::env::var_os("WUR2_UPDATE_SCREENSHOT") {
        Some(_) => root.join("docs/web-client.png"),
        None => root.join("target/web-client.png"),
    };
    std::fs::create_dir_all(shot.parent().expect("a directory")).expect("its directory");
    std::fs::write(&shot, &png).unwrap_or_else(|e| panic!("save {}: {e}", shot.display()));

    // The server restarts; the pages reconnect and log in again by themselves.
    server.shutdown().await.expect("shutdown");
    until(
        &ann,
        "ann sees the connection drop",
        "return document.getElementById('status').classList.contains('down');",
    )
    .await;
    let server = serve(&db, chat, web).await;
    for (client, user) in [(&ann, "ann"), (&bob, "bob")] {
        until(
            client,
            &format!("{user} back after the restart"),
            &format!(
                "return document.getElementById('status').textContent === {};",
                json!(format!("connected as {user}"))
            ),
        )
        .await;
    }
    let mut tess = Tcp::register(chat, "tess", false).await;
    tess.send(b"/msg bob after the restart\n").await;
    until(
        &bob,
        "a private message after the restart",
        "return document.querySelector('[data-user=\"tess\"]') !== null;",
    )
    .await;
    click(&bob, "#menu").await;
    click(&bob, "[data-user=\"tess\"]").await;
    until(
        &bob,
        "tess's message",
        &shows_message("tess", "after the restart"),
    )
    .await;

    let _ = ann.close().await;
    let _ = bob.close().await;
    drop(driver);
    server.shutdown().await.expect("shutdown");
}

//! The link to the server: connect, switch to JSON lines, log in or register in one line,
//! then one task reads server lines and one writes ours (and uploads' raw bytes, which must
//! follow their `/send` line with nothing in between). It never draws and never decides
//! what a line means beyond the login answer.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use wur2_engine::json::{ServerEvent, ServerLine};
use wur2_engine::{ErrorCode, Password};

use crate::endpoint::{Endpoint, ReadHalf, WriteHalf};
use crate::token::TokenFile;

/// The code [`LoginError::Refused`] carries for a banned account (the server answers a
/// ban with a `banned` line, not an error).
const BANNED: &str = "banned";

/// How long the server has to answer a login.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Bytes of an upload read and written at once.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// Who to log in as.
#[derive(Debug)]
pub struct Credentials {
    /// The username.
    pub user: String,
    /// The password, when it was typed in this run: kept only to log in again after a
    /// reconnect (never printed, wiped on drop).
    pub password: Option<Password>,
    /// The resume token logins try first, and where it is kept (see [`crate::token`]).
    token: std::sync::Mutex<Option<Password>>,
    token_file: Option<TokenFile>,
}

impl Credentials {
    /// `user` with `password` (typed) and the token kept in `token_file`, if any.
    pub fn new(user: String, password: Option<Password>, token_file: Option<TokenFile>) -> Self {
        let token = token_file.as_ref().and_then(TokenFile::load);
        Credentials {
            user,
            password,
            token: std::sync::Mutex::new(token),
            token_file,
        }
    }

    /// Whether tokens are kept at all (a token file is known).
    pub fn keeps_tokens(&self) -> bool {
        self.token_file.is_some()
    }

    /// The resume token to log in with, if one is kept.
    pub fn token(&self) -> Option<Password> {
        self.token.lock().map_or(None, |token| token.clone())
    }

    /// Keeps a new resume token, in memory and in the token file.
    pub fn keep_token(&self, token: Password) -> std::io::Result<()> {
        if let Ok(mut kept) = self.token.lock() {
            *kept = Some(token.clone());
        }
        match &self.token_file {
            Some(file) => file.save(&token),
            None => Ok(()),
        }
    }

    /// Forgets a refused token.
    fn forget_token(&self) {
        if let Ok(mut kept) = self.token.lock() {
            *kept = None;
        }
        if let Some(file) = &self.token_file {
            file.forget();
        }
    }
}

/// Why connecting or logging in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The server could not be reached or the link broke: worth trying again.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server did not answer the login in time: worth trying again.
    #[error("the server did not answer the login in time")]
    Timeout,
    /// The server refused (wrong password, name taken, locked out): trying again with the
    /// same credentials will not help.
    #[error("{message}")]
    Refused {
        /// The stable error code.
        code: String,
        /// The server's words.
        message: String,
    },
}

impl LoginError {
    /// True when trying again later may work.
    pub fn is_temporary(&self) -> bool {
        match self {
            LoginError::Io(_) | LoginError::Timeout => true,
            LoginError::Refused { code, .. } => [
                ErrorCode::Busy,
                ErrorCode::StorageUnavailable,
                ErrorCode::ServerFull,
                ErrorCode::TooManyConnections,
            ]
            .iter()
            .any(|temporary| temporary.as_str() == code),
        }
    }
}

/// A logged-in connection, not yet split into its tasks.
pub struct Session {
    reader: BufReader<ReadHalf>,
    writer: WriteHalf,
    /// The username as registered.
    pub user: String,
    /// Our role.
    pub role: String,
    /// Logged in with the password (not a resume token): a token may be asked for.
    pub with_password: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Connects to `server`, switches to JSON lines and logs in: with the kept resume token
/// when there is one, else (or when the server refuses the token, which is then forgotten)
/// with the password; with `register`, creates the account first (only the first time,
/// reconnects log in).
pub async fn connect(
    server: &Endpoint,
    credentials: &Credentials,
    register: bool,
) -> Result<Session, LoginError> {
    if !register && let Some(token) = credentials.token() {
        match log_in(server, "resume", &credentials.user, &token).await {
            Err(LoginError::Refused { code, message }) if falls_back(&code) => {
                // A refused token is forgotten; a server that does not know `/resume` (an
                // older node, mid-upgrade) keeps it for the next.
                if code == ErrorCode::InvalidCredentials.as_str() {
                    credentials.forget_token();
                }
                if credentials.password.is_none() {
                    return Err(LoginError::Refused { code, message });
                }
            }
            other => return other,
        }
    }
    let Some(password) = &credentials.password else {
        return Err(LoginError::Refused {
            code: ErrorCode::InvalidCredentials.as_str().into(),
            message: "no password or resume token to log in with".into(),
        });
    };
    let verb = if register { "register" } else { "login" };
    let mut session = log_in(server, verb, &credentials.user, password).await?;
    session.with_password = true;
    Ok(session)
}

/// Whether a `/resume` refused with `code` is worth a login with the password: not when
/// the account is banned or locked out (the password would be refused the same way).
fn falls_back(code: &str) -> bool {
    let final_answers = [ErrorCode::LockedOut.as_str(), BANNED];
    !final_answers.contains(&code)
}

/// Connects, switches to JSON lines and sends `/<verb> <user> <secret>`; the session once
/// welcomed.
async fn log_in(
    server: &Endpoint,
    verb: &str,
    user: &str,
    secret: &Password,
) -> Result<Session, LoginError> {
    let (read, mut writer) = server.open().await?;
    let mut reader = BufReader::new(read);
    let mut hello = format!("/mode json\n/{verb} {user} {}\n", secret.expose()).into_bytes();
    let written = match writer.write_all(&hello).await {
        // TLS buffers records: they leave only on flush.
        Ok(()) => writer.flush().await,
        Err(error) => Err(error),
    };
    hello.fill(0);
    written?;
    let answer = tokio::time::timeout(LOGIN_TIMEOUT, async {
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Err(LoginError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during login",
                )));
            }
            // The banner comes before the mode switch, in text: not ours to read.
            let Ok(parsed) = ServerLine::parse(&line) else {
                continue;
            };
            match parsed.event {
                ServerEvent::Welcome { user, role, .. } => return Ok((user, role)),
                ServerEvent::Error { code, message } => {
                    return Err(LoginError::Refused { code, message });
                }
                // A banned account's login: one line, then the server closes.
                ServerEvent::Banned { by, reason, .. } => {
                    let message = format!("you are banned by {by}: {reason}");
                    let code = BANNED.to_string();
                    return Err(LoginError::Refused { code, message });
                }
                _ => {}
            }
        }
    })
    .await;
    let (user, role) = answer.map_err(|_| LoginError::Timeout)??;
    Ok(Session {
        reader,
        writer,
        user,
        role,
        with_password: false,
    })
}

/// What the writer task is asked to send.
#[derive(Debug)]
pub enum Outgoing {
    /// One line (the line break is added).
    Line(String),
    /// An upload: its `/send <to> <name> <size>` line, then exactly `size` bytes of `path`.
    Upload {
        /// This client's number for it.
        local: u64,
        /// The recipient.
        to: String,
        /// The file's one-word name.
        name: String,
        /// Its size, as announced.
        size: u64,
        /// Where to read it.
        path: PathBuf,
    },
}

/// What the connection tasks report, tagged with the connection's generation so reports
/// of an older connection are recognised after a reconnect.
#[derive(Debug)]
pub enum NetEvent {
    /// A server line (text lines that are not JSON are dropped).
    Line(ServerLine),
    /// The connection ended.
    Closed(String),
    /// Bytes of an upload written so far.
    UploadProgress {
        /// The upload's local number.
        local: u64,
        /// Bytes written.
        written: u64,
    },
    /// An upload's bytes could not all be sent as they are on disk.
    UploadFailed {
        /// The upload's local number.
        local: u64,
        /// Why.
        reason: String,
    },
}

/// Starts the reader and writer tasks of `session`; every report goes to `events` with
/// `generation`. Returns the sender for our lines.
pub fn spawn(
    session: Session,
    generation: u64,
    events: mpsc::UnboundedSender<(u64, NetEvent)>,
) -> mpsc::UnboundedSender<Outgoing> {
    let (tx, rx) = mpsc::unbounded_channel();
    let Session { reader, writer, .. } = session;
    tokio::spawn(read_lines(reader, generation, events.clone()));
    tokio::spawn(write_lines(writer, rx, generation, events));
    tx
}

async fn read_lines(
    mut reader: BufReader<ReadHalf>,
    generation: u64,
    events: mpsc::UnboundedSender<(u64, NetEvent)>,
) {
    let mut line = String::new();
    let reason = loop {
        line.clear();
        match reader.read_line(&mut line).await {
            Ok(0) => break "the server closed the connection".to_string(),
            Ok(_) => {
                if let Ok(parsed) = ServerLine::parse(&line)
                    && events.send((generation, NetEvent::Line(parsed))).is_err()
                {
                    return;
                }
            }
            Err(error) => break error.to_string(),
        }
    };
    let _ = events.send((generation, NetEvent::Closed(reason)));
}

async fn write_lines(
    mut writer: WriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    generation: u64,
    events: mpsc::UnboundedSender<(u64, NetEvent)>,
) {
    while let Some(next) = outgoing.recv().await {
        let result = match next {
            Outgoing::Line(mut line) => {
                line.push('\n');
                match writer.write_all(line.as_bytes()).await {
                    Ok(()) => writer.flush().await,
                    Err(error) => Err(error),
                }
            }
            Outgoing::Upload {
                local,
                to,
                name,
                size,
                path,
            } => {
                let report = |event| {
                    let _ = events.send((generation, event));
                };
                match upload(&mut writer, local, &to, &name, size, &path, report).await {
                    Ok(()) => writer.flush().await,
                    Err(error) => Err(error),
                }
            }
        };
        if result.is_err() {
            // The reader sees the broken link and reports it.
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Writes the `/send` line and exactly `size` bytes. A file that shrank or cannot be read
/// any more is padded with zeros (the server counts bytes; anything short would swallow
/// our next lines) and reported as failed.
async fn upload(
    writer: &mut WriteHalf,
    local: u64,
    to: &str,
    name: &str,
    size: u64,
    path: &PathBuf,
    report: impl Fn(NetEvent),
) -> std::io::Result<()> {
    writer
        .write_all(format!("/send {to} {name} {size}\n").as_bytes())
        .await?;
    let mut file = tokio::fs::File::open(path).await;
    let mut problem = file.as_ref().err().map(ToString::to_string);
    let mut buf = vec![0u8; UPLOAD_CHUNK];
    let mut written = 0u64;
    while written < size {
        let want = usize::try_from(size - written)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got = match (&mut file, &problem) {
            (Ok(file), None) => match file.read(&mut buf[..want]).await {
                Ok(0) => {
                    problem = Some("the file got shorter while it was sent".into());
                    0
                }
                Ok(n) => n,
                Err(error) => {
                    problem = Some(error.to_string());
                    0
                }
            },
            _ => 0,
        };
        let chunk = if got == 0 {
            buf[..want].fill(0);
            want
        } else {
            got
        };
        writer.write_all(&buf[..chunk]).await?;
        written += chunk as u64;
        report(NetEvent::UploadProgress { local, written });
    }
    if let Some(reason) = problem {
        report(NetEvent::UploadFailed { local, reason });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn alice() -> Credentials {
        Credentials::new("alice".into(), Some(Password::new("correct horse")), None)
    }

    /// A fake server that checks our first two lines and answers with `reply`.
    async fn fake_server(reply: &'static str) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            let mut lines = Vec::new();
            for _ in 0..2 {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                lines.push(line);
            }
            write.write_all(reply.as_bytes()).await.unwrap();
            lines
        });
        (addr, task)
    }

    #[tokio::test]
    async fn login_switches_to_json_first_and_reads_the_welcome() {
        let (addr, server) = fake_server(concat!(
            "Welcome to WUR2 chat!\nDo you have an account? (y/n)\n",
            "{\"type\":\"mode\",\"mode\":\"json\"}\n",
            "{\"type\":\"welcome\",\"user\":\"Alice\",\"role\":\"mod\",\"new\":false}\n",
        ))
        .await;
        let session = connect(&Endpoint::plain(addr.clone()), &alice(), false)
            .await
            .unwrap();
        assert_eq!(
            (session.user.as_str(), session.role.as_str()),
            ("Alice", "mod")
        );
        let lines = server.await.unwrap();
        assert_eq!(lines, vec!["/mode json\n", "/login alice correct horse\n"]);
    }

    #[tokio::test]
    async fn a_refused_login_says_why_and_is_not_retried() {
        let (addr, server) = fake_server(concat!(
            "{\"type\":\"mode\",\"mode\":\"json\"}\n",
            "{\"type\":\"error\",\"code\":\"username_taken\",\"message\":\"that username is taken\"}\n",
        ))
        .await;
        let error = connect(&Endpoint::plain(addr.clone()), &alice(), true)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "that username is taken");
        assert!(!error.is_temporary());
        assert_eq!(server.await.unwrap()[1], "/register alice correct horse\n");
    }

    #[tokio::test]
    async fn a_banned_login_is_refused_for_good_not_retried() {
        let (addr, _server) = fake_server(concat!(
            "{\"type\":\"mode\",\"mode\":\"json\"}\n",
            "{\"type\":\"banned\",\"by\":\"mo\",\"reason\":\"spam\"}\n",
        ))
        .await;
        let error = connect(&Endpoint::plain(addr.clone()), &alice(), false)
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "you are banned by mo: spam");
        assert!(!error.is_temporary());
    }

    #[tokio::test]
    async fn a_refused_token_falls_back_to_the_password_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let file = TokenFile::new(dir.path().join("token"));
        file.save(&Password::new("0123")).unwrap();
        let credentials = Credentials::new(
            "alice".into(),
            Some(Password::new("correct horse")),
            Some(file.clone()),
        );
        let (first, resumed) = fake_server(concat!(
            "{\"type\":\"mode\",\"mode\":\"json\"}\n",
            "{\"type\":\"error\",\"code\":\"invalid_credentials\",\"message\":\"invalid username or password\"}\n",
        ))
        .await;
        let (second, logged_in) = fake_server(concat!(
            "{\"type\":\"mode\",\"mode\":\"json\"}\n",
            "{\"type\":\"welcome\",\"user\":\"alice\",\"role\":\"user\",\"new\":false}\n",
        ))
        .await;
        // The two fake servers stand for one server answered twice: the first address
        // refuses the token, the client tries its password on the next attempt's address.
        let both = Endpoint::plain(format!("{first},{second}"));
        let session = connect(&both, &credentials, false).await;
        assert_eq!(resumed.await.unwrap()[1], "/resume alice 0123\n");
        assert!(file.load().is_none(), "the refused token is deleted");
        assert!(credentials.token().is_none());
        let session = session.expect("logged in with the password");
        assert!(session.with_password);
        assert_eq!(logged_in.await.unwrap()[1], "/login alice correct horse\n");
    }

    #[tokio::test]
    async fn a_busy_server_or_a_lost_link_is_worth_another_try() {
        let (addr, _server) = fake_server(
            "{\"type\":\"error\",\"code\":\"busy\",\"message\":\"the server is busy; try again\"}\n",
        )
        .await;
        assert!(
            connect(&Endpoint::plain(addr.clone()), &alice(), false)
                .await
                .unwrap_err()
                .is_temporary()
        );
        let (addr, _server) = fake_server("").await;
        assert!(
            connect(&Endpoint::plain(addr.clone()), &alice(), false)
                .await
                .unwrap_err()
                .is_temporary()
        );
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        assert!(!format!("{:?}", alice()).contains("horse"));
    }

    /// Runs an upload of `path` announced as `size` bytes, then a line; returns what the
    /// server received and what the tasks reported.
    async fn upload_through(path: PathBuf, size: u64) -> (Vec<u8>, Vec<NetEvent>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let (read, writer) = client.into_split();
        let session = Session {
            reader: BufReader::new(Box::new(read)),
            writer: Box::new(writer),
            user: "alice".into(),
            role: "user".into(),
            with_password: true,
        };
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let outgoing = spawn(session, 3, events_tx);
        outgoing
            .send(Outgoing::Upload {
                local: 1,
                to: "bob".into(),
                name: "a.bin".into(),
                size,
                path,
            })
            .unwrap();
        outgoing.send(Outgoing::Line("after".into())).unwrap();
        drop(outgoing);
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        let mut events = Vec::new();
        while let Ok((generation, event)) = events_rx.try_recv() {
            assert_eq!(generation, 3);
            events.push(event);
        }
        (received, events)
    }

    #[tokio::test]
    async fn an_upload_is_its_line_then_exactly_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (received, events) = upload_through(path, bytes.len() as u64).await;
        let mut expected = b"/send bob a.bin 200000\n".to_vec();
        expected.extend_from_slice(&bytes);
        expected.extend_from_slice(b"after\n");
        assert!(received == expected, "the bytes on the wire differ");
        assert!(matches!(
            events.last(),
            Some(NetEvent::UploadProgress {
                local: 1,
                written: 200_000
            })
        ));
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_padded_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"abc").unwrap();
        let (received, events) = upload_through(path, 5).await;
        assert_eq!(received, b"/send bob a.bin 5\nabc\0\0after\n");
        assert!(
            events
                .iter()
                .any(|event| matches!(event, NetEvent::UploadFailed { local: 1, .. }))
        );
    }

    /// A fake TLS server for `localhost` that answers the login with a welcome; returns
    /// its address and the CA (its own self-signed certificate) as a PEM file.
    async fn fake_tls_server(dir: &std::path::Path) -> (String, PathBuf) {
        use tokio_rustls::rustls;
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, certified.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(certified.key_pair.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Ok(stream) = acceptor.accept(stream).await else {
                    continue;
                };
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                for _ in 0..2 {
                    line.clear();
                    stream.read_line(&mut line).await.unwrap();
                }
                let welcome =
                    "{\"type\":\"welcome\",\"user\":\"alice\",\"role\":\"user\",\"new\":false}\n";
                stream
                    .get_mut()
                    .write_all(welcome.as_bytes())
                    .await
                    .unwrap();
                stream.get_mut().flush().await.unwrap();
            }
        });
        (format!("localhost:{port}"), ca)
    }

    #[tokio::test]
    async fn tls_logs_in_when_the_certificate_is_trusted_and_refuses_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, ca) = fake_tls_server(dir.path()).await;
        let trusted = Endpoint::tls(addr.clone(), Some(&ca)).unwrap();
        assert_eq!(trusted.to_string(), format!("{addr} (TLS)"));
        let session = connect(&trusted, &alice(), false).await.unwrap();
        assert_eq!(session.user, "alice");
        // The bundled roots do not know a self-signed certificate.
        let untrusted = Endpoint::tls(addr, None).unwrap();
        let error = connect(&untrusted, &alice(), false).await.unwrap_err();
        assert!(error.to_string().contains("certificate"), "{error}");
        assert!(Endpoint::tls("localhost:1", Some(&dir.path().join("missing.pem"))).is_err());
    }
}

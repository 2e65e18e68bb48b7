//! The running client: one loop that takes keys, server lines, upload progress, reconnect
//! results and a one-second tick, hands them to [`ChatState`] and [`Downloads`], carries out
//! the [`Action`]s that come back and redraws. It owns the terminal while it runs and gives
//! it back on every way out.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures::StreamExt;
use ratatui::DefaultTerminal;
use tokio::sync::mpsc;
use wur2_engine::ErrorCode;
use wur2_engine::json::{ServerEvent, ServerLine};

use crate::endpoint::Endpoint;
use crate::files::{Downloads, Finished, local_file};
use crate::net::{self, Credentials, LoginError, NetEvent, Outgoing, Session};
use crate::state::{Action, ChatState, Connection, Key, Style, backoff};
use crate::ui;

/// Seconds between silent `/channels` and `/list` refreshes.
const REFRESH_EVERY_TICKS: u32 = 15;

/// Errors that refuse an upload (the server then reads and drops its bytes; above its file
/// size limit it closes the connection instead, and the client reconnects).
const UPLOAD_REFUSALS: [ErrorCode; 6] = [
    ErrorCode::NotOnline,
    ErrorCode::NoSuchUser,
    ErrorCode::FileTooLarge,
    ErrorCode::InvalidFileName,
    ErrorCode::TooManyTransfers,
    ErrorCode::CannotSendToSelf,
];

/// Network reports handled before the screen is drawn again.
const BATCH: usize = 256;

/// How long `/quit` waits for the goodbye to be written.
const QUIT_GRACE: Duration = Duration::from_secs(1);

/// A reconnect task's news.
enum Reconnect {
    /// Waiting before attempt n.
    Attempt(u32),
    /// Logged in again, or refused for good.
    Done(Result<Session, LoginError>),
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs the full-screen client on a logged-in `session` until the user leaves.
pub async fn run(
    server: Endpoint,
    credentials: Credentials,
    session: Session,
    downloads: Downloads,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let mut client = Client::new(server, credentials, session, downloads);
    let result = client.run(&mut terminal).await;
    ratatui::restore();
    result
}

struct Client {
    state: ChatState,
    downloads: Downloads,
    server: Endpoint,
    credentials: Arc<Credentials>,
    outgoing: Option<mpsc::UnboundedSender<Outgoing>>,
    /// Which connection's reports count; older ones are ignored.
    generation: u64,
    net_tx: mpsc::UnboundedSender<(u64, NetEvent)>,
    net_rx: mpsc::UnboundedReceiver<(u64, NetEvent)>,
    reconnect_tx: mpsc::UnboundedSender<Reconnect>,
    reconnect_rx: mpsc::UnboundedReceiver<Reconnect>,
    quit: bool,
    /// `/close` was sent on leaving; wait briefly for the server's goodbye.
    closing: bool,
}

impl Client {
    fn new(
        server: Endpoint,
        credentials: Credentials,
        session: Session,
        downloads: Downloads,
    ) -> Client {
        let (net_tx, net_rx) = mpsc::unbounded_channel();
        let (reconnect_tx, reconnect_rx) = mpsc::unbounded_channel();
        let mut state = ChatState::new(&session.user, &session.role);
        let text = format!(
            "Connected to {server} as {}. Files you receive go to {}. Type /help.",
            session.user,
            downloads.dir().display()
        );
        state.notice(Style::Notice, text, Some(now_ms()));
        let token_wanted = session.with_password && credentials.keeps_tokens();
        let outgoing = net::spawn(session, 0, net_tx.clone());
        if token_wanted && let Action::Send(line) = state.ask_token() {
            let _ = outgoing.send(Outgoing::Line(line));
        }
        Client {
            state,
            downloads,
            server,
            credentials: Arc::new(credentials),
            outgoing: Some(outgoing),
            generation: 0,
            net_tx,
            net_rx,
            reconnect_tx,
            reconnect_rx,
            quit: false,
            closing: false,
        }
    }

    async fn run(&mut self, terminal: &mut DefaultTerminal) -> anyhow::Result<()> {
        let mut keys = EventStream::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks = 0u32;
        let refresh = self.state.refresh_lines();
        self.perform(refresh);
        while !self.quit {
            terminal.draw(|frame| ui::draw(frame, &self.state))?;
            tokio::select! {
                key = keys.next() => match key {
                    Some(Ok(Event::Key(key))) => {
                        if let Some(key) = decode(key) {
                            let actions = self.state.handle_key(key, now_ms());
                            self.perform(actions);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => return Ok(()),
                },
                Some((generation, event)) = self.net_rx.recv() => {
                    self.network(generation, event);
                    // Draw once per burst (a file arrives in many chunks), not once per line.
                    for _ in 0..BATCH {
                        let Ok((generation, event)) = self.net_rx.try_recv() else {
                            break;
                        };
                        self.network(generation, event);
                    }
                }
                Some(news) = self.reconnect_rx.recv() => self.reconnect_news(news),
                _ = tick.tick() => {
                    ticks += 1;
                    if self.outgoing.is_some() {
                        if ticks >= REFRESH_EVERY_TICKS {
                            ticks = 0;
                            let lines = self.state.refresh_lines();
                            self.perform(lines);
                        } else if self.state.take_refresh_wanted() {
                            let line = self.state.channels_refresh();
                            self.perform(vec![line]);
                        }
                    }
                }
            }
        }
        if self.closing {
            self.wait_for_goodbye().await;
        }
        Ok(())
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(line) => self.send(Outgoing::Line(line)),
                Action::Upload { to, path } => match local_file(&path) {
                    Ok(file) => {
                        if self.outgoing.is_none() {
                            self.not_connected();
                            continue;
                        }
                        let local = self
                            .state
                            .upload_started(&to, &file.name, file.size, now_ms());
                        self.send(Outgoing::Upload {
                            local,
                            to,
                            name: file.name,
                            size: file.size,
                            path: file.path,
                        });
                    }
                    Err(reason) => self.state.notice(
                        Style::Error,
                        format!("Cannot send: {reason}"),
                        Some(now_ms()),
                    ),
                },
                Action::KeepToken(token) => {
                    if let Err(error) = self.credentials.keep_token(token) {
                        let text = format!("Cannot keep the resume token: {error}");
                        self.state.notice(Style::Error, text, Some(now_ms()));
                    }
                }
                Action::Quit => {
                    self.quit = true;
                    if let Some(outgoing) = self.outgoing.take() {
                        self.closing = outgoing.send(Outgoing::Line("/close".into())).is_ok();
                    }
                }
            }
        }
    }

    /// Gives the writer a moment to send `/close` and the server to answer it.
    async fn wait_for_goodbye(&mut self) {
        let closed = async {
            while let Some((_, event)) = self.net_rx.recv().await {
                if matches!(event, NetEvent::Closed(_)) {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(QUIT_GRACE, closed).await;
    }

    fn send(&mut self, outgoing: Outgoing) {
        match &self.outgoing {
            Some(sender) if sender.send(outgoing).is_ok() => {}
            _ => self.not_connected(),
        }
    }

    fn not_connected(&mut self) {
        self.state.notice(
            Style::Error,
            "Not connected; nothing was sent".into(),
            Some(now_ms()),
        );
    }

    /// A report of connection `generation`; those of older connections are dropped.
    fn network(&mut self, generation: u64, event: NetEvent) {
        if generation != self.generation {
            return;
        }
        let now = now_ms();
        match event {
            NetEvent::Line(line) => {
                self.file_event(&line, now);
                let actions = self.state.handle_server(line, now);
                self.perform(actions);
            }
            NetEvent::Closed(reason) => {
                self.outgoing = None;
                for finished in self.downloads.abort_all("the connection was lost") {
                    if let Finished::Failed { name, reason } = finished {
                        self.state
                            .notice(Style::Error, format!("{name}: {reason}"), Some(now));
                    }
                }
                self.state.disconnected(&reason, now);
                if self.state.wants_reconnect() {
                    self.start_reconnect();
                }
            }
            NetEvent::UploadProgress { local, written } => {
                self.state.upload_progress(local, written);
            }
            NetEvent::UploadFailed { local, reason } => {
                self.state.upload_failed(local, &reason, now);
                if let Some(id) = self.state.upload_id(local) {
                    self.send(Outgoing::Line(format!("/cancel {id}")));
                }
            }
        }
    }

    /// Files: offers open a download, chunks are written, done and cancelled end it.
    fn file_event(&mut self, line: &ServerLine, now: i64) {
        match &line.event {
            ServerEvent::FileOffer {
                id,
                from,
                name,
                size,
            } => match self.downloads.offer(*id, name, *size) {
                Ok(path) => {
                    self.state.download_started(*id, from, name, *size, now);
                    self.state.notice(
                        Style::Notice,
                        format!("Saving to {}", path.display()),
                        Some(now),
                    );
                }
                Err(reason) => {
                    self.state.notice(
                        Style::Error,
                        format!("Cannot receive {name}: {reason}"),
                        Some(now),
                    );
                    self.send(Outgoing::Line(format!("/cancel {id}")));
                }
            },
            ServerEvent::FileChunk { id, data } => match self.downloads.chunk(*id, data) {
                Some(Ok(received)) => self.state.download_progress(*id, received),
                Some(Err(reason)) => {
                    self.downloads.cancelled(*id, &reason);
                    self.state.transfer_finished(*id, Err(reason), now);
                    self.send(Outgoing::Line(format!("/cancel {id}")));
                }
                None => {}
            },
            ServerEvent::FileDone {
                id,
                name,
                size,
                from: Some(from),
                ..
            } => match self.downloads.done(*id, *size) {
                Some(Finished::Saved { path, size }) => {
                    let text = format!(
                        "Received {name} from {from}: all {size} bytes, saved as {}",
                        path.display()
                    );
                    self.state.transfer_finished(*id, Ok(text), now);
                }
                Some(Finished::Failed { reason, .. }) => {
                    self.state
                        .transfer_finished(*id, Err(format!("not saved: {reason}")), now);
                }
                None => {}
            },
            ServerEvent::FileDone {
                id,
                name,
                to: Some(to),
                ..
            } => {
                let text = format!("{name} sent to {to}");
                self.state.transfer_finished(*id, Ok(text), now);
            }
            ServerEvent::FileSending { id, to, name, .. } => {
                self.state.upload_accepted(*id, to, name);
            }
            ServerEvent::FileCancelled { id, reason }
                if self.downloads.cancelled(*id, reason).is_some()
                    || self.state.is_active_upload(*id) =>
            {
                self.state
                    .transfer_finished(*id, Err(format!("cancelled: {reason}")), now);
            }
            ServerEvent::Error { code, message }
                if UPLOAD_REFUSALS
                    .iter()
                    .any(|refusal| refusal.as_str() == code) =>
            {
                self.state.upload_refused(message);
            }
            _ => {}
        }
    }

    fn start_reconnect(&self) {
        let server = self.server.clone();
        let credentials = Arc::clone(&self.credentials);
        let news = self.reconnect_tx.clone();
        tokio::spawn(async move {
            for attempt in 1u32.. {
                if news.send(Reconnect::Attempt(attempt)).is_err() {
                    return;
                }
                tokio::time::sleep(backoff(attempt)).await;
                match net::connect(&server, &credentials, false).await {
                    Err(error) if error.is_temporary() => continue,
                    result => {
                        let _ = news.send(Reconnect::Done(result));
                        return;
                    }
                }
            }
        });
    }

    fn reconnect_news(&mut self, news: Reconnect) {
        match news {
            Reconnect::Attempt(attempt) => {
                if self.state.wants_reconnect() {
                    self.state.connection = Connection::Reconnecting { attempt };
                }
            }
            Reconnect::Done(Ok(session)) => {
                self.generation += 1;
                let (user, role) = (session.user.clone(), session.role.clone());
                let token_wanted = session.with_password && self.credentials.keeps_tokens();
                self.outgoing = Some(net::spawn(session, self.generation, self.net_tx.clone()));
                let mut actions = self.state.reconnected(&user, &role, now_ms());
                if token_wanted {
                    actions.push(self.state.ask_token());
                }
                self.perform(actions);
            }
            Reconnect::Done(Err(error)) => {
                let text = format!("Cannot log in again: {error}");
                self.state
                    .notice(Style::Error, text.clone(), Some(now_ms()));
                self.state.connection = Connection::Offline(text);
            }
        }
    }
}

/// The keys the client uses; everything else is ignored.
fn decode(key: KeyEvent) -> Option<Key> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c' | 'd') if ctrl => Key::Quit,
        KeyCode::Char('n') if ctrl => Key::NextView,
        KeyCode::Char('p') if ctrl => Key::PrevView,
        KeyCode::Char('u') if ctrl => Key::ClearLine,
        KeyCode::Char('a') if ctrl => Key::Home,
        KeyCode::Char('e') if ctrl => Key::End,
        KeyCode::Char(_) if ctrl => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Backspace => Key::Backspace,
        KeyCode::Delete => Key::Delete,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Home => Key::Home,
        KeyCode::End => Key::End,
        KeyCode::Up => Key::Up,
        KeyCode::Down => Key::Down,
        KeyCode::Tab => Key::Tab,
        KeyCode::BackTab => Key::PrevView,
        KeyCode::Enter => Key::Enter,
        KeyCode::PageUp => Key::PageUp,
        KeyCode::PageDown => Key::PageDown,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_keys_map_to_client_actions() {
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(decode(ctrl('c')), Some(Key::Quit));
        assert_eq!(decode(ctrl('n')), Some(Key::NextView));
        assert_eq!(decode(ctrl('x')), None);
        assert_eq!(
            decode(KeyEvent::new(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Key::Char('x'))
        );
        assert_eq!(
            decode(KeyEvent::new(KeyCode::Char('X'), KeyModifiers::SHIFT)),
            Some(Key::Char('X'))
        );
    }
}

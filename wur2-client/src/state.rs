//! What the client shows and what typing does, without a terminal or a socket: server events
//! and keys go in, [`Action`]s (lines to send, files to upload) come out, and the UI reads
//! the result. Time is an argument (milliseconds since the epoch), never read here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Local};
use wur2_engine::Password;
use wur2_engine::json::{ChannelInfo, ServerEvent, ServerLine};

/// Commands offered by Tab completion: the server's and the client's own.
pub const COMMANDS: &[&str] = &[
    "/msg",
    "/dm",
    "/join",
    "/list",
    "/channels",
    "/profile",
    "/history",
    "/send",
    "/cancel",
    "/role",
    "/kick",
    "/ban",
    "/unban",
    "/mute",
    "/unmute",
    "/bans",
    "/ping",
    "/help",
    "/quit",
];

/// Commands whose first argument is a user, for completion.
const USER_COMMANDS: &[&str] = &[
    "/msg", "/dm", "/send", "/kick", "/role", "/ban", "/unban", "/mute", "/unmute",
];

/// When a ban or mute ends, in local time: `until 2026-12-07 11:00`, or `until lifted`.
fn until_text(until: Option<i64>) -> String {
    match until.and_then(DateTime::from_timestamp_millis) {
        Some(utc) => {
            let local = utc.with_timezone(&Local);
            format!("until {}", local.format("%Y-%m-%d %H:%M"))
        }
        None => "until lifted".into(),
    }
}

/// Lines kept per view; older ones scroll away for good.
const MAX_ENTRIES: usize = 2000;

/// Messages asked for per older page, when scrolling past the top of a view.
const OLDER_PAGE: usize = 50;

/// The `/ping` token that follows a request for an older page: its answer ends the page.
const OLDER_PAGE_END: &str = "wur2-chat-older-page";

/// Typed lines remembered for Up/Down.
const MAX_HISTORY: usize = 200;

/// The delay before reconnect attempt `attempt` (1, 2, …): doubling from half a second,
/// at most 30 seconds.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(6);
    Duration::from_millis(500 * (1 << exponent)).min(Duration::from_secs(30))
}

/// A stable colour slot (0..`slots`) for a user name: FNV-1a of the lowercased name, so
/// `Bob` and `bob` (one account) look the same and every run agrees.
pub fn name_colour(name: &str, slots: usize) -> usize {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.to_lowercase().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as usize % slots.max(1)
}

/// A key, already decoded from the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A printable character.
    Char(char),
    /// Delete before the cursor.
    Backspace,
    /// Delete under the cursor.
    Delete,
    /// Cursor left.
    Left,
    /// Cursor right.
    Right,
    /// Cursor to the start.
    Home,
    /// Cursor to the end.
    End,
    /// Older typed line.
    Up,
    /// Newer typed line.
    Down,
    /// Complete a command, user or channel.
    Tab,
    /// Send the line.
    Enter,
    /// Next view (channel, then DMs).
    NextView,
    /// Previous view.
    PrevView,
    /// Scroll back.
    PageUp,
    /// Scroll forward.
    PageDown,
    /// Clear the input line.
    ClearLine,
    /// Leave.
    Quit,
}

/// What the client must do after a key or an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this line to the server (without its line break).
    Send(String),
    /// Upload a local file to a user.
    Upload {
        /// The recipient.
        to: String,
        /// The local file.
        path: PathBuf,
    },
    /// Say goodbye and leave.
    Quit,
    /// Keep this resume token (the answer to the client's own `/token`).
    KeepToken(Password),
}

/// Which conversation a view shows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ViewId {
    /// The channel you are in.
    Channel,
    /// Private messages with one user.
    Dm(String),
}

/// How an entry looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Someone's message.
    Chat,
    /// A message you wrote.
    Own,
    /// Joins, parts, answers of the server.
    Notice,
    /// Something went well (a file arrived).
    Success,
    /// Something went wrong.
    Error,
}

/// One line of a view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When, in milliseconds since the epoch, when known.
    pub time: Option<i64>,
    /// The author of a message (`None` for notices).
    pub from: Option<String>,
    /// The words.
    pub text: String,
    /// How it looks.
    pub style: Style,
}

/// A conversation on screen.
#[derive(Debug, Clone)]
pub struct View {
    /// Which one.
    pub id: ViewId,
    /// Messages since it was last looked at.
    pub unread: usize,
    /// Entries scrolled back from the bottom (0: the newest is visible).
    pub scroll: usize,
    entries: Vec<Entry>,
    /// The stored id of the oldest message shown, which the page before it is asked by.
    oldest: Option<Oldest>,
    /// The server said there is nothing older.
    at_start: bool,
}

impl View {
    fn new(id: ViewId) -> View {
        View {
            id,
            unread: 0,
            scroll: 0,
            entries: Vec::new(),
            oldest: None,
            at_start: false,
        }
    }

    /// Notes live message `id` as the oldest shown, unless one is known.
    fn seen_live(&mut self, id: Option<&str>) {
        if self.oldest.is_none() {
            self.oldest = id.map(|id| Oldest::Live(id.to_owned()));
        }
    }

    /// Notes replayed message `id` (a replay comes oldest first) as the oldest shown,
    /// unless one of the past is known already: a live message seen before the replay is
    /// newer than all of it.
    fn seen_past(&mut self, id: Option<&str>) {
        if !matches!(self.oldest, Some(Oldest::Past(_))) {
            self.oldest = id.map(|id| Oldest::Past(id.to_owned()));
        }
    }

    /// The id to ask the page before, if any.
    fn oldest_id(&self) -> Option<&str> {
        match &self.oldest {
            Some(Oldest::Live(id) | Oldest::Past(id)) => Some(id),
            None => None,
        }
    }
}

/// Where a view's oldest known message id came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Oldest {
    /// A live message (no history seen yet).
    Live(String),
    /// A replayed or paged message.
    Past(String),
}

impl View {
    /// The view's lines, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn push(&mut self, entry: Entry) {
        if self.entries.len() == MAX_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(entry);
        if self.scroll > 0 {
            self.scroll += 1;
        }
    }
}

/// The link to the server, as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Logged in.
    Online,
    /// Lost; trying again.
    Reconnecting {
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// Lost for good (kicked, credentials refused, goodbye).
    Offline(String),
}

/// Which way a file goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From us.
    Upload,
    /// To us.
    Download,
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStatus {
    /// Bytes are moving.
    Active,
    /// Finished well.
    Done,
    /// Stopped; why.
    Failed(String),
}

/// A file transfer, for the progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// Uploads: our own number until the server gives its id; downloads: the server's id.
    pub key: TransferKey,
    /// Which way.
    pub direction: Direction,
    /// The other user.
    pub peer: String,
    /// The file's name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes moved so far.
    pub moved: u64,
    /// Where it stands.
    pub status: TransferStatus,
}

/// How a transfer is found again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferKey {
    /// An upload this client started (its local number), with the server's id once known.
    Upload(u64, Option<u64>),
    /// A download, by the server's id.
    Download(u64),
}

impl Transfer {
    /// The server's id (what `/cancel` takes), once known.
    pub fn server_id(&self) -> Option<u64> {
        match self.key {
            TransferKey::Upload(_, id) => id,
            TransferKey::Download(id) => Some(id),
        }
    }

    /// Progress from 0.0 to 1.0.
    pub fn ratio(&self) -> f64 {
        if self.size == 0 {
            1.0
        } else {
            (self.moved as f64 / self.size as f64).clamp(0.0, 1.0)
        }
    }
}

/// The input line: text, cursor, typed-line history and Tab completion.
#[derive(Debug, Clone, Default)]
pub struct Input {
    text: String,
    /// Cursor position in characters.
    cursor: usize,
    history: Vec<String>,
    /// Index into `history` while browsing it with Up/Down.
    browsing: Option<usize>,
    /// What was typed before browsing started.
    draft: String,
    /// Candidates of the last Tab and which one is shown, while Tab is pressed repeatedly.
    completion: Option<(String, Vec<String>, usize)>,
}

impl Input {
    /// The text typed so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor position, in characters.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(at, _)| at)
    }

    fn set(&mut self, text: String) {
        self.cursor = text.chars().count();
        self.text = text;
    }

    fn insert(&mut self, c: char) {
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.text.chars().count() {
            let at = self.byte_at(self.cursor);
            self.text.remove(at);
        }
    }

    fn up(&mut self) {
        let next = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return,
            Some(at) => at - 1,
        };
        self.browsing = Some(next);
        self.set(self.history[next].clone());
    }

    fn down(&mut self) {
        match self.browsing {
            None => {}
            Some(at) if at + 1 < self.history.len() => {
                self.browsing = Some(at + 1);
                self.set(self.history[at + 1].clone());
            }
            Some(_) => {
                self.browsing = None;
                let draft = std::mem::take(&mut self.draft);
                self.set(draft);
            }
        }
    }

    /// Takes the line for sending and remembers it.
    fn take(&mut self) -> String {
        let line = std::mem::take(&mut self.text);
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == MAX_HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    /// Tab: completes the last word from `candidates_for(prefix_words, word)`; pressed
    /// again, shows the next candidate.
    fn complete(&mut self, candidates: impl Fn(&[&str], &str) -> Vec<String>) {
        if let Some((base, options, shown)) = &mut self.completion {
            *shown = (*shown + 1) % options.len();
            let text = format!("{base}{} ", options[*shown]);
            self.set(text);
            return;
        }
        let words: Vec<&str> = self.text.split(' ').collect();
        let Some((word, before)) = words.split_last() else {
            return;
        };
        let options = candidates(before, word);
        if options.is_empty() {
            return;
        }
        let base = self.text[..self.text.len() - word.len()].to_string();
        self.set(format!("{base}{} ", options[0]));
        if options.len() > 1 {
            self.completion = Some((base, options, 0));
        }
    }
}

/// Everything the client shows.
#[derive(Debug)]
pub struct ChatState {
    /// The status line's link state.
    pub connection: Connection,
    /// Who we are logged in as.
    pub user: String,
    /// Our role.
    pub role: String,
    /// The channel we are in.
    pub channel: String,
    /// Its topic, when one is set (shown in the header).
    pub topic: Option<String>,
    /// Our away message, when we are marked away (shown in the status line).
    pub away: Option<String>,
    /// Active channels and member counts, from the last `/channels` answer.
    pub channels: Vec<ChannelInfo>,
    /// Users online, from the last `/list` answer.
    pub users: Vec<String>,
    /// File transfers of this run, newest last.
    pub transfers: Vec<Transfer>,
    /// The input line.
    pub input: Input,
    views: Vec<View>,
    active: usize,
    /// Messages of each channel visited, by lowercased name (the channel view shows one).
    channel_logs: HashMap<String, Vec<Entry>>,
    /// `/channels`, `/list` and `/token` this client asked for itself, whose answers are
    /// not shown.
    quiet_channels: u32,
    quiet_lists: u32,
    quiet_tokens: u32,
    /// Channels or members changed; the caller should ask `/channels` again.
    refresh_wanted: bool,
    next_upload: u64,
    /// The older page being read, if one was asked for.
    older: Option<OlderPage>,
}

/// An older page of a view's history on its way (`/history … before <id>`): its lines are
/// kept apart until the page's end, then go above what the view shows.
#[derive(Debug)]
struct OlderPage {
    view: ViewId,
    /// An error came before the page's end (perhaps the request's own refusal): without
    /// a full page the view is not taken to be at its start, and may ask again.
    refused: bool,
    /// The channel the client was in when it asked.
    channel: String,
    entries: Vec<Entry>,
    /// The id to ask the next page before, when this one was full.
    more: Option<String>,
}

impl ChatState {
    /// A client logged in as `user` with `role`.
    pub fn new(user: &str, role: &str) -> ChatState {
        ChatState {
            connection: Connection::Online,
            user: user.to_string(),
            role: role.to_string(),
            channel: "Global".to_string(),
            topic: None,
            away: None,
            channels: Vec::new(),
            users: Vec::new(),
            transfers: Vec::new(),
            input: Input::default(),
            views: vec![View::new(ViewId::Channel)],
            active: 0,
            channel_logs: HashMap::new(),
            quiet_channels: 0,
            quiet_lists: 0,
            quiet_tokens: 0,
            refresh_wanted: false,
            next_upload: 1,
            older: None,
        }
    }

    /// The views: the channel first, then one per DM partner.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// The index of the view on screen.
    pub fn active(&self) -> usize {
        self.active
    }

    /// The view on screen.
    pub fn active_view(&self) -> &View {
        &self.views[self.active]
    }

    /// The name of a view as tabs show it.
    pub fn view_title(&self, id: &ViewId) -> String {
        match id {
            ViewId::Channel => self.channel.clone(),
            ViewId::Dm(user) => format!("@{user}"),
        }
    }

    /// True once: channels or their members changed since the last call.
    pub fn take_refresh_wanted(&mut self) -> bool {
        std::mem::take(&mut self.refresh_wanted)
    }

    /// The lines a periodic refresh sends; their answers update the side bar silently.
    pub fn refresh_lines(&mut self) -> Vec<Action> {
        self.quiet_lists += 1;
        vec![self.channels_refresh(), Action::Send("/list".into())]
    }

    /// A `/token` whose answer is kept (see [`Action::KeepToken`]), not shown.
    pub fn ask_token(&mut self) -> Action {
        self.quiet_tokens += 1;
        Action::Send("/token".into())
    }

    /// A `/channels` whose answer updates the side bar silently.
    pub fn channels_refresh(&mut self) -> Action {
        self.quiet_channels += 1;
        Action::Send("/channels".into())
    }

    // ---- input ------------------------------------------------------------------------

    /// A key; returns what to do.
    pub fn handle_key(&mut self, key: Key, now_ms: i64) -> Vec<Action> {
        if key != Key::Tab {
            self.input.completion = None;
        }
        match key {
            Key::Char(c) => self.input.insert(c),
            Key::Backspace => self.input.backspace(),
            Key::Delete => self.input.delete(),
            Key::Left => self.input.cursor = self.input.cursor.saturating_sub(1),
            Key::Right => {
                self.input.cursor = (self.input.cursor + 1).min(self.input.text.chars().count())
            }
            Key::Home => self.input.cursor = 0,
            Key::End => self.input.cursor = self.input.text.chars().count(),
            Key::Up => self.input.up(),
            Key::Down => self.input.down(),
            Key::Tab => {
                let (users, channels) = (self.known_users(), self.known_channels());
                self.input
                    .complete(|before, word| candidates(before, word, &users, &channels));
            }
            Key::Enter => {
                let line = self.input.take();
                return self.submit(&line, now_ms);
            }
            Key::NextView => self.activate((self.active + 1) % self.views.len()),
            Key::PrevView => self.activate((self.active + self.views.len() - 1) % self.views.len()),
            Key::PageUp => {
                let view = &mut self.views[self.active];
                let top = view.entries.len().saturating_sub(1);
                let was_at_top = view.scroll >= top;
                view.scroll = (view.scroll + 10).min(top);
                if was_at_top {
                    return self.ask_older_page();
                }
            }
            Key::PageDown => {
                let view = &mut self.views[self.active];
                view.scroll = view.scroll.saturating_sub(10);
            }
            Key::ClearLine => self.input.set(String::new()),
            Key::Quit => return vec![Action::Quit],
        }
        Vec::new()
    }

    fn known_users(&self) -> Vec<String> {
        let mut users = self.users.clone();
        for view in &self.views {
            if let ViewId::Dm(user) = &view.id
                && !users.iter().any(|known| known.eq_ignore_ascii_case(user))
            {
                users.push(user.clone());
            }
        }
        users
    }

    fn known_channels(&self) -> Vec<String> {
        self.channels.iter().map(|c| c.name.clone()).collect()
    }

    /// A typed line: a chat message for the view on screen, or a command.
    fn submit(&mut self, line: &str, now_ms: i64) -> Vec<Action> {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return Vec::new();
        }
        if line.starts_with("//") || !line.starts_with('/') {
            let text = line.strip_prefix('/').filter(|_| line.starts_with("//"));
            let text = text.unwrap_or(line).to_string();
            return match self.views[self.active].id.clone() {
                ViewId::Channel => {
                    self.own_entry(ViewId::Channel, &text, now_ms);
                    vec![Action::Send(line.to_string())]
                }
                ViewId::Dm(user) => self.send_dm(&user, &text, now_ms),
            };
        }
        let (command, rest) = line.split_once(' ').unwrap_or((line, ""));
        let rest = rest.trim();
        match command {
            "/quit" | "/close" | "/exit" => vec![Action::Quit],
            "/mode" => self.client_error("this client always speaks JSON mode", now_ms),
            "/msg" => match rest.split_once(' ') {
                Some((user, text)) if !text.trim().is_empty() => {
                    let user = user.to_string();
                    self.send_dm(&user, text.trim(), now_ms)
                }
                _ => self.client_error("usage: /msg <user> <text>", now_ms),
            },
            "/dm" | "/query" => {
                if rest.is_empty() || rest.contains(' ') {
                    return self.client_error("usage: /dm <user>", now_ms);
                }
                let at = self.dm_view(rest);
                self.activate(at);
                Vec::new()
            }
            "/send" => {
                let mut words = rest.splitn(2, ' ');
                match (words.next(), words.next().map(str::trim)) {
                    (Some(user), Some(path)) if !user.is_empty() && !path.is_empty() => {
                        vec![Action::Upload {
                            to: user.to_string(),
                            path: PathBuf::from(expand_home(path)),
                        }]
                    }
                    _ => self.client_error("usage: /send <user> <local file>", now_ms),
                }
            }
            _ => vec![Action::Send(line.to_string())],
        }
    }

    fn send_dm(&mut self, user: &str, text: &str, now_ms: i64) -> Vec<Action> {
        let at = self.dm_view(user);
        let id = self.views[at].id.clone();
        self.own_entry(id, text, now_ms);
        vec![Action::Send(format!("/msg {user} {text}"))]
    }

    fn own_entry(&mut self, id: ViewId, text: &str, now_ms: i64) {
        let entry = Entry {
            time: Some(now_ms),
            from: Some(self.user.clone()),
            text: text.to_string(),
            style: Style::Own,
        };
        self.push(id, entry, false);
    }

    fn client_error(&mut self, text: &str, now_ms: i64) -> Vec<Action> {
        self.notice(Style::Error, text.to_string(), Some(now_ms));
        Vec::new()
    }

    fn activate(&mut self, at: usize) {
        self.active = at;
        self.views[at].unread = 0;
    }

    /// The index of the DM view with `user`, created when new (names match in any case).
    fn dm_view(&mut self, user: &str) -> usize {
        if let Some(at) = self.views.iter().position(
            |view| matches!(&view.id, ViewId::Dm(name) if name.eq_ignore_ascii_case(user)),
        ) {
            return at;
        }
        self.views.push(View::new(ViewId::Dm(user.to_string())));
        self.views.len() - 1
    }

    /// Asks for the page before the oldest message of the view on screen, unless one is
    /// on its way, the view is at its start, or it is full.
    fn ask_older_page(&mut self) -> Vec<Action> {
        let view = &self.views[self.active];
        let Some(oldest) = view.oldest_id() else {
            return Vec::new();
        };
        if self.older.is_some() || view.at_start || view.entries.len() >= MAX_ENTRIES {
            return Vec::new();
        }
        let with = match &view.id {
            ViewId::Channel => String::new(),
            ViewId::Dm(user) => format!("@{user} "),
        };
        let ask = format!("/history {with}{OLDER_PAGE} before {oldest}");
        self.older = Some(OlderPage {
            view: view.id.clone(),
            refused: false,
            channel: self.channel.clone(),
            entries: Vec::new(),
            more: None,
        });
        vec![
            Action::Send(ask),
            Action::Send(format!("/ping {OLDER_PAGE_END}")),
        ]
    }

    /// The older page on its way for `view`, if any.
    fn older_page_for(&mut self, view: &ViewId) -> Option<&mut OlderPage> {
        self.older.as_mut().filter(|page| page.view == *view)
    }

    /// The older page has all arrived: its lines go above the view's (as many as fit),
    /// and the view knows what to ask next, or that it is at its start.
    fn older_page_done(&mut self) {
        let Some(page) = self.older.take() else {
            return;
        };
        if page.view == ViewId::Channel && !page.channel.eq_ignore_ascii_case(&self.channel) {
            return;
        }
        let Some(at) = self.views.iter().position(|view| view.id == page.view) else {
            return;
        };
        let view = &mut self.views[at];
        let room = MAX_ENTRIES.saturating_sub(view.entries.len());
        let skip = page.entries.len().saturating_sub(room);
        let above: Vec<Entry> = page.entries.into_iter().skip(skip).collect();
        match (page.more, page.refused) {
            (Some(before), _) if skip == 0 => view.oldest = Some(Oldest::Past(before)),
            // An error came meanwhile (maybe the request's): the view may ask again.
            (None, true) => {}
            _ => view.at_start = true,
        }
        view.entries.splice(0..0, above.iter().cloned());
        if page.view == ViewId::Channel {
            let log = self
                .channel_logs
                .entry(self.channel.to_lowercase())
                .or_default();
            log.splice(0..0, above);
            log.truncate(MAX_ENTRIES);
        }
    }

    /// Adds an entry to a view; `counts` makes it unread when the view is not on screen.
    fn push(&mut self, id: ViewId, entry: Entry, counts: bool) {
        let at = match &id {
            ViewId::Channel => 0,
            ViewId::Dm(user) => self.dm_view(user),
        };
        if id == ViewId::Channel {
            let log = self
                .channel_logs
                .entry(self.channel.to_lowercase())
                .or_default();
            if log.len() == MAX_ENTRIES {
                log.remove(0);
            }
            log.push(entry.clone());
        }
        if counts && at != self.active {
            self.views[at].unread += 1;
        }
        self.views[at].push(entry);
    }

    /// A line from the client itself or a server answer, shown in the view on screen.
    pub fn notice(&mut self, style: Style, text: String, time: Option<i64>) {
        let id = self.views[self.active].id.clone();
        let entry = Entry {
            time,
            from: None,
            text,
            style,
        };
        self.push(id, entry, false);
    }

    fn channel_notice(&mut self, style: Style, text: String, time: Option<i64>) {
        let entry = Entry {
            time,
            from: None,
            text,
            style,
        };
        self.push(ViewId::Channel, entry, false);
    }

    // ---- server events ----------------------------------------------------------------

    /// A line from the server. File chunks are the caller's (see [`crate::files`]); this
    /// only tracks their progress through the `transfer_*` methods.
    pub fn handle_server(&mut self, line: ServerLine, now_ms: i64) -> Vec<Action> {
        let time = Some(line.ts.unwrap_or(now_ms));
        match line.event {
            ServerEvent::Welcome { user, role, .. } => {
                self.user = user;
                self.role = role;
                self.connection = Connection::Online;
            }
            ServerEvent::Channel { channel } => self.enter_channel(&channel, time),
            ServerEvent::Switched { to, .. } => {
                self.enter_channel(&to, time);
                self.refresh_wanted = true;
            }
            ServerEvent::Message {
                channel,
                from,
                text,
                id,
            } => {
                if channel.eq_ignore_ascii_case(&self.channel) {
                    self.views[0].seen_live(id.as_deref());
                    let entry = Entry {
                        time,
                        from: Some(from),
                        text,
                        style: Style::Chat,
                    };
                    self.push(ViewId::Channel, entry, true);
                }
            }
            ServerEvent::History {
                from,
                text,
                sent_at,
                id,
                ..
            } => {
                let entry = self.past_entry(from, text, sent_at);
                if let Some(page) = self.older_page_for(&ViewId::Channel) {
                    page.entries.push(entry);
                } else {
                    self.views[0].seen_past(id.as_deref());
                    self.push(ViewId::Channel, entry, false);
                }
            }
            ServerEvent::HistoryMore { with, before, .. } => {
                let view = match with {
                    None => ViewId::Channel,
                    Some(user) => ViewId::Dm(user),
                };
                if let Some(page) = self.older_page_for(&view) {
                    page.more = Some(before);
                } else if let Some(view) = self.views.iter_mut().find(|v| v.id == view) {
                    // A page asked for by hand: its oldest is older than what a view
                    // without history knows, never than one with.
                    view.seen_past(Some(&before));
                }
            }
            ServerEvent::Dm {
                from,
                text,
                sent_at,
                id,
                ..
            } => {
                let at = self.dm_view(&from);
                self.views[at].seen_live(id.as_deref());
                let entry = Entry {
                    time: sent_at.or(time),
                    from: Some(from.clone()),
                    text,
                    style: Style::Chat,
                };
                self.push(ViewId::Dm(from), entry, true);
            }
            ServerEvent::DmHistory {
                with,
                from,
                text,
                sent_at,
                id,
            } => {
                let entry = self.past_entry(from, text, sent_at);
                let view = ViewId::Dm(with.clone());
                if let Some(page) = self.older_page_for(&view) {
                    page.entries.push(entry);
                } else {
                    let at = self.dm_view(&with);
                    self.views[at].seen_past(Some(&id));
                    self.push(view, entry, false);
                }
            }
            ServerEvent::Token { token } if self.quiet_tokens > 0 => {
                self.quiet_tokens -= 1;
                return vec![Action::KeepToken(Password::new(token))];
            }
            ServerEvent::Token { token } => {
                let text = format!(
                    "Your resume token (keep it private): {token}; log in with /resume {} {token}",
                    self.user
                );
                self.notice(Style::Success, text, time);
            }
            ServerEvent::LoggedOutEverywhere => {
                let text = "Your resume tokens were revoked and your other sessions logged out";
                self.notice(Style::Success, text.to_string(), time);
            }
            ServerEvent::PasswordChanged => {
                let text = "Password changed; your other sessions were logged out".to_string();
                self.notice(Style::Success, text, time);
            }
            ServerEvent::AccountDeleted { user } => {
                let text = format!("Your account {user} was deleted");
                self.notice(Style::Error, text.clone(), time);
                self.connection = Connection::Offline(text);
            }
            ServerEvent::LoggedOut { reason } => {
                let text = format!("You were logged out: {reason}");
                self.notice(Style::Error, text.clone(), time);
                self.connection = Connection::Offline(text);
            }
            ServerEvent::DmStored { to } => {
                let text = format!("{to} is offline; they will get it at their next login");
                let entry = Entry {
                    time,
                    from: None,
                    text,
                    style: Style::Notice,
                };
                self.push(ViewId::Dm(to), entry, false);
            }
            ServerEvent::Join { user, channel } => {
                self.channel_notice(Style::Notice, format!("{user} joined {channel}"), time);
                self.refresh_wanted = true;
            }
            ServerEvent::Part { user, channel } => {
                self.channel_notice(Style::Notice, format!("{user} left {channel}"), time);
                self.refresh_wanted = true;
            }
            ServerEvent::List { users, away } => {
                if self.quiet_lists > 0 {
                    self.quiet_lists -= 1;
                } else {
                    let listed: Vec<String> = users
                        .iter()
                        .map(|user| match away.iter().find(|(name, _)| name == user) {
                            Some((_, text)) => format!("{user} (away: {text})"),
                            None => user.clone(),
                        })
                        .collect();
                    let text = format!("Online: {}", listed.join(", "));
                    self.notice(Style::Notice, text, time);
                }
                self.users = users;
            }
            ServerEvent::Topic { channel, topic, by } => {
                let text = match (&topic, &by) {
                    (Some(topic), Some(by)) => format!("{by} set the topic: {topic}"),
                    (None, Some(by)) => format!("{by} cleared the topic"),
                    (Some(topic), None) => format!("Topic: {topic}"),
                    (None, None) => format!("{channel} has no topic"),
                };
                if channel.eq_ignore_ascii_case(&self.channel) {
                    self.topic = topic;
                }
                self.channel_notice(Style::Notice, text, time);
            }
            ServerEvent::Private {
                channel,
                private,
                by,
            } => {
                let what = if private { "private" } else { "public" };
                let text = format!("{by} made {channel} {what}");
                self.channel_notice(Style::Notice, text, time);
            }
            ServerEvent::Invited { channel, user } => {
                let text = format!("You invited {user} to {channel}");
                self.notice(Style::Success, text, time);
            }
            ServerEvent::Invitation { channel, by } => {
                let text = format!("{by} invited you to {channel}: /join {channel}");
                self.notice(Style::Notice, text, time);
            }
            ServerEvent::Names { channel, users } => {
                let text = format!("In {channel}: {}", users.join(", "));
                self.channel_notice(Style::Notice, text, time);
            }
            ServerEvent::AwaySet { text } => {
                let said = match &text {
                    Some(text) => format!("You are marked away: {text}"),
                    None => "You are no longer marked away".to_string(),
                };
                self.notice(Style::Notice, said, time);
                self.away = text;
            }
            ServerEvent::Away { user, text } => {
                let entry = Entry {
                    time,
                    from: None,
                    text: format!("{user} is away: {text}"),
                    style: Style::Notice,
                };
                self.push(ViewId::Dm(user), entry, false);
            }
            ServerEvent::Channels { channels } => {
                if self.quiet_channels > 0 {
                    self.quiet_channels -= 1;
                } else {
                    let listed: Vec<String> = channels
                        .iter()
                        .map(|c| match &c.topic {
                            Some(topic) => format!("{} ({}) [{topic}]", c.name, c.members),
                            None => format!("{} ({})", c.name, c.members),
                        })
                        .collect();
                    self.notice(
                        Style::Notice,
                        format!("Channels: {}", listed.join(", ")),
                        time,
                    );
                }
                if let Some(here) = channels
                    .iter()
                    .find(|c| c.name.eq_ignore_ascii_case(&self.channel))
                {
                    self.topic.clone_from(&here.topic);
                }
                self.channels = channels;
            }
            ServerEvent::Profile {
                user,
                channel,
                role,
            } => {
                let text = format!("You are {user} in {channel}, role {role}");
                self.notice(Style::Notice, text, time);
                self.user = user;
                self.role = role;
            }
            ServerEvent::Role { role, by } => {
                let text = match &by {
                    Some(by) => format!("Your role is now {role} (set by {by})"),
                    None => format!("Your role is {role}"),
                };
                self.notice(Style::Notice, text, time);
                self.role = role;
            }
            ServerEvent::RoleSet { user, role } => {
                self.notice(Style::Notice, format!("{user} is now {role}"), time);
            }
            ServerEvent::Kick { user, by, reason } => {
                let text = format!("{user} was kicked by {by}: {reason}");
                self.channel_notice(Style::Notice, text, time);
                self.refresh_wanted = true;
            }
            ServerEvent::Kicked { by, reason } => {
                let text = format!("You were kicked by {by}: {reason}");
                self.notice(Style::Error, text.clone(), time);
                self.connection = Connection::Offline(text);
            }
            ServerEvent::KickDone { user } => {
                self.notice(Style::Notice, format!("You kicked {user}."), time);
            }
            ServerEvent::Banned { by, reason, until } => {
                let text = format!("You are banned by {by} {}: {reason}", until_text(until));
                self.notice(Style::Error, text.clone(), time);
                // Reconnecting would only be refused again.
                self.connection = Connection::Offline(text);
            }
            ServerEvent::Muted { by, reason, until } => {
                let text = format!("You are muted by {by} {}: {reason}", until_text(until));
                self.notice(Style::Error, text, time);
            }
            ServerEvent::Unmuted => {
                self.notice(Style::Notice, "You are no longer muted.".into(), time);
            }
            ServerEvent::Sanctioned {
                kind,
                user,
                reason,
                until,
            } => {
                let what = if kind == "ban" { "banned" } else { "muted" };
                let text = format!("{user} is {what} {}: {reason}", until_text(until));
                self.notice(Style::Notice, text, time);
            }
            ServerEvent::Lifted { kind, user } => {
                let what = if kind == "ban" { "banned" } else { "muted" };
                self.notice(Style::Notice, format!("{user} is no longer {what}"), time);
            }
            ServerEvent::Sanctions { sanctions } if sanctions.is_empty() => {
                self.notice(Style::Notice, "No bans or mutes.".into(), time);
            }
            ServerEvent::Sanctions { sanctions } => {
                let header = format!("Bans and mutes ({}):", sanctions.len());
                self.notice(Style::Notice, header, time);
                let width = sanctions.iter().map(|s| s.user.len()).max().unwrap_or(0);
                for s in sanctions {
                    let text = format!(
                        "  {:<4} {:<width$}  by {}, {}: {}",
                        s.kind,
                        s.user,
                        s.by,
                        until_text(s.until),
                        s.reason
                    );
                    self.notice(Style::Notice, text, time);
                }
            }
            ServerEvent::Pong { token } if token == OLDER_PAGE_END => self.older_page_done(),
            ServerEvent::Pong { token } => {
                self.notice(Style::Notice, format!("pong {token}"), time);
            }
            ServerEvent::Help { commands } => {
                self.notice(Style::Notice, "Commands:".into(), time);
                // The client's own /send replaces the server's forms, and it needs JSON mode.
                let replaced =
                    |usage: &str| usage.starts_with("/send ") || usage.starts_with("/mode");
                for (usage, what) in commands.iter().filter(|(usage, _)| !replaced(usage)) {
                    self.notice(Style::Notice, format!("  {usage:<28} {what}"), time);
                }
                for (usage, what) in CLIENT_HELP {
                    self.notice(Style::Notice, format!("  {usage:<28} {what}"), time);
                }
            }
            ServerEvent::Goodbye => {
                self.connection = Connection::Offline("you left".into());
            }
            ServerEvent::Shutdown => {
                self.notice(Style::Error, "The server is shutting down".into(), time);
            }
            ServerEvent::Error { message, .. } => {
                if let Some(page) = self.older.as_mut() {
                    page.refused = true;
                }
                self.notice(Style::Error, message, time);
            }
            ServerEvent::Info { text } => self.notice(Style::Notice, text, time),
            ServerEvent::FileOffer { .. }
            | ServerEvent::FileSending { .. }
            | ServerEvent::FileChunk { .. }
            | ServerEvent::FileDone { .. }
            | ServerEvent::FileCancelled { .. }
            | ServerEvent::Mode { .. }
            | ServerEvent::Prompt { .. }
            | ServerEvent::Unknown => {}
        }
        Vec::new()
    }

    /// A message of the past, in the style of its author (us, or someone else).
    fn past_entry(&self, from: String, text: String, sent_at: i64) -> Entry {
        let style = if from.eq_ignore_ascii_case(&self.user) {
            Style::Own
        } else {
            Style::Chat
        };
        Entry {
            time: Some(sent_at),
            from: Some(from),
            text,
            style,
        }
    }

    fn enter_channel(&mut self, channel: &str, time: Option<i64>) {
        self.channel = channel.to_string();
        // The topic line that follows a join says it; none follows when none is set.
        self.topic = None;
        let log = self
            .channel_logs
            .get(&channel.to_lowercase())
            .cloned()
            .unwrap_or_default();
        let view = &mut self.views[0];
        view.entries = log;
        view.scroll = 0;
        // Paging starts again from what the new channel's replay shows (a page of the
        // old channel still on its way is dropped when it ends).
        view.oldest = None;
        view.at_start = false;
        self.channel_notice(Style::Notice, format!("You are in {channel}"), time);
    }

    // ---- connection -------------------------------------------------------------------

    /// The connection dropped; the caller reconnects (attempt 1 next).
    pub fn disconnected(&mut self, reason: &str, now_ms: i64) {
        self.quiet_channels = 0;
        self.quiet_lists = 0;
        self.quiet_tokens = 0;
        // Its end will never come: the next replay must not be taken for it.
        self.older = None;
        if matches!(self.connection, Connection::Online) {
            self.connection = Connection::Reconnecting { attempt: 1 };
        }
        self.notice(
            Style::Error,
            format!("Disconnected: {reason}"),
            Some(now_ms),
        );
        for transfer in &mut self.transfers {
            if transfer.status == TransferStatus::Active {
                transfer.status = TransferStatus::Failed("connection lost".into());
            }
        }
    }

    /// True while the client should try to reconnect.
    pub fn wants_reconnect(&self) -> bool {
        matches!(self.connection, Connection::Reconnecting { .. })
    }

    /// Logged in again; returns the lines that restore where we were.
    pub fn reconnected(&mut self, user: &str, role: &str, now_ms: i64) -> Vec<Action> {
        let previous = std::mem::replace(&mut self.channel, "Global".into());
        self.user = user.to_string();
        self.role = role.to_string();
        self.connection = Connection::Online;
        self.notice(Style::Success, "Reconnected".into(), Some(now_ms));
        let mut actions = Vec::new();
        if !previous.eq_ignore_ascii_case("Global") {
            actions.push(Action::Send(format!("/join {previous}")));
        }
        actions.extend(self.refresh_lines());
        actions
    }

    // ---- transfers --------------------------------------------------------------------

    /// An upload this client is starting; returns its local number.
    pub fn upload_started(&mut self, to: &str, name: &str, size: u64, now_ms: i64) -> u64 {
        let local = self.next_upload;
        self.next_upload += 1;
        self.transfers.push(Transfer {
            key: TransferKey::Upload(local, None),
            direction: Direction::Upload,
            peer: to.to_string(),
            name: name.to_string(),
            size,
            moved: 0,
            status: TransferStatus::Active,
        });
        let text = format!("Sending {name} ({size} bytes) to {to}");
        self.notice(Style::Notice, text, Some(now_ms));
        local
    }

    fn transfer_mut(&mut self, matches: impl Fn(&TransferKey) -> bool) -> Option<&mut Transfer> {
        self.transfers.iter_mut().rev().find(|t| matches(&t.key))
    }

    /// Bytes of upload `local` written to the server so far.
    pub fn upload_progress(&mut self, local: u64, written: u64) {
        if let Some(transfer) =
            self.transfer_mut(|key| matches!(key, TransferKey::Upload(l, _) if *l == local))
        {
            transfer.moved = written;
        }
    }

    /// Upload `local` could not be written (the file changed or the link broke).
    pub fn upload_failed(&mut self, local: u64, reason: &str, now_ms: i64) {
        if let Some(transfer) =
            self.transfer_mut(|key| matches!(key, TransferKey::Upload(l, _) if *l == local))
        {
            transfer.status = TransferStatus::Failed(reason.to_string());
            let text = format!("Sending {} failed: {reason}", transfer.name);
            self.notice(Style::Error, text, Some(now_ms));
        }
    }

    /// The server accepted an upload: the oldest upload to `to` named `name` without an id
    /// gets `id`.
    pub fn upload_accepted(&mut self, id: u64, to: &str, name: &str) {
        if let Some(transfer) = self.transfers.iter_mut().find(|t| {
            matches!(t.key, TransferKey::Upload(_, None))
                && t.peer.eq_ignore_ascii_case(to)
                && t.name == name
                && t.status == TransferStatus::Active
        }) && let TransferKey::Upload(local, _) = transfer.key
        {
            transfer.key = TransferKey::Upload(local, Some(id));
        }
    }

    /// The server refused the oldest upload still waiting for its id (the error says why).
    pub fn upload_refused(&mut self, reason: &str) {
        if let Some(transfer) = self.transfers.iter_mut().find(|t| {
            matches!(t.key, TransferKey::Upload(_, None)) && t.status == TransferStatus::Active
        }) {
            transfer.status = TransferStatus::Failed(reason.to_string());
        }
    }

    /// The server id of upload `local`, once known.
    pub fn upload_id(&self, local: u64) -> Option<u64> {
        self.transfers.iter().find_map(|t| match t.key {
            TransferKey::Upload(l, id) if l == local => id,
            _ => None,
        })
    }

    /// True when `id` is the server's id of an upload still moving.
    pub fn is_active_upload(&self, id: u64) -> bool {
        self.transfers.iter().any(|t| {
            matches!(t.key, TransferKey::Upload(_, Some(server)) if server == id)
                && t.status == TransferStatus::Active
        })
    }

    /// A file offered to us is being saved.
    pub fn download_started(&mut self, id: u64, from: &str, name: &str, size: u64, now_ms: i64) {
        self.transfers.push(Transfer {
            key: TransferKey::Download(id),
            direction: Direction::Download,
            peer: from.to_string(),
            name: name.to_string(),
            size,
            moved: 0,
            status: TransferStatus::Active,
        });
        let text = format!("{from} is sending {name} ({size} bytes)");
        self.notice(Style::Notice, text, Some(now_ms));
    }

    /// Bytes of download `id` received so far.
    pub fn download_progress(&mut self, id: u64, received: u64) {
        if let Some(transfer) = self.transfer_mut(|key| *key == TransferKey::Download(id)) {
            transfer.moved = received;
        }
    }

    /// Transfer `id` (either way) ended; `Ok` carries the success message, `Err` the reason.
    pub fn transfer_finished(&mut self, id: u64, result: Result<String, String>, now_ms: i64) {
        let found = self.transfer_mut(|key| match key {
            TransferKey::Download(d) => *d == id,
            TransferKey::Upload(_, server) => *server == Some(id),
        });
        let name = match found {
            Some(transfer) => {
                transfer.status = match &result {
                    Ok(_) => {
                        transfer.moved = transfer.size;
                        TransferStatus::Done
                    }
                    Err(reason) => TransferStatus::Failed(reason.clone()),
                };
                transfer.name.clone()
            }
            None => format!("file {id}"),
        };
        match result {
            Ok(text) => self.notice(Style::Success, text, Some(now_ms)),
            Err(reason) => {
                self.notice(Style::Error, format!("{name}: {reason}"), Some(now_ms));
            }
        }
    }
}

/// The client's own keys and commands, added to the server's `/help`.
const CLIENT_HELP: &[(&str, &str)] = &[
    (
        "/send <user> <local file>",
        "upload a file from this computer",
    ),
    ("/dm <user>", "open a private conversation"),
    ("/quit", "leave"),
    ("Tab", "complete commands, users, channels"),
    ("Up / Down", "typed lines"),
    ("Ctrl-N / Ctrl-P", "next / previous conversation"),
    ("PageUp / PageDown", "scroll"),
];

/// Completion candidates for the last `word`, after the words `before` it.
fn candidates(before: &[&str], word: &str, users: &[String], channels: &[String]) -> Vec<String> {
    let starts = |option: &str| option.to_lowercase().starts_with(&word.to_lowercase());
    let pick = |options: Vec<String>| {
        let mut found: Vec<String> = options.into_iter().filter(|o| starts(o)).collect();
        found.sort_by_key(|o| o.to_lowercase());
        found.dedup();
        found
    };
    match before {
        [] if word.starts_with('/') => pick(COMMANDS.iter().map(|c| c.to_string()).collect()),
        [command] if USER_COMMANDS.contains(command) => pick(users.to_vec()),
        [command] if *command == "/join" => pick(channels.to_vec()),
        _ => Vec::new(),
    }
}

/// `~/x` as `$HOME/x`, the way a shell would read it.
fn expand_home(path: &str) -> String {
    match (path.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> ServerLine {
        ServerLine::parse(json).unwrap()
    }

    fn type_keys(state: &mut ChatState, text: &str) {
        for c in text.chars() {
            state.handle_key(Key::Char(c), 0);
        }
    }

    fn type_line(state: &mut ChatState, text: &str) -> Vec<Action> {
        type_keys(state, text);
        state.handle_key(Key::Enter, 1000)
    }

    fn texts(view: &View) -> Vec<String> {
        view.entries().iter().map(|e| e.text.clone()).collect()
    }

    #[test]
    fn channel_messages_keep_the_server_timestamp_and_author() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(
                r#"{"type":"message","channel":"Global","from":"bob","text":"hi","id":"1","ts":42}"#,
            ),
            7,
        );
        let entry = state.active_view().entries().last().unwrap().clone();
        assert_eq!(entry.time, Some(42));
        assert_eq!(entry.from.as_deref(), Some("bob"));
        assert_eq!(entry.text, "hi");
        assert_eq!(entry.style, Style::Chat);
    }

    #[test]
    fn typed_text_is_sent_and_shown_as_our_own() {
        let mut state = ChatState::new("alice", "user");
        assert_eq!(
            type_line(&mut state, "hello all"),
            vec![Action::Send("hello all".into())]
        );
        let entry = state.active_view().entries().last().unwrap();
        assert_eq!(entry.style, Style::Own);
        assert_eq!(entry.from.as_deref(), Some("alice"));
        assert_eq!(entry.time, Some(1000));
        assert_eq!(
            type_line(&mut state, "//shrug"),
            vec![Action::Send("//shrug".into())]
        );
        assert_eq!(state.active_view().entries().last().unwrap().text, "/shrug");
    }

    #[test]
    fn user_colours_are_stable_and_ignore_case() {
        assert_eq!(name_colour("bob", 12), name_colour("bob", 12));
        assert_eq!(name_colour("Bob", 12), name_colour("bob", 12));
        assert!(name_colour("alice", 12) < 12);
        let spread: std::collections::HashSet<usize> = ["alice", "bob", "carol", "dave", "eve"]
            .iter()
            .map(|name| name_colour(name, 12))
            .collect();
        assert!(spread.len() > 1, "names must not all share a colour");
    }

    #[test]
    fn dms_get_their_own_view_and_unread_counts() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(r#"{"type":"dm","from":"bob","text":"psst","id":"1"}"#),
            5,
        );
        assert_eq!(state.views().len(), 2);
        assert_eq!(state.views()[1].id, ViewId::Dm("bob".into()));
        assert_eq!(state.views()[1].unread, 1);
        assert!(state.active_view().entries().is_empty());
        state.handle_key(Key::NextView, 0);
        assert_eq!(state.active(), 1);
        assert_eq!(state.views()[1].unread, 0);
        // Typing in a DM view answers the partner privately.
        assert_eq!(
            type_line(&mut state, "hey"),
            vec![Action::Send("/msg bob hey".into())]
        );
        assert_eq!(texts(state.active_view()), vec!["psst", "hey"]);
        // Channel messages now count as unread in the channel view.
        state.handle_server(
            event(r#"{"type":"message","channel":"Global","from":"carol","text":"x"}"#),
            6,
        );
        assert_eq!(state.views()[0].unread, 1);
        state.handle_key(Key::PrevView, 0);
        assert_eq!(state.views()[0].unread, 0);
    }

    #[test]
    fn msg_opens_the_dm_view_and_offline_notices_land_there() {
        let mut state = ChatState::new("alice", "user");
        assert_eq!(
            type_line(&mut state, "/msg Bob see you"),
            vec![Action::Send("/msg Bob see you".into())]
        );
        state.handle_server(event(r#"{"type":"dm_stored","to":"bob"}"#), 1);
        assert_eq!(state.views().len(), 2, "Bob and bob are one account");
        assert_eq!(state.views()[1].entries().len(), 2);
        assert!(type_line(&mut state, "/msg bob").is_empty());
        assert_eq!(
            state.active_view().entries().last().unwrap().style,
            Style::Error
        );
    }

    #[test]
    fn history_moves_through_typed_lines_and_restores_the_draft() {
        let mut state = ChatState::new("alice", "user");
        type_line(&mut state, "one");
        type_line(&mut state, "two");
        type_keys(&mut state, "dra");
        state.handle_key(Key::Up, 0);
        assert_eq!(state.input.text(), "two");
        state.handle_key(Key::Up, 0);
        assert_eq!(state.input.text(), "one");
        state.handle_key(Key::Up, 0);
        assert_eq!(state.input.text(), "one");
        state.handle_key(Key::Down, 0);
        assert_eq!(state.input.text(), "two");
        state.handle_key(Key::Down, 0);
        assert_eq!(state.input.text(), "dra");
    }

    #[test]
    fn editing_keys_work_on_characters_not_bytes() {
        let mut state = ChatState::new("alice", "user");
        type_keys(&mut state, "héllo");
        state.handle_key(Key::Home, 0);
        state.handle_key(Key::Right, 0);
        state.handle_key(Key::Delete, 0);
        assert_eq!(state.input.text(), "hllo");
        state.handle_key(Key::End, 0);
        state.handle_key(Key::Backspace, 0);
        assert_eq!(state.input.text(), "hll");
        assert_eq!(state.input.cursor(), 3);
        state.handle_key(Key::ClearLine, 0);
        assert_eq!(state.input.text(), "");
    }

    #[test]
    fn tab_completes_commands_then_cycles_through_matches() {
        let mut state = ChatState::new("alice", "user");
        type_keys(&mut state, "/jo");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/join ");
        state.handle_key(Key::ClearLine, 0);
        type_keys(&mut state, "/p");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/ping ");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/profile ");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/ping ");
    }

    #[test]
    fn tab_completes_users_and_channels_after_their_commands() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(r#"{"type":"list","users":["alice","bob","Barbara"]}"#),
            0,
        );
        state.handle_server(
            event(r#"{"type":"channels","channels":[{"name":"rust","members":2}]}"#),
            0,
        );
        type_keys(&mut state, "/msg bo");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/msg bob ");
        state.handle_key(Key::ClearLine, 0);
        type_keys(&mut state, "/join r");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "/join rust ");
        state.handle_key(Key::ClearLine, 0);
        type_keys(&mut state, "hello");
        state.handle_key(Key::Tab, 0);
        assert_eq!(state.input.text(), "hello", "plain text is not completed");
    }

    #[test]
    fn help_lists_the_clients_send_instead_of_the_servers() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(
                r#"{"type":"help","commands":[["/list","users online"],["/send <user> <name> <size>","upload"],["/mode <text|json>","mode"]]}"#,
            ),
            0,
        );
        let shown = texts(state.active_view()).join("\n");
        assert!(shown.contains("/list"), "{shown}");
        assert!(shown.contains("/send <user> <local file>"), "{shown}");
        assert!(!shown.contains("<name> <size>"), "{shown}");
        assert!(!shown.contains("/mode"), "{shown}");
    }

    #[test]
    fn channel_list_keeps_member_counts_and_refreshes_on_joins() {
        let mut state = ChatState::new("alice", "user");
        let asked = state.refresh_lines();
        assert_eq!(
            asked,
            vec![
                Action::Send("/channels".into()),
                Action::Send("/list".into())
            ]
        );
        state.handle_server(
            event(
                r#"{"type":"channels","channels":[{"name":"Global","members":3},{"name":"rust","members":1}]}"#,
            ),
            0,
        );
        state.handle_server(event(r#"{"type":"list","users":["alice"]}"#), 0);
        assert_eq!(state.channels.len(), 2);
        assert_eq!(state.channels[0].members, 3);
        assert!(
            state.active_view().entries().is_empty(),
            "answers the client asked for itself are not shown"
        );
        assert!(!state.take_refresh_wanted());
        state.handle_server(
            event(r#"{"type":"join","user":"bob","channel":"Global"}"#),
            0,
        );
        assert!(state.take_refresh_wanted());
        assert!(!state.take_refresh_wanted());
        // A /channels the user typed is answered on screen.
        assert_eq!(
            type_line(&mut state, "/channels"),
            vec![Action::Send("/channels".into())]
        );
        state.handle_server(
            event(r#"{"type":"channels","channels":[{"name":"Global","members":4}]}"#),
            0,
        );
        assert_eq!(
            state.active_view().entries().last().unwrap().text,
            "Channels: Global (4)"
        );
    }

    #[test]
    fn switching_channels_shows_each_channels_own_messages() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(event(r#"{"type":"channel","channel":"Global"}"#), 0);
        state.handle_server(
            event(r#"{"type":"message","channel":"Global","from":"bob","text":"in global"}"#),
            0,
        );
        state.handle_server(
            event(r#"{"type":"switched","from":"Global","to":"rust"}"#),
            0,
        );
        state.handle_server(
            event(r#"{"type":"history","channel":"rust","from":"carol","text":"old","sent_at":3}"#),
            0,
        );
        assert_eq!(state.channel, "rust");
        assert_eq!(texts(state.active_view()), vec!["You are in rust", "old"]);
        assert_eq!(state.active_view().entries()[1].time, Some(3));
        assert!(state.take_refresh_wanted());
        state.handle_server(
            event(r#"{"type":"switched","from":"rust","to":"Global"}"#),
            0,
        );
        assert!(texts(state.active_view()).contains(&"in global".to_string()));
    }

    #[test]
    fn the_topic_follows_joins_changes_and_channel_lists_and_names_show_in_the_channel() {
        let mut state = ChatState::new("alice", "user");
        for line in [
            r#"{"type":"switched","from":"Global","to":"rust"}"#,
            r#"{"type":"topic","channel":"rust","topic":"crabs"}"#,
        ] {
            state.handle_server(event(line), 0);
        }
        assert_eq!(state.topic.as_deref(), Some("crabs"));
        state.handle_server(event(r#"{"type":"topic","channel":"rust","by":"bob"}"#), 0);
        assert_eq!(state.topic, None, "cleared");
        state.handle_server(
            event(r#"{"type":"channels","channels":[{"name":"rust","members":2,"topic":"new"}]}"#),
            0,
        );
        assert_eq!(state.topic.as_deref(), Some("new"));
        state.handle_server(event(r#"{"type":"switched","from":"rust","to":"side"}"#), 0);
        assert_eq!(state.topic, None, "a channel without a topic line has none");
        state.handle_server(
            event(r#"{"type":"names","channel":"side","users":["alice","bob"]}"#),
            0,
        );
        assert_eq!(
            texts(state.active_view()).last().map(String::as_str),
            Some("In side: alice, bob")
        );
        state.handle_server(event(r#"{"type":"away_set","text":"lunch"}"#), 0);
        assert_eq!(state.away.as_deref(), Some("lunch"));
        state.handle_server(event(r#"{"type":"away_set"}"#), 0);
        assert_eq!(state.away, None);
    }

    #[test]
    fn status_follows_welcome_role_and_profile() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(event(r#"{"type":"role","role":"mod","by":"root"}"#), 0);
        assert_eq!(state.role, "mod");
        state.handle_server(
            event(r#"{"type":"profile","user":"Alice","channel":"Global","role":"admin"}"#),
            0,
        );
        assert_eq!(
            (state.user.as_str(), state.role.as_str()),
            ("Alice", "admin")
        );
    }

    #[test]
    fn a_lost_connection_reconnects_and_rejoins_the_channel() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(r#"{"type":"switched","from":"Global","to":"rust"}"#),
            0,
        );
        state.disconnected("connection reset", 10);
        assert_eq!(state.connection, Connection::Reconnecting { attempt: 1 });
        assert!(state.wants_reconnect());
        let actions = state.reconnected("alice", "user", 20);
        assert_eq!(state.connection, Connection::Online);
        assert_eq!(actions[0], Action::Send("/join rust".into()));
        assert!(actions.contains(&Action::Send("/channels".into())));
    }

    #[test]
    fn kicked_or_goodbye_means_no_reconnect() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(event(r#"{"type":"kicked","by":"root","reason":"spam"}"#), 0);
        state.disconnected("closed by the server", 1);
        assert!(!state.wants_reconnect());
        assert!(matches!(state.connection, Connection::Offline(_)));
    }

    #[test]
    fn banned_means_no_reconnect_and_says_why() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(event(r#"{"type":"banned","by":"mo","reason":"spam"}"#), 0);
        state.disconnected("closed by the server", 1);
        assert!(!state.wants_reconnect());
        let texts = texts(state.active_view());
        assert!(texts.contains(&"You are banned by mo until lifted: spam".to_string()));
    }

    #[test]
    fn bans_are_listed_one_per_line_with_who_until_when_and_why() {
        let mut state = ChatState::new("mo", "mod");
        state.handle_server(
            event(
                r#"{"type":"sanctions","sanctions":[{"kind":"ban","user":"bob","by":"mo","reason":"spam","set_at":0},{"kind":"mute","user":"al","by":"root","reason":"noise","set_at":0}]}"#,
            ),
            0,
        );
        let texts = texts(state.active_view());
        let start = texts.len() - 3;
        assert_eq!(
            texts[start..],
            [
                "Bans and mutes (2):",
                "  ban  bob  by mo, until lifted: spam",
                "  mute al   by root, until lifted: noise",
            ]
        );
        state.handle_server(event(r#"{"type":"sanctions","sanctions":[]}"#), 0);
        assert_eq!(texts_last(state.active_view()), "No bans or mutes.");
    }

    fn texts_last(view: &View) -> String {
        texts(view).pop().unwrap_or_default()
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(2));
        assert_eq!(backoff(7), Duration::from_secs(30));
        assert_eq!(backoff(100), Duration::from_secs(30));
    }

    #[test]
    fn send_is_a_local_upload_and_quit_leaves() {
        let mut state = ChatState::new("alice", "user");
        assert_eq!(
            type_line(&mut state, "/send bob /tmp/my file.bin"),
            vec![Action::Upload {
                to: "bob".into(),
                path: PathBuf::from("/tmp/my file.bin")
            }]
        );
        assert!(type_line(&mut state, "/send bob").is_empty());
        assert_eq!(type_line(&mut state, "/quit"), vec![Action::Quit]);
        assert!(
            type_line(&mut state, "/mode text").is_empty(),
            "the client must stay in JSON mode"
        );
        assert_eq!(
            type_line(&mut state, "/profile"),
            vec![Action::Send("/profile".into())]
        );
    }

    #[test]
    fn uploads_track_progress_from_local_number_to_server_id() {
        let mut state = ChatState::new("alice", "user");
        let local = state.upload_started("bob", "a.bin", 100, 0);
        state.upload_progress(local, 40);
        assert_eq!(state.transfers[0].ratio(), 0.4);
        state.upload_accepted(9, "bob", "a.bin");
        assert_eq!(state.upload_id(local), Some(9));
        state.transfer_finished(9, Ok("a.bin sent to bob".into()), 0);
        assert_eq!(state.transfers[0].status, TransferStatus::Done);
        assert_eq!(state.transfers[0].moved, 100);
        let refused = state.upload_started("carol", "b.bin", 1, 0);
        state.upload_refused("carol is not online");
        assert_eq!(state.upload_id(refused), None);
        assert!(matches!(
            state.transfers[1].status,
            TransferStatus::Failed(_)
        ));
    }

    #[test]
    fn downloads_report_success_and_failure_clearly() {
        let mut state = ChatState::new("alice", "user");
        state.download_started(3, "bob", "a.bin", 10, 0);
        state.download_progress(3, 5);
        assert_eq!(state.transfers[0].moved, 5);
        state.transfer_finished(3, Err("incomplete: 5 of 10 bytes arrived".into()), 0);
        let last = state.active_view().entries().last().unwrap();
        assert_eq!(last.style, Style::Error);
        assert!(last.text.contains("a.bin") && last.text.contains("5 of 10"));
        state.download_started(4, "bob", "b.bin", 1, 0);
        state.transfer_finished(4, Ok("Saved b.bin".into()), 0);
        assert_eq!(
            state.active_view().entries().last().unwrap().style,
            Style::Success
        );
        state.disconnected("gone", 0);
        assert_eq!(state.transfers[1].status, TransferStatus::Done);
    }

    #[test]
    fn scrolling_stays_within_the_view() {
        let mut state = ChatState::new("alice", "user");
        for n in 0..30 {
            state.notice(Style::Notice, format!("line {n}"), None);
        }
        state.handle_key(Key::PageUp, 0);
        assert_eq!(state.active_view().scroll, 10);
        state.handle_key(Key::PageDown, 0);
        state.handle_key(Key::PageDown, 0);
        assert_eq!(state.active_view().scroll, 0);
    }

    fn history_line(id: u32, text: &str) -> ServerLine {
        event(&format!(
            r#"{{"type":"history","channel":"Global","from":"bob","text":"{text}","sent_at":1,"id":"{id:032x}","ts":2}}"#
        ))
    }

    fn pong(token: &str) -> ServerLine {
        event(&format!(r#"{{"type":"pong","token":"{token}","ts":2}}"#))
    }

    /// Scrolls the view on screen to its top, then once more; returns what that asked.
    fn scroll_past_the_top(state: &mut ChatState) -> Vec<Action> {
        let mut actions = Vec::new();
        for _ in 0..=state.active_view().entries().len() / 10 + 1 {
            actions = state.handle_key(Key::PageUp, 0);
            if !actions.is_empty() {
                break;
            }
        }
        actions
    }

    #[test]
    fn scrolling_past_the_top_loads_the_page_before_the_oldest_message_above_it() {
        let mut state = ChatState::new("alice", "user");
        for id in 100..103 {
            state.handle_server(history_line(id, &format!("m{id}")), 0);
        }
        let asked = scroll_past_the_top(&mut state);
        assert_eq!(
            asked,
            [
                Action::Send(format!("/history {OLDER_PAGE} before {:032x}", 100)),
                Action::Send(format!("/ping {OLDER_PAGE_END}"))
            ]
        );
        // Nothing more is asked while the page is on its way.
        assert!(state.handle_key(Key::PageUp, 0).is_empty());
        for id in 50..52 {
            state.handle_server(history_line(id, &format!("m{id}")), 0);
        }
        state.handle_server(
            event(&format!(
                r#"{{"type":"history_more","count":2,"before":"{:032x}","ts":2}}"#,
                50
            )),
            0,
        );
        state.handle_server(pong(OLDER_PAGE_END), 0);
        let shown = texts(state.active_view());
        assert_eq!(shown[..5], ["m50", "m51", "m100", "m101", "m102"]);
        assert!(
            !shown.iter().any(|t| t.contains(OLDER_PAGE_END)),
            "the end mark is not shown"
        );
        // The page was full: the next one is asked before its oldest.
        let asked = scroll_past_the_top(&mut state);
        assert_eq!(
            asked.first(),
            Some(&Action::Send(format!(
                "/history {OLDER_PAGE} before {:032x}",
                50
            )))
        );
        // A page that is not full is the beginning: nothing more is asked.
        state.handle_server(history_line(7, "m7"), 0);
        state.handle_server(pong(OLDER_PAGE_END), 0);
        assert_eq!(texts(state.active_view())[0], "m7");
        assert!(scroll_past_the_top(&mut state).is_empty());
    }

    #[test]
    fn a_private_conversation_pages_back_with_its_user() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(&format!(
                r#"{{"type":"dm","from":"bob","text":"live","id":"{:032x}","ts":2}}"#,
                9
            )),
            0,
        );
        let at = state
            .views()
            .iter()
            .position(|v| v.id == ViewId::Dm("bob".into()))
            .unwrap();
        state.activate(at);
        let asked = scroll_past_the_top(&mut state);
        assert_eq!(
            asked.first(),
            Some(&Action::Send(format!(
                "/history @bob {OLDER_PAGE} before {:032x}",
                9
            )))
        );
        state.handle_server(
            event(&format!(
                r#"{{"type":"dm_history","with":"bob","from":"alice","text":"earlier","sent_at":1,"id":"{:032x}","ts":2}}"#,
                3
            )),
            0,
        );
        state.handle_server(pong(OLDER_PAGE_END), 0);
        assert_eq!(texts(state.active_view()), ["earlier", "live"]);
        assert_eq!(state.active_view().entries()[0].style, Style::Own);
    }

    #[test]
    fn a_refused_older_page_can_be_asked_again_and_a_lost_connection_drops_it() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(history_line(100, "m100"), 0);
        assert!(!scroll_past_the_top(&mut state).is_empty());
        state.handle_server(
            event(r#"{"type":"error","code":"busy","message":"the server is busy; try again","ts":2}"#),
            0,
        );
        state.handle_server(pong(OLDER_PAGE_END), 0);
        assert!(
            !scroll_past_the_top(&mut state).is_empty(),
            "not taken for the start: asked again"
        );
        state.disconnected("gone", 0);
        // The replay after reconnecting is shown, not swallowed by the dropped page.
        state.handle_server(history_line(100, "m100 again"), 0);
        assert!(texts(state.active_view()).contains(&"m100 again".to_string()));
    }

    #[test]
    fn a_live_message_before_the_replay_does_not_hide_the_replay_from_paging() {
        let mut state = ChatState::new("alice", "user");
        state.handle_server(
            event(&format!(
                r#"{{"type":"message","channel":"Global","from":"bob","text":"live","id":"{:032x}","ts":2}}"#,
                200
            )),
            0,
        );
        state.handle_server(history_line(100, "m100"), 0);
        state.handle_server(history_line(101, "m101"), 0);
        let asked = scroll_past_the_top(&mut state);
        assert_eq!(
            asked.first(),
            Some(&Action::Send(format!(
                "/history {OLDER_PAGE} before {:032x}",
                100
            ))),
            "the page before the replay's oldest, not before the live message"
        );
    }
}

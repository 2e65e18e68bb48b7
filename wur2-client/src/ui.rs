//! Drawing [`ChatState`] with ratatui: messages on the left, channels, conversations and
//! file transfers on the right, then the status line and the input line. It only reads
//! the state; every change goes through [`crate::state`].

use chrono::{DateTime, Local};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style as Look};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use wur2_engine::sanitize_text;

use crate::state::{
    ChatState, Connection, Direction, Entry, Style, TransferStatus, ViewId, name_colour,
};

/// Colours for user names; a name always gets the same one.
const NAME_COLOURS: [Color; 10] = [
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::LightRed,
    Color::LightGreen,
    Color::LightBlue,
    Color::LightMagenta,
];

/// Width of the side bar.
const SIDE_WIDTH: u16 = 30;

/// The colour of `name`.
pub fn colour_of(name: &str) -> Color {
    NAME_COLOURS[name_colour(name, NAME_COLOURS.len())]
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, state: &ChatState) {
    let [main, status, input] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [messages, side] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDE_WIDTH)]).areas(main);
    draw_messages(frame, state, messages);
    draw_side(frame, state, side);
    frame.render_widget(Paragraph::new(status_line(state)), status);
    draw_input(frame, state, input);
}

fn draw_messages(frame: &mut Frame, state: &ChatState, area: Rect) {
    let view = state.active_view();
    let mut title = match &view.id {
        ViewId::Channel => match &state.topic {
            Some(topic) => format!(" {} — {topic} ", state.channel),
            None => format!(" {} ", state.channel),
        },
        ViewId::Dm(user) => format!(" private: {user} "),
    };
    if view.scroll > 0 {
        title.push_str(&format!("(scrolled back {}, PageDown) ", view.scroll));
    }
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width.max(1));
    let height = usize::from(inner.height);
    let end = view.entries().len().saturating_sub(view.scroll);
    // Walk back from the newest visible entry until the screen is full.
    let mut lines: Vec<Line> = Vec::new();
    let mut used = 0;
    for entry in view.entries()[..end].iter().rev() {
        let line = entry_line(entry);
        used += line.width().max(1).div_ceil(width);
        lines.push(line);
        if used >= height {
            break;
        }
    }
    lines.reverse();
    let overflow = u16::try_from(used.saturating_sub(height)).unwrap_or(u16::MAX);
    let paragraph = Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .scroll((overflow, 0));
    frame.render_widget(paragraph, inner);
}

/// One entry: time, author in their colour, text.
pub fn entry_line(entry: &Entry) -> Line<'static> {
    let mut spans = Vec::with_capacity(4);
    if let Some(ms) = entry.time {
        spans.push(Span::styled(
            format!("{} ", clock(ms)),
            Look::default().fg(Color::DarkGray),
        ));
    }
    let text_look = match entry.style {
        Style::Chat | Style::Own => Look::default(),
        Style::Notice => Look::default()
            .fg(Color::Gray)
            .add_modifier(Modifier::ITALIC),
        Style::Success => Look::default().fg(Color::Green),
        Style::Error => Look::default().fg(Color::Red),
    };
    match &entry.from {
        Some(from) => {
            let mut look = Look::default()
                .fg(colour_of(from))
                .add_modifier(Modifier::BOLD);
            if entry.style == Style::Own {
                look = look.add_modifier(Modifier::UNDERLINED);
            }
            spans.push(Span::styled(printable(from), look));
            spans.push(Span::raw(": "));
        }
        None => spans.push(Span::styled("* ", text_look)),
    }
    spans.push(Span::styled(printable(&entry.text), text_look));
    Line::from(spans)
}

/// `text` as it may reach the terminal: the engine's own sanitiser (no control characters,
/// escape sequences or bidi overrides), tabs as spaces. The server already strips what
/// people send; a client does not bet that nothing ever gets through.
pub fn printable(text: &str) -> String {
    sanitize_text(text).replace('\t', " ")
}

/// `HH:MM` in local time, or the date too when it is not today.
fn clock(ms: i64) -> String {
    let Some(utc) = DateTime::from_timestamp_millis(ms) else {
        return "--:--".into();
    };
    let local = utc.with_timezone(&Local);
    if local.date_naive() == Local::now().date_naive() {
        local.format("%H:%M").to_string()
    } else {
        local.format("%m-%d %H:%M").to_string()
    }
}

fn draw_side(frame: &mut Frame, state: &ChatState, area: Rect) {
    let transfers = state.transfers.iter().rev().take(5).count();
    let [channels, views, files] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(u16::try_from(state.views().len()).unwrap_or(10).min(10) + 2),
        Constraint::Length(u16::try_from(transfers * 2).unwrap_or(10) + 2),
    ])
    .areas(area);

    let channel_lines: Vec<Line> = state
        .channels
        .iter()
        .map(|channel| {
            let here = channel.name.eq_ignore_ascii_case(&state.channel);
            let look = if here {
                Look::default().add_modifier(Modifier::BOLD)
            } else {
                Look::default()
            };
            Line::from(vec![
                Span::styled(
                    format!("{} {}", if here { ">" } else { " " }, channel.name),
                    look,
                ),
                Span::styled(
                    format!(" ({})", channel.members),
                    Look::default().fg(Color::DarkGray),
                ),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(channel_lines)
            .block(Block::default().borders(Borders::ALL).title(" Channels ")),
        channels,
    );

    let view_lines: Vec<Line> = state
        .views()
        .iter()
        .enumerate()
        .map(|(at, view)| {
            let active = at == state.active();
            let mut spans = vec![Span::styled(
                format!(
                    "{} {}",
                    if active { ">" } else { " " },
                    state.view_title(&view.id)
                ),
                if active {
                    Look::default().add_modifier(Modifier::BOLD)
                } else {
                    Look::default()
                },
            )];
            if view.unread > 0 {
                spans.push(Span::styled(
                    format!(" [{}]", view.unread),
                    Look::default()
                        .fg(Color::Yellow)
                        .add_modifier(Modifier::BOLD),
                ));
            }
            Line::from(spans)
        })
        .collect();
    frame.render_widget(
        Paragraph::new(view_lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Conversations "),
        ),
        views,
    );

    let bar_width = usize::from(SIDE_WIDTH.saturating_sub(10));
    let mut file_lines = Vec::new();
    for transfer in state.transfers.iter().rev().take(5) {
        let arrow = match transfer.direction {
            Direction::Upload => "↑",
            Direction::Download => "↓",
        };
        let (look, tail) = match &transfer.status {
            TransferStatus::Active => (
                Look::default(),
                format!("{:3.0}%", transfer.ratio() * 100.0),
            ),
            TransferStatus::Done => (Look::default().fg(Color::Green), "done".to_string()),
            TransferStatus::Failed(_) => (Look::default().fg(Color::Red), "FAIL".to_string()),
        };
        let id = transfer
            .server_id()
            .map(|id| format!("#{id} "))
            .unwrap_or_default();
        file_lines.push(Line::styled(
            format!("{arrow} {id}{} {}", transfer.name, transfer.peer),
            look,
        ));
        file_lines.push(Line::styled(
            format!("{} {tail}", progress_bar(transfer.ratio(), bar_width)),
            look,
        ));
    }
    frame.render_widget(
        Paragraph::new(file_lines).block(Block::default().borders(Borders::ALL).title(" Files ")),
        files,
    );
}

/// `[#####.....]` of `width` characters.
pub fn progress_bar(ratio: f64, width: usize) -> String {
    let inner = width.saturating_sub(2);
    let filled = ((ratio.clamp(0.0, 1.0) * inner as f64).round() as usize).min(inner);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(inner - filled))
}

/// Connection, user, role (and away message) and channel.
pub fn status_line(state: &ChatState) -> Line<'static> {
    let (dot, look, words) = match &state.connection {
        Connection::Online => ("●", Look::default().fg(Color::Green), "online".to_string()),
        Connection::Reconnecting { attempt } => (
            "●",
            Look::default().fg(Color::Yellow),
            format!("reconnecting (attempt {attempt})"),
        ),
        Connection::Offline(reason) => (
            "●",
            Look::default().fg(Color::Red),
            format!("offline: {reason}"),
        ),
    };
    let away = match &state.away {
        Some(text) => format!(" | away: {text}"),
        None => String::new(),
    };
    Line::from(vec![
        Span::styled(format!("{dot} {words}"), look),
        Span::raw(format!(
            " | {} ({}){away} | {} | Tab completes, Ctrl-N/P switch, /help",
            state.user, state.role, state.channel
        )),
    ])
    .style(Look::default().bg(Color::Black))
}

fn draw_input(frame: &mut Frame, state: &ChatState, area: Rect) {
    let prompt = match &state.active_view().id {
        ViewId::Channel => format!("[{}] ", state.channel),
        ViewId::Dm(user) => format!("[@{user}] "),
    };
    let prompt_width = Line::raw(prompt.clone()).width();
    let text = state.input.text();
    let before: String = text.chars().take(state.input.cursor()).collect();
    let cursor_at = prompt_width + Line::raw(before).width();
    let width = usize::from(area.width.max(1));
    // Keep the cursor on screen for lines longer than the terminal.
    let shift = cursor_at.saturating_sub(width.saturating_sub(1));
    let line = Line::from(vec![
        Span::styled(prompt, Look::default().fg(Color::Cyan)),
        Span::raw(text.to_string()),
    ]);
    frame.render_widget(
        Paragraph::new(line).scroll((0, u16::try_from(shift).unwrap_or(0))),
        area,
    );
    let x = area.x + u16::try_from(cursor_at - shift).unwrap_or(0);
    frame.set_cursor_position((x, area.y));
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use wur2_engine::json::ServerLine;

    fn screen(state: &ChatState) -> String {
        let mut terminal = Terminal::new(TestBackend::new(100, 20)).unwrap();
        terminal.draw(|frame| draw(frame, state)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn the_screen_shows_messages_channels_conversations_and_status() {
        let mut state = ChatState::new("alice", "mod");
        for line in [
            r#"{"type":"channel","channel":"Global"}"#,
            r#"{"type":"message","channel":"Global","from":"bob","text":"hello there","ts":0}"#,
            r#"{"type":"channels","channels":[{"name":"Global","members":3},{"name":"rust","members":1}]}"#,
            r#"{"type":"dm","from":"carol","text":"psst"}"#,
        ] {
            state.handle_server(ServerLine::parse(line).unwrap(), 0);
        }
        state.handle_server(
            ServerLine::parse(r#"{"type":"topic","channel":"Global","topic":"all welcome"}"#)
                .unwrap(),
            0,
        );
        let local = state.upload_started("bob", "a.bin", 10, 0);
        state.upload_progress(local, 5);
        let shown = screen(&state);
        assert!(shown.contains("bob: hello there"), "{shown}");
        assert!(
            shown.contains("Global — all welcome"),
            "the topic heads the channel: {shown}"
        );
        assert!(shown.contains("Global (3)"), "{shown}");
        assert!(shown.contains("rust (1)"), "{shown}");
        assert!(shown.contains("@carol [1]"), "{shown}");
        assert!(shown.contains("online | alice (mod) | Global"), "{shown}");
        assert!(shown.contains("↑ a.bin bob"), "{shown}");
        state.upload_accepted(7, "bob", "a.bin");
        let shown = screen(&state);
        assert!(shown.contains("↑ #7 a.bin bob"), "{shown}");
        assert!(shown.contains("50%"), "{shown}");
    }

    #[test]
    fn the_newest_messages_stay_visible() {
        let mut state = ChatState::new("alice", "user");
        for n in 0..100 {
            state.notice(Style::Notice, format!("line {n}"), None);
        }
        let shown = screen(&state);
        assert!(shown.contains("line 99"), "{shown}");
        assert!(!shown.contains("line 50 "), "{shown}");
        state.handle_key(crate::state::Key::PageUp, 0);
        let shown = screen(&state);
        assert!(shown.contains("line 89"), "{shown}");
        assert!(!shown.contains("line 99"), "{shown}");
        assert!(shown.contains("scrolled back 10"), "{shown}");
    }

    #[test]
    fn terminal_escapes_never_reach_the_screen() {
        assert_eq!(printable("a\u{1b}[2Jb\u{7}c\td"), "abc d");
    }

    #[test]
    fn progress_bars_fill_with_the_ratio() {
        assert_eq!(progress_bar(0.0, 6), "[....]");
        assert_eq!(progress_bar(0.5, 6), "[##..]");
        assert_eq!(progress_bar(1.0, 6), "[####]");
    }
}

//! Every line the server sends, in one place: the text protocol of `docs/PROTOCOL.md`.
//!
//! Each function returns one complete line, `\n` included, ready to share between
//! recipients. Names in lines are validated names; message text is sanitised before it
//! gets here.

use std::fmt::Write;

use bytes::Bytes;

use crate::ids::TransferId;
use crate::store::Role;

/// Builds one `\n`-terminated line.
fn line(args: std::fmt::Arguments<'_>) -> Bytes {
    let mut text = String::with_capacity(64);
    // Writing to a String cannot fail.
    let _ = text.write_fmt(args);
    text.push('\n');
    Bytes::from(text)
}

macro_rules! line {
    ($($arg:tt)*) => { line(format_args!($($arg)*)) };
}

pub(crate) fn text(message: &str) -> Bytes {
    line!("{message}")
}

pub(crate) fn error(message: std::fmt::Arguments<'_>) -> Bytes {
    line!("Error: {message}")
}

pub(crate) fn ask_account() -> Bytes {
    Bytes::from_static(b"Do you have an account? (y/n)\n")
}

pub(crate) fn ask_username() -> Bytes {
    Bytes::from_static(b"Enter username:\n")
}

pub(crate) fn ask_password() -> Bytes {
    Bytes::from_static(b"Enter password:\n")
}

pub(crate) fn welcome_new(user: &str) -> Bytes {
    line!("Welcome {user}!")
}

pub(crate) fn welcome_back(user: &str) -> Bytes {
    line!("Welcome back {user}!")
}

pub(crate) fn invalid_credentials() -> Bytes {
    Bytes::from_static(b"Error: invalid username or password\n")
}

/// One chat message to a channel, encoded once for every member.
pub(crate) fn chat(channel: &str, user: &str, text: &str) -> Bytes {
    let mut buf = Vec::with_capacity(channel.len() + user.len() + text.len() + 6);
    buf.push(b'[');
    buf.extend_from_slice(channel.as_bytes());
    buf.extend_from_slice(b"] ");
    buf.extend_from_slice(user.as_bytes());
    buf.extend_from_slice(b": ");
    buf.extend_from_slice(text.as_bytes());
    buf.push(b'\n');
    Bytes::from(buf)
}

pub(crate) fn direct(sender: &str, text: &str) -> Bytes {
    line!("[DM] {sender}: {text}")
}

pub(crate) fn offline_direct(sender: &str, text: &str, sent_at_unix_ms: i64) -> Bytes {
    line!(
        "[offline DM {}] {sender}: {text}",
        Timestamp(sent_at_unix_ms)
    )
}

pub(crate) fn history(channel: &str, sender: &str, text: &str, sent_at_unix_ms: i64) -> Bytes {
    line!(
        "[history {}] [{channel}] {sender}: {text}",
        Timestamp(sent_at_unix_ms)
    )
}

pub(crate) fn stored_for_later(recipient: &str) -> Bytes {
    line!("{recipient} is offline; the message will be delivered at their next login.")
}

pub(crate) fn joined(user: &str, channel: &str) -> Bytes {
    line!("* {user} joined {channel}")
}

pub(crate) fn left(user: &str, channel: &str) -> Bytes {
    line!("* {user} left {channel}")
}

pub(crate) fn switched(from: &str, to: &str) -> Bytes {
    line!("Switched from {from} to {to}")
}

pub(crate) fn now_in(channel: &str) -> Bytes {
    line!("You are in {channel}")
}

pub(crate) fn kicked_you(by: &str, reason: &str) -> Bytes {
    line!("You were kicked by {by}: {reason}")
}

pub(crate) fn kicked_notice(user: &str, by: &str, reason: &str) -> Bytes {
    line!("* {user} was kicked by {by}: {reason}")
}

pub(crate) fn kick_done(user: &str) -> Bytes {
    line!("You kicked {user}.")
}

pub(crate) fn your_role(role: Role) -> Bytes {
    line!("Your role is {role}")
}

pub(crate) fn role_set(user: &str, role: Role) -> Bytes {
    line!("{user} is now {role}")
}

pub(crate) fn role_changed(role: Role, by: &str) -> Bytes {
    line!("Your role is now {role} (set by {by})")
}

pub(crate) fn users<'a>(names: impl Iterator<Item = &'a str>) -> Bytes {
    let mut text = String::from("Connected users: ");
    join_into(&mut text, names);
    text.push('\n');
    Bytes::from(text)
}

pub(crate) fn channels<'a>(entries: impl Iterator<Item = (&'a str, usize)>) -> Bytes {
    let mut text = String::from("Channels: ");
    let mut first = true;
    for (name, members) in entries {
        if !first {
            text.push_str(", ");
        }
        first = false;
        let _ = write!(text, "{name} ({members})");
    }
    text.push('\n');
    Bytes::from(text)
}

pub(crate) fn profile(user: &str, channel: &str, role: Role) -> Bytes {
    line!("Username: {user} | Channel: {channel} | Role: {role}")
}

pub(crate) fn pong(token: &str) -> Bytes {
    if token.is_empty() {
        Bytes::from_static(b"PONG\n")
    } else {
        line!("PONG {token}")
    }
}

pub(crate) fn goodbye() -> Bytes {
    Bytes::from_static(b"Goodbye!\n")
}

pub(crate) fn shutting_down() -> Bytes {
    Bytes::from_static(b"Server is shutting down. Goodbye!\n")
}

/// The command list, for one role (or before login when `role` is `None`).
pub(crate) fn help(role: Option<Role>) -> Bytes {
    let mut text = String::from("Commands:\n");
    let Some(role) = role else {
        text.push_str(
            "  /register <user> <password>  create an account\n\
             \x20 /login <user> <password>     log in\n\
             \x20 /ping [token]                answered PONG [token]\n\
             \x20 /close                       leave\n",
        );
        return Bytes::from(text);
    };
    text.push_str(
        "  <text>                 message your channel\n\
         \x20 /msg <user> <text>     private message (kept for offline users)\n\
         \x20 /join <channel>        switch channel\n\
         \x20 /list                  users online\n\
         \x20 /channels              channels and member counts\n\
         \x20 /profile               your name, channel and role\n\
         \x20 /history [n]           the channel's last n messages\n\
         \x20 /send <user> <name> <size>  send a file: the <size> bytes follow the line\n\
         \x20 /send <user> <path>    send a file from the server's files directory\n\
         \x20 /cancel <id>           stop a file transfer\n\
         \x20 /role                  your role\n",
    );
    if role >= Role::Mod {
        text.push_str("  /kick <user> [reason]  close every session of a user\n");
    }
    if role == Role::Admin {
        text.push_str("  /role <user> <role>    set a role: user, mod or admin\n");
    }
    text.push_str(
        "  /ping [token]          answered PONG [token]\n\
         \x20 /close                 leave\n\
         \x20 /help                  this list\n",
    );
    Bytes::from(text)
}

pub(crate) fn file_offer(id: TransferId, sender: &str, name: &str, size: u64) -> Bytes {
    line!("[file {id}] {sender} is sending {name} ({size} bytes)")
}

pub(crate) fn file_sending(id: TransferId, name: &str, size: u64, to: &str) -> Bytes {
    line!("[file {id}] sending {name} ({size} bytes) to {to}")
}

pub(crate) fn file_received(id: TransferId, name: &str, size: u64, from: &str) -> Bytes {
    line!("[file {id} done] {name} ({size} bytes) from {from}")
}

pub(crate) fn file_sent(id: TransferId, name: &str, to: &str) -> Bytes {
    line!("[file {id} done] {name} sent to {to}")
}

pub(crate) fn file_cancelled(id: TransferId, reason: &str) -> Bytes {
    line!("[file {id} cancelled] {reason}")
}

/// One piece of a file: `[file <id> data <n>]`, a line break, exactly `n` raw bytes and a
/// line break when the bytes are safe to show on a terminal (text); otherwise
/// `[file <id> base64 <n>]` and one line of standard base64 that decodes to the `n` bytes.
pub(crate) fn file_chunk(id: TransferId, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + 40);
    let safe = is_terminal_safe(data);
    let kind = if safe { "data" } else { "base64" };
    let _ = writeln!(Buffer(&mut out), "[file {id} {kind} {}]", data.len());
    if safe {
        out.extend_from_slice(data);
    } else {
        base64_into(data, &mut out);
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// Text a terminal shows as text: UTF-8 (a character cut at the very end is fine) with no
/// control character but tab and line breaks, and no bidirectional overrides.
fn is_terminal_safe(data: &[u8]) -> bool {
    let valid = match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) if error.error_len().is_none() => {
            // Only an unfinished character at the end: check what comes before it.
            match std::str::from_utf8(&data[..error.valid_up_to()]) {
                Ok(text) => text,
                Err(_) => return false,
            }
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| matches!(c, '\n' | '\r' | '\t') || !crate::sanitize::needs_removal(c))
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
fn base64_into(data: &[u8], out: &mut Vec<u8>) {
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(BASE64[(n >> 18) as usize & 63]);
        out.push(BASE64[(n >> 12) as usize & 63]);
        out.push(if group.len() > 1 {
            BASE64[(n >> 6) as usize & 63]
        } else {
            b'='
        });
        out.push(if group.len() > 2 {
            BASE64[n as usize & 63]
        } else {
            b'='
        });
    }
}

/// `fmt::Write` into a byte vector.
struct Buffer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Buffer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn join_into<'a>(text: &mut String, names: impl Iterator<Item = &'a str>) {
    for (i, name) in names.enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
    }
}

/// Milliseconds since the Unix epoch, shown as `YYYY-MM-DD HH:MM UTC`.
struct Timestamp(i64);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let seconds = self.0.div_euclid(1000);
        let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
            rest / 3600,
            rest % 3600 / 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_show_the_utc_date_and_minute() {
        assert_eq!(Timestamp(0).to_string(), "1970-01-01 00:00 UTC");
        assert_eq!(
            Timestamp(1_795_664_700_000).to_string(),
            "2026-11-26 03:45 UTC"
        );
        assert_eq!(
            Timestamp(951_782_400_000).to_string(),
            "2000-02-29 00:00 UTC"
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foobar", "Zm9vYmFy"),
            (&[0xff, 0xfe, 0x00], "//4A"),
        ] {
            let mut out = Vec::new();
            base64_into(input, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn text_chunks_are_sent_raw_and_binary_chunks_as_base64() {
        let id = TransferId(3);
        assert_eq!(
            &file_chunk(id, b"hi\nthere\n")[..],
            b"[file 3 data 9]\nhi\nthere\n\n"
        );
        assert_eq!(
            &file_chunk(id, b"\x1b[2J")[..],
            b"[file 3 base64 4]\nG1sySg==\n"
        );
        assert_eq!(
            &file_chunk(id, &[0xc3])[..],
            b"[file 3 data 1]\n\xc3\n",
            "cut character"
        );
    }

    #[test]
    fn chat_lines_have_the_seed_format() {
        assert_eq!(&chat("Global", "al", "hi")[..], b"[Global] al: hi\n");
    }
}

//! The commands a client may send, and the parser that turns one line into one of them.
//!
//! The parser is total: every line is either a [`Command`] or a [`ParseError`], never a
//! panic. It only splits text; the engine decides whether a command is allowed and valid
//! (names, lengths, roles). A line is trimmed of surrounding whitespace first; a line that
//! does not start with `/` is chat text, and `//` at the start sends text beginning with `/`.

use std::fmt::Write;
use std::time::Duration;

use crate::ids::MessageId;
use crate::sanction::{DurationError, SanctionKind, format_duration, parse_duration};
use crate::store::{Password, Role};
use crate::wire::Mode;

/// One line from a client, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plain text to the current channel.
    Say(String),
    /// `/msg <user> <text>`: a private message.
    Msg {
        /// The recipient's name as typed.
        to: String,
        /// The message.
        text: String,
    },
    /// `/join <channel>`.
    Join(String),
    /// `/send <user> <name> <size>`: the client streams `size` raw bytes right after this
    /// line, on the same connection.
    SendUpload {
        /// The recipient.
        to: String,
        /// The file's name as the sender gives it (one word).
        name: String,
        /// Exactly this many bytes follow the line.
        size: u64,
    },
    /// `/send <user> <path>`: a file from the server's files directory.
    SendServerFile {
        /// The recipient.
        to: String,
        /// Relative to the files directory (the rest of the line).
        path: String,
    },
    /// `/cancel <transfer id>`: stop a file transfer (sender or recipient).
    Cancel(u64),
    /// `/list`: users online.
    List,
    /// `/channels`: active channels with member counts.
    Channels,
    /// `/profile`: your name, channel and role.
    Profile,
    /// `/kick <user> [reason]`.
    Kick {
        /// Whom to kick.
        user: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `/ban <user> [duration] [reason]` or `/mute <user> [duration] [reason]`.
    Sanction {
        /// Ban or mute.
        kind: SanctionKind,
        /// Whom.
        user: String,
        /// How long (`30s`, `10m`, `2h`, `7d`, `2w`); `None` (or the word `forever`):
        /// until lifted.
        duration: Option<Duration>,
        /// Why, if given.
        reason: Option<String>,
    },
    /// `/unban <user>` or `/unmute <user>`.
    Lift {
        /// Ban or mute.
        kind: SanctionKind,
        /// Whose.
        user: String,
    },
    /// `/bans`: the bans and mutes in force.
    Sanctions,
    /// `/role`: show your role (toggle it in demo mode).
    ShowRole,
    /// `/role <user> <user|mod|admin>`.
    SetRole {
        /// Whose role.
        user: String,
        /// The new role.
        role: Role,
    },
    /// `/history [@user] [n] [before <id>]`: the current channel's history, or the
    /// private conversation with a user; the latest `n`, or the `n` before message `id`.
    History {
        /// The other user of a private conversation (`@user`), or `None` for the channel.
        with: Option<String>,
        /// How many messages, if given.
        count: Option<usize>,
        /// Only messages older than this one (the page before it).
        before: Option<MessageId>,
    },
    /// `/password <old> <new>`: change your password.
    ChangePassword {
        /// The current password (one word).
        old: Password,
        /// The new password (the rest of the line).
        new: Password,
    },
    /// `/delete-account <password>`: delete your account and its messages.
    DeleteAccount {
        /// Your password (the rest of the line).
        password: Password,
    },
    /// `/topic`: show the current channel's topic.
    ShowTopic,
    /// `/topic <text>` sets the current channel's topic; `/topic -` clears it (`None`).
    SetTopic(Option<String>),
    /// `/private on|off`: whether only invited users may join the current channel.
    Private(bool),
    /// `/invite <user>`: let a user join the current channel while it is private.
    Invite(String),
    /// `/names`: who is in the current channel.
    Names,
    /// `/away [text]`: mark yourself away with a message, or (without) back.
    Away(Option<String>),
    /// `/token`: a new resume token for this account, shown once.
    Token,
    /// `/resume <user> <token>`: log in with a resume token instead of the password.
    Resume {
        /// The username.
        username: String,
        /// The token (one word), as secret as a password.
        token: Password,
    },
    /// `/logout-everywhere`: revoke every resume token of the account and log its other
    /// sessions out.
    LogoutEverywhere,
    /// `/ping [token]`: answered `PONG <token>` once everything before it is processed.
    Ping(String),
    /// `/mode <text|json>`: how the server writes its lines to this connection.
    Mode(Mode),
    /// `/close` (or `/quit`).
    Close,
    /// `/help`.
    Help,
    /// `/register <user> <password>`.
    Register {
        /// The wanted username.
        username: String,
        /// The password (the rest of the line).
        password: Password,
    },
    /// `/login <user> <password>`.
    Login {
        /// The username.
        username: String,
        /// The password (the rest of the line).
        password: Password,
    },
}

/// A line that starts with `/` but is not a well-formed command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty or only whitespace (the engine ignores it).
    #[error("empty line")]
    Empty,
    /// No command has this name.
    #[error("unknown command /{0}")]
    Unknown(String),
    /// A known command with missing or malformed arguments; the text is its usage.
    #[error("usage: {0}")]
    Usage(&'static str),
}

/// Whether a raw line (without its line ending) is a message: plain text (or `//` text) or
/// `/msg`, the commands whose effect waits for a store commit without holding up the next
/// message.
pub(crate) fn is_message_line(line: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let Some(body) = text.trim_start().strip_prefix('/') else {
        return true;
    };
    body.starts_with('/') || split_word(body).0.eq_ignore_ascii_case("msg")
}

/// Parses one line (without its line ending).
pub fn parse_command(line: &str) -> Result<Command, ParseError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let Some(body) = line.strip_prefix('/') else {
        return Ok(Command::Say(line.to_string()));
    };
    if body.starts_with('/') {
        return Ok(Command::Say(body.to_string()));
    }
    let (name, rest) = split_word(body);
    let name = name.to_ascii_lowercase();
    let command = match name.as_str() {
        "msg" => {
            let (to, text) = split_word(rest);
            if to.is_empty() || text.is_empty() {
                return Err(ParseError::Usage("/msg <user> <text>"));
            }
            Command::Msg {
                to: to.to_string(),
                text: text.to_string(),
            }
        }
        "join" => Command::Join(one_word(rest, "/join <channel>")?),
        "send" => parse_send(rest)?,
        "cancel" => {
            const USAGE: &str = "/cancel <transfer id>";
            let id = one_word(rest, USAGE)?;
            if !is_decimal(&id) {
                return Err(ParseError::Usage(USAGE));
            }
            Command::Cancel(id.parse().map_err(|_| ParseError::Usage(USAGE))?)
        }
        "list" => no_args(rest, Command::List, "/list")?,
        "channels" => no_args(rest, Command::Channels, "/channels")?,
        "profile" => no_args(rest, Command::Profile, "/profile")?,
        "kick" => {
            let (user, reason) = split_word(rest);
            if user.is_empty() {
                return Err(ParseError::Usage("/kick <user> [reason]"));
            }
            let reason = (!reason.is_empty()).then(|| reason.to_string());
            Command::Kick {
                user: user.to_string(),
                reason,
            }
        }
        "ban" => parse_sanction(SanctionKind::Ban, rest, BAN_USAGE)?,
        "mute" => parse_sanction(SanctionKind::Mute, rest, MUTE_USAGE)?,
        "unban" => Command::Lift {
            kind: SanctionKind::Ban,
            user: one_word(rest, "/unban <user>")?,
        },
        "unmute" => Command::Lift {
            kind: SanctionKind::Mute,
            user: one_word(rest, "/unmute <user>")?,
        },
        "bans" => no_args(rest, Command::Sanctions, "/bans")?,
        "role" => {
            const USAGE: &str = "/role [<user> <user|mod|admin>]";
            let (user, rest) = split_word(rest);
            let (role, extra) = split_word(rest);
            match (user.is_empty(), role.is_empty(), extra.is_empty()) {
                (true, _, _) => Command::ShowRole,
                (false, false, true) => Command::SetRole {
                    user: user.to_string(),
                    role: role.parse().map_err(|_| ParseError::Usage(USAGE))?,
                },
                _ => return Err(ParseError::Usage(USAGE)),
            }
        }
        "history" => parse_history(rest)?,
        "password" => {
            let (old, new) = split_word(rest);
            if old.is_empty() || new.is_empty() {
                return Err(ParseError::Usage("/password <old> <new>"));
            }
            Command::ChangePassword {
                old: Password::new(old),
                new: Password::new(new),
            }
        }
        "token" => no_args(rest, Command::Token, "/token")?,
        "resume" => {
            let (username, token) = split_word(rest);
            if username.is_empty() || token.is_empty() || token.contains(char::is_whitespace) {
                return Err(ParseError::Usage("/resume <user> <token>"));
            }
            Command::Resume {
                username: username.to_string(),
                token: Password::new(token),
            }
        }
        "logout-everywhere" => no_args(rest, Command::LogoutEverywhere, "/logout-everywhere")?,
        "delete-account" => {
            if rest.is_empty() {
                return Err(ParseError::Usage("/delete-account <password>"));
            }
            Command::DeleteAccount {
                password: Password::new(rest),
            }
        }
        "topic" => match rest {
            "" => Command::ShowTopic,
            "-" => Command::SetTopic(None),
            text => Command::SetTopic(Some(text.to_string())),
        },
        "private" => match one_word(rest, PRIVATE_USAGE)?.to_ascii_lowercase().as_str() {
            "on" => Command::Private(true),
            "off" => Command::Private(false),
            _ => return Err(ParseError::Usage(PRIVATE_USAGE)),
        },
        "invite" => Command::Invite(one_word(rest, "/invite <user>")?),
        "names" => no_args(rest, Command::Names, "/names")?,
        "away" => Command::Away((!rest.is_empty()).then(|| rest.to_string())),
        "ping" => Command::Ping(rest.to_string()),
        "mode" => match one_word(rest, "/mode <text|json>")?
            .to_ascii_lowercase()
            .as_str()
        {
            "text" => Command::Mode(Mode::Text),
            "json" => Command::Mode(Mode::Json),
            _ => return Err(ParseError::Usage("/mode <text|json>")),
        },
        "close" | "quit" => Command::Close,
        "help" => Command::Help,
        "register" | "login" => {
            let (username, password) = split_word(rest);
            if username.is_empty() || password.is_empty() {
                return Err(ParseError::Usage(if name == "login" {
                    "/login <user> <password>"
                } else {
                    "/register <user> <password>"
                }));
            }
            let (username, password) = (username.to_string(), Password::new(password));
            if name == "login" {
                Command::Login { username, password }
            } else {
                Command::Register { username, password }
            }
        }
        _ => return Err(ParseError::Unknown(name)),
    };
    Ok(command)
}

/// Usage of `/private`.
const PRIVATE_USAGE: &str = "/private <on|off>";
/// Usage of `/ban`.
const BAN_USAGE: &str = "/ban <user> [30s|10m|2h|7d|2w|forever] [reason] (at most 3650d)";
/// Usage of `/mute`.
const MUTE_USAGE: &str = "/mute <user> [30s|10m|2h|7d|2w|forever] [reason] (at most 3650d)";
/// The word that says "until lifted" where a duration may stand.
const FOREVER: &str = "forever";

/// `<user> [duration|forever] [reason]`: the word after the user is a duration when it
/// reads as one (a number and a unit that breaks the limits is refused, not taken as the
/// reason's first word).
fn parse_sanction(
    kind: SanctionKind,
    rest: &str,
    usage: &'static str,
) -> Result<Command, ParseError> {
    let (user, rest) = split_word(rest);
    if user.is_empty() {
        return Err(ParseError::Usage(usage));
    }
    let (word, after) = split_word(rest);
    let (duration, reason) = if word.eq_ignore_ascii_case(FOREVER) {
        (None, after)
    } else {
        match parse_duration(word) {
            Ok(duration) => (Some(duration), after),
            Err(DurationError::Malformed) => (None, rest),
            Err(DurationError::Zero | DurationError::TooLong) => {
                return Err(ParseError::Usage(usage));
            }
        }
    };
    Ok(Command::Sanction {
        kind,
        user: user.to_string(),
        duration,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
    })
}

/// Usage of `/history`.
const HISTORY_USAGE: &str = "/history [@user] [count] [before <message id>]";

/// `[@user] [count] [before <id>]`, each part optional, in this order.
fn parse_history(rest: &str) -> Result<Command, ParseError> {
    let usage = || ParseError::Usage(HISTORY_USAGE);
    let (mut word, mut rest) = split_word(rest);
    let mut with = None;
    if let Some(user) = word.strip_prefix('@') {
        if user.is_empty() {
            return Err(usage());
        }
        with = Some(user.to_string());
        (word, rest) = split_word(rest);
    }
    let mut count = None;
    if is_decimal(word) {
        match word.parse::<usize>() {
            Ok(n) if n > 0 => count = Some(n),
            _ => return Err(usage()),
        }
        (word, rest) = split_word(rest);
    }
    let mut before = None;
    if word.eq_ignore_ascii_case("before") {
        let id = one_word(rest, HISTORY_USAGE)?;
        before = Some(id.parse().map_err(|_| usage())?);
        (word, rest) = ("", "");
    }
    if !word.is_empty() || !rest.is_empty() {
        return Err(usage());
    }
    Ok(Command::History {
        with,
        count,
        before,
    })
}

/// Usage of `/send`, both forms.
pub(crate) const SEND_USAGE: &str =
    "/send <user> <name> <size> (then the bytes) or /send <user> <path>";

/// `<user> <name> <size>` (the last word all digits) is an upload; `<user> <path>` a
/// server-side file.
fn parse_send(rest: &str) -> Result<Command, ParseError> {
    let (to, rest) = split_word(rest);
    if to.is_empty() || rest.is_empty() {
        return Err(ParseError::Usage(SEND_USAGE));
    }
    let (name, size) = split_word(rest);
    if !size.is_empty() && is_decimal(size) && !size.contains(char::is_whitespace) {
        let size = size
            .parse::<u64>()
            .map_err(|_| ParseError::Usage(SEND_USAGE))?;
        return Ok(Command::SendUpload {
            to: to.to_string(),
            name: name.to_string(),
            size,
        });
    }
    Ok(Command::SendServerFile {
        to: to.to_string(),
        path: rest.to_string(),
    })
}

fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl Command {
    /// The canonical line for this command; parsing it gives the command back.
    ///
    /// For `Register`, `Login`, `ChangePassword`, `DeleteAccount` and `Resume` the line
    /// contains a secret: never log it.
    pub fn to_line(&self) -> String {
        let mut line = String::new();
        // Writing to a String cannot fail.
        let _ = match self {
            Command::Say(text) if text.starts_with('/') => write!(line, "/{text}"),
            Command::Say(text) => write!(line, "{text}"),
            Command::Msg { to, text } => write!(line, "/msg {to} {text}"),
            Command::Join(channel) => write!(line, "/join {channel}"),
            Command::SendUpload { to, name, size } => write!(line, "/send {to} {name} {size}"),
            Command::SendServerFile { to, path } => write!(line, "/send {to} {path}"),
            Command::Cancel(id) => write!(line, "/cancel {id}"),
            Command::List => write!(line, "/list"),
            Command::Channels => write!(line, "/channels"),
            Command::Profile => write!(line, "/profile"),
            Command::Kick { user, reason: None } => write!(line, "/kick {user}"),
            Command::Kick {
                user,
                reason: Some(reason),
            } => write!(line, "/kick {user} {reason}"),
            Command::Sanction {
                kind,
                user,
                duration,
                reason,
            } => {
                let _ = write!(line, "/{kind} {user}");
                match (duration, reason) {
                    (Some(duration), _) => {
                        let _ = write!(line, " {}", format_duration(*duration));
                    }
                    // Said, so the reason's first word is never read as a duration.
                    (None, Some(_)) => line.push_str(" forever"),
                    (None, None) => {}
                }
                match reason {
                    Some(reason) => write!(line, " {reason}"),
                    None => Ok(()),
                }
            }
            Command::Lift {
                kind: SanctionKind::Ban,
                user,
            } => write!(line, "/unban {user}"),
            Command::Lift {
                kind: SanctionKind::Mute,
                user,
            } => write!(line, "/unmute {user}"),
            Command::Sanctions => write!(line, "/bans"),
            Command::ShowRole => write!(line, "/role"),
            Command::SetRole { user, role } => write!(line, "/role {user} {role}"),
            Command::History {
                with,
                count,
                before,
            } => {
                let _ = write!(line, "/history");
                if let Some(with) = with {
                    let _ = write!(line, " @{with}");
                }
                if let Some(count) = count {
                    let _ = write!(line, " {count}");
                }
                match before {
                    Some(id) => write!(line, " before {id}"),
                    None => Ok(()),
                }
            }
            Command::ChangePassword { old, new } => {
                write!(line, "/password {} {}", old.expose(), new.expose())
            }
            Command::DeleteAccount { password } => {
                write!(line, "/delete-account {}", password.expose())
            }
            Command::ShowTopic => write!(line, "/topic"),
            Command::SetTopic(None) => write!(line, "/topic -"),
            Command::SetTopic(Some(text)) => write!(line, "/topic {text}"),
            Command::Private(true) => write!(line, "/private on"),
            Command::Private(false) => write!(line, "/private off"),
            Command::Invite(user) => write!(line, "/invite {user}"),
            Command::Names => write!(line, "/names"),
            Command::Away(None) => write!(line, "/away"),
            Command::Away(Some(text)) => write!(line, "/away {text}"),
            Command::Token => write!(line, "/token"),
            Command::Resume { username, token } => {
                write!(line, "/resume {username} {}", token.expose())
            }
            Command::LogoutEverywhere => write!(line, "/logout-everywhere"),
            Command::Ping(token) if token.is_empty() => write!(line, "/ping"),
            Command::Ping(token) => write!(line, "/ping {token}"),
            Command::Mode(Mode::Text) => write!(line, "/mode text"),
            Command::Mode(Mode::Json) => write!(line, "/mode json"),
            Command::Close => write!(line, "/close"),
            Command::Help => write!(line, "/help"),
            Command::Register { username, password } => {
                write!(line, "/register {username} {}", password.expose())
            }
            Command::Login { username, password } => {
                write!(line, "/login {username} {}", password.expose())
            }
        };
        line
    }
}

/// The first word and the rest, with the whitespace between them removed.
fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], text[end..].trim_start()),
        None => (text, ""),
    }
}

fn one_word(text: &str, usage: &'static str) -> Result<String, ParseError> {
    match split_word(text) {
        (word, "") if !word.is_empty() => Ok(word.to_string()),
        _ => Err(ParseError::Usage(usage)),
    }
}

fn no_args(rest: &str, command: Command, usage: &'static str) -> Result<Command, ParseError> {
    if rest.is_empty() {
        Ok(command)
    } else {
        Err(ParseError::Usage(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_is_chat_and_double_slash_escapes_a_slash() {
        assert_eq!(
            parse_command("  hi there "),
            Ok(Command::Say("hi there".into()))
        );
        assert_eq!(parse_command("//shrug"), Ok(Command::Say("/shrug".into())));
    }

    #[test]
    fn msg_keeps_the_spacing_inside_its_text() {
        assert_eq!(
            parse_command("/msg bob  hello   world"),
            Ok(Command::Msg {
                to: "bob".into(),
                text: "hello   world".into()
            })
        );
        assert_eq!(
            parse_command("/msg bob"),
            Err(ParseError::Usage("/msg <user> <text>"))
        );
    }

    #[test]
    fn login_takes_the_rest_of_the_line_as_password() {
        let Ok(Command::Login { username, password }) = parse_command("/login al pass word") else {
            panic!("not a login");
        };
        assert_eq!((username.as_str(), password.expose()), ("al", "pass word"));
    }

    #[test]
    fn history_takes_a_user_a_count_and_a_page_in_that_order() {
        let id: MessageId = "00000000000000010000000000000002".parse().unwrap();
        assert_eq!(
            parse_command("/history @Bob 50 BEFORE 00000000000000010000000000000002"),
            Ok(Command::History {
                with: Some("Bob".into()),
                count: Some(50),
                before: Some(id)
            })
        );
        assert_eq!(
            parse_command("/history before 00000000000000010000000000000002"),
            Ok(Command::History {
                with: None,
                count: None,
                before: Some(id)
            })
        );
        for bad in [
            "/history @",
            "/history 0",
            "/history 5 @bob",
            "/history before",
            "/history before xyz",
            "/history 5 6",
            "/history before 00000000000000010000000000000002 more",
        ] {
            assert_eq!(
                parse_command(bad),
                Err(ParseError::Usage(HISTORY_USAGE)),
                "{bad}"
            );
        }
    }

    #[test]
    fn password_takes_one_word_then_the_rest_and_delete_account_the_rest() {
        let Ok(Command::ChangePassword { old, new }) = parse_command("/password old pw new pw")
        else {
            panic!("not a password change");
        };
        assert_eq!((old.expose(), new.expose()), ("old", "pw new pw"));
        assert!(matches!(
            parse_command("/password onlyone"),
            Err(ParseError::Usage(_))
        ));
        let Ok(Command::DeleteAccount { password }) = parse_command("/delete-account my pass")
        else {
            panic!("not a deletion");
        };
        assert_eq!(password.expose(), "my pass");
        assert!(matches!(
            parse_command("/delete-account"),
            Err(ParseError::Usage(_))
        ));
    }

    #[test]
    fn topic_shows_sets_or_with_a_dash_clears() {
        assert_eq!(parse_command("/topic"), Ok(Command::ShowTopic));
        assert_eq!(
            parse_command("/TOPIC  Rust  talk "),
            Ok(Command::SetTopic(Some("Rust  talk".into())))
        );
        assert_eq!(parse_command("/topic -"), Ok(Command::SetTopic(None)));
    }

    #[test]
    fn private_invite_names_and_away_parse() {
        assert_eq!(parse_command("/private ON"), Ok(Command::Private(true)));
        assert_eq!(parse_command("/private off"), Ok(Command::Private(false)));
        for bad in ["/private", "/private maybe", "/private on off"] {
            assert_eq!(
                parse_command(bad),
                Err(ParseError::Usage(PRIVATE_USAGE)),
                "{bad}"
            );
        }
        assert_eq!(
            parse_command("/invite bob"),
            Ok(Command::Invite("bob".into()))
        );
        assert!(matches!(
            parse_command("/invite bob carol"),
            Err(ParseError::Usage(_))
        ));
        assert_eq!(parse_command("/names"), Ok(Command::Names));
        assert!(matches!(
            parse_command("/names x"),
            Err(ParseError::Usage(_))
        ));
        assert_eq!(parse_command("/away"), Ok(Command::Away(None)));
        assert_eq!(
            parse_command("/away at lunch"),
            Ok(Command::Away(Some("at lunch".into())))
        );
    }

    #[test]
    fn role_forms_parse() {
        assert_eq!(parse_command("/role"), Ok(Command::ShowRole));
        assert_eq!(
            parse_command("/ROLE bob Mod"),
            Ok(Command::SetRole {
                user: "bob".into(),
                role: Role::Mod
            })
        );
        assert!(matches!(
            parse_command("/role bob"),
            Err(ParseError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/role bob king"),
            Err(ParseError::Usage(_))
        ));
    }

    #[test]
    fn ban_and_mute_take_an_optional_duration_then_an_optional_reason() {
        let ban = |duration, reason: Option<&str>| Command::Sanction {
            kind: SanctionKind::Ban,
            user: "bob".into(),
            duration,
            reason: reason.map(Into::into),
        };
        assert_eq!(parse_command("/ban bob"), Ok(ban(None, None)));
        assert_eq!(
            parse_command("/ban bob 2h  spam and   more"),
            Ok(ban(
                Some(Duration::from_secs(7_200)),
                Some("spam and   more")
            ))
        );
        assert_eq!(parse_command("/ban bob spam"), Ok(ban(None, Some("spam"))));
        assert_eq!(
            parse_command("/ban bob forever 5m late"),
            Ok(ban(None, Some("5m late")))
        );
        assert_eq!(
            parse_command("/ban bob 0m"),
            Err(ParseError::Usage(BAN_USAGE))
        );
        assert_eq!(
            parse_command("/mute bob 9999999999999999999999w"),
            Err(ParseError::Usage(MUTE_USAGE))
        );
        assert_eq!(parse_command("/ban"), Err(ParseError::Usage(BAN_USAGE)));
        assert_eq!(
            parse_command("/UNMUTE bob"),
            Ok(Command::Lift {
                kind: SanctionKind::Mute,
                user: "bob".into()
            })
        );
        assert!(matches!(
            parse_command("/unban bob now"),
            Err(ParseError::Usage(_))
        ));
        assert_eq!(parse_command("/bans"), Ok(Command::Sanctions));
    }

    #[test]
    fn unknown_commands_and_bad_counts_are_errors() {
        assert_eq!(
            parse_command("/dance"),
            Err(ParseError::Unknown("dance".into()))
        );
        assert!(matches!(
            parse_command("/history -1"),
            Err(ParseError::Usage(_))
        ));
        assert!(matches!(
            parse_command("/history +3"),
            Err(ParseError::Usage(_))
        ));
        assert_eq!(
            parse_command("/history 3"),
            Ok(Command::History {
                with: None,
                count: Some(3),
                before: None
            })
        );
        assert_eq!(parse_command("   "), Err(ParseError::Empty));
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.#-]{1,12}"
    }

    fn text() -> impl Strategy<Value = String> {
        "[^\\s/][^\\n]{0,30}"
            .prop_map(|s| s.trim().to_string())
            .prop_filter("empty", |s| !s.is_empty())
    }

    fn kind() -> impl Strategy<Value = SanctionKind> {
        prop_oneof![Just(SanctionKind::Ban), Just(SanctionKind::Mute)]
    }

    fn any_command() -> impl Strategy<Value = Command> {
        let role = prop_oneof![Just(Role::User), Just(Role::Mod), Just(Role::Admin)];
        prop_oneof![
            text().prop_map(Command::Say),
            text().prop_map(|t| Command::Say(format!("/{t}"))),
            (word(), text()).prop_map(|(to, text)| Command::Msg { to, text }),
            word().prop_map(Command::Join),
            (word(), word(), any::<u64>()).prop_map(|(to, name, size)| Command::SendUpload {
                to,
                name,
                size
            }),
            (word(), "[a-z./]{1,10}( [a-z]{1,4})?")
                .prop_map(|(to, path)| Command::SendServerFile { to, path }),
            any::<u64>().prop_map(Command::Cancel),
            Just(Command::List),
            Just(Command::Channels),
            Just(Command::Profile),
            (word(), proptest::option::of(text()))
                .prop_map(|(user, reason)| Command::Kick { user, reason }),
            (
                kind(),
                word(),
                proptest::option::of(
                    (1..=crate::MAX_SANCTION_DURATION.as_secs()).prop_map(Duration::from_secs)
                ),
                proptest::option::of(text()),
            )
                .prop_map(|(kind, user, duration, reason)| Command::Sanction {
                    kind,
                    user,
                    duration,
                    reason
                }),
            (kind(), word()).prop_map(|(kind, user)| Command::Lift { kind, user }),
            Just(Command::Sanctions),
            Just(Command::ShowRole),
            (word(), role).prop_map(|(user, role)| Command::SetRole { user, role }),
            (
                proptest::option::of(word()),
                proptest::option::of(1usize..100_000),
                proptest::option::of(any::<(u64, u64)>())
            )
                .prop_map(|(with, count, before)| Command::History {
                    with,
                    count,
                    before: before.map(|(origin, sequence)| MessageId { origin, sequence }),
                }),
            (word(), text()).prop_map(|(old, new)| Command::ChangePassword {
                old: Password::new(old),
                new: Password::new(new)
            }),
            text().prop_map(|p| Command::DeleteAccount {
                password: Password::new(p)
            }),
            Just(Command::ShowTopic),
            proptest::option::of(text())
                .prop_filter("a dash clears", |t| t.as_deref() != Some("-"))
                .prop_map(Command::SetTopic),
            any::<bool>().prop_map(Command::Private),
            word().prop_map(Command::Invite),
            Just(Command::Names),
            proptest::option::of(text()).prop_map(Command::Away),
            Just(Command::Token),
            Just(Command::LogoutEverywhere),
            (word(), word()).prop_map(|(username, token)| Command::Resume {
                username,
                token: Password::new(token)
            }),
            proptest::option::of(text()).prop_map(|t| Command::Ping(t.unwrap_or_default())),
            Just(Command::Close),
            Just(Command::Mode(Mode::Json)),
            Just(Command::Mode(Mode::Text)),
            Just(Command::Help),
            (word(), text()).prop_map(|(username, p)| Command::Register {
                username,
                password: Password::new(p)
            }),
            (word(), text()).prop_map(|(username, p)| Command::Login {
                username,
                password: Password::new(p)
            }),
        ]
    }

    proptest! {
        #[test]
        fn a_line_is_a_message_exactly_when_it_parses_as_one(
            line in prop_oneof![
                any::<String>(),
                "[ \u{3000}]{0,2}/{1,2}(msg|MSG|join|history|kick)?[ a-z]{0,12}",
            ],
        ) {
            match parse_command(&line) {
                Ok(Command::Say(_) | Command::Msg { .. }) => {
                    prop_assert!(is_message_line(line.as_bytes()));
                }
                Ok(_) => prop_assert!(!is_message_line(line.as_bytes())),
                Err(_) => {}
            }
        }

        #[test]
        fn parser_is_total_and_what_parses_reparses_the_same(line in any::<String>()) {
            if let Ok(command) = parse_command(&line) {
                prop_assert_eq!(parse_command(&command.to_line()), Ok(command));
            }
        }

        #[test]
        fn parser_is_total_on_command_like_lines(
            name in prop_oneof![Just("msg"), Just("join"), Just("kick"), Just("role"),
                Just("history"), Just("login"), Just("register"), Just("ping"), Just("send"),
                Just("ban"), Just("mute"), Just("unban"), Just("unmute"), Just("bans"),
                Just("password"), Just("delete-account"), Just("resume"), Just("token"),
                Just("topic"), Just("private"), Just("invite"), Just("names"), Just("away")],
            args in "[ a-zA-Z0-9\\t]{0,20}",
        ) {
            let line = format!("/{name} {args}");
            if let Ok(command) = parse_command(&line) {
                prop_assert_eq!(parse_command(&command.to_line()), Ok(command));
            }
        }

        #[test]
        fn formatting_then_parsing_gives_the_command_back(command in any_command()) {
            prop_assert_eq!(parse_command(&command.to_line()), Ok(command));
        }
    }
}

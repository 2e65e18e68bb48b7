//! The server's JSON lines, typed: one [`ServerEvent`] per line (docs/PROTOCOL.md, "JSON
//! lines mode"). This module only parses; it never touches a socket or the screen.

use serde::Deserialize;

/// One line the server sent in JSON mode, with the server's timestamp when it had one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ServerLine {
    /// Milliseconds since the Unix epoch, when the server knew the time.
    #[serde(default)]
    pub ts: Option<i64>,
    /// What the line says.
    #[serde(flatten)]
    pub event: ServerEvent,
}

/// A channel and how many people are in it, from a `channels` answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelInfo {
    /// The channel's name.
    pub name: String,
    /// Members at the time of the answer.
    pub members: u64,
}

/// Everything the server can say in JSON mode, one variant per `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The answer to `/mode`.
    Mode {
        /// `json` or `text`.
        mode: String,
    },
    /// The banner and hints.
    Info {
        /// The words.
        text: String,
    },
    /// A login question of the interactive flow (the client logs in in one line instead).
    Prompt {
        /// `account`, `username` or `password`.
        prompt: String,
    },
    /// Logged in (or registered, when `new`).
    Welcome {
        /// The username as registered.
        user: String,
        /// `user`, `mod` or `admin`.
        role: String,
        /// True right after a registration.
        #[serde(default)]
        new: bool,
    },
    /// You are in this channel (after login).
    Channel {
        /// The channel.
        channel: String,
    },
    /// Someone wrote to your channel.
    Message {
        /// The channel.
        channel: String,
        /// The author.
        from: String,
        /// The words.
        text: String,
        /// The stored message id.
        #[serde(default)]
        id: Option<String>,
    },
    /// A private message to you.
    Dm {
        /// The author.
        from: String,
        /// The words.
        text: String,
        /// The stored message id.
        #[serde(default)]
        id: Option<String>,
        /// True when it waited for you while you were offline.
        #[serde(default)]
        offline: bool,
        /// When it was sent (ms since the epoch), for offline messages.
        #[serde(default)]
        sent_at: Option<i64>,
    },
    /// Your private message waits for an offline user.
    DmStored {
        /// The offline user.
        to: String,
    },
    /// A message of the channel's past, replayed.
    History {
        /// The channel.
        channel: String,
        /// The author.
        from: String,
        /// The words.
        text: String,
        /// When it was sent (ms since the epoch).
        sent_at: i64,
    },
    /// Someone entered your channel.
    Join {
        /// Who.
        user: String,
        /// The channel.
        channel: String,
    },
    /// Someone left your channel.
    Part {
        /// Who.
        user: String,
        /// The channel.
        channel: String,
    },
    /// You moved to another channel.
    Switched {
        /// The channel you left.
        from: String,
        /// The channel you are in now.
        to: String,
    },
    /// The answer to `/list`.
    List {
        /// Users online, each once.
        users: Vec<String>,
    },
    /// The answer to `/channels`.
    Channels {
        /// Active channels with member counts.
        channels: Vec<ChannelInfo>,
    },
    /// The answer to `/profile`.
    Profile {
        /// You.
        user: String,
        /// Your channel.
        channel: String,
        /// Your role.
        role: String,
    },
    /// Your role, or a change of it (`by` says who changed it).
    Role {
        /// The role.
        role: String,
        /// The admin who set it, when it changed.
        #[serde(default)]
        by: Option<String>,
    },
    /// An admin's `/role <user> <role>` succeeded.
    RoleSet {
        /// The user.
        user: String,
        /// The new role.
        role: String,
    },
    /// Someone in your channel was kicked.
    Kick {
        /// Who was kicked.
        user: String,
        /// Who kicked.
        by: String,
        /// Why.
        reason: String,
    },
    /// You were kicked; the connection closes.
    Kicked {
        /// Who kicked you.
        by: String,
        /// Why.
        reason: String,
    },
    /// Your `/kick` succeeded.
    KickDone {
        /// Who was kicked.
        user: String,
    },
    /// The answer to `/ping`.
    Pong {
        /// The token, echoed.
        #[serde(default)]
        token: String,
    },
    /// The answer to `/help`: `[usage, description]` pairs.
    Help {
        /// The commands this user may use.
        commands: Vec<(String, String)>,
    },
    /// The answer to `/close`.
    Goodbye,
    /// The server is stopping.
    Shutdown,
    /// Someone sends you a file; chunks follow.
    FileOffer {
        /// The transfer's id.
        id: u64,
        /// The sender.
        from: String,
        /// The file's name as the sender gave it.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// Your upload was accepted.
    FileSending {
        /// The transfer's id.
        id: u64,
        /// The recipient.
        to: String,
        /// The file's name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A piece of a file sent to you.
    FileChunk {
        /// The transfer's id.
        id: u64,
        /// The bytes, standard base64 with padding.
        data: String,
    },
    /// A transfer finished: `from` and `size` for the recipient, `to` for the sender.
    FileDone {
        /// The transfer's id.
        id: u64,
        /// The file's name.
        name: String,
        /// Its size (recipient side).
        #[serde(default)]
        size: Option<u64>,
        /// The sender (recipient side).
        #[serde(default)]
        from: Option<String>,
        /// The recipient (sender side).
        #[serde(default)]
        to: Option<String>,
    },
    /// A transfer stopped before the end.
    FileCancelled {
        /// The transfer's id.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Something went wrong; `code` is stable (docs/PROTOCOL.md, "Error codes").
    Error {
        /// The stable code.
        code: String,
        /// The words for a person.
        message: String,
    },
    /// A `type` this client does not know yet (a newer server); shown as nothing.
    #[serde(other)]
    Unknown,
}

/// Why a line could not be read as a [`ServerLine`].
#[derive(Debug, thiserror::Error)]
#[error("not a JSON server line: {0}")]
pub struct ParseError(#[from] serde_json::Error);

impl ServerLine {
    /// Parses one line (with or without its line break).
    pub fn parse(line: &str) -> Result<ServerLine, ParseError> {
        Ok(serde_json::from_str(line.trim_end_matches(['\r', '\n']))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> ServerEvent {
        ServerLine::parse(line).unwrap().event
    }

    #[test]
    fn the_documented_example_parses_with_its_timestamps() {
        let line =
            ServerLine::parse(r#"{"type":"mode","mode":"json","ts":1795664700000}"#).unwrap();
        assert_eq!(line.ts, Some(1_795_664_700_000));
        assert_eq!(
            line.event,
            ServerEvent::Mode {
                mode: "json".into()
            }
        );
        assert_eq!(
            parse(
                r#"{"type":"welcome","user":"alice","role":"user","new":false,"ts":1795664700012}"#
            ),
            ServerEvent::Welcome {
                user: "alice".into(),
                role: "user".into(),
                new: false
            }
        );
        assert_eq!(
            parse(
                r#"{"type":"message","channel":"Global","from":"bob","text":"hi","id":"0000018f2a3c4d5e0000000000000007","ts":1795664701000}"#
            ),
            ServerEvent::Message {
                channel: "Global".into(),
                from: "bob".into(),
                text: "hi".into(),
                id: Some("0000018f2a3c4d5e0000000000000007".into())
            }
        );
    }

    #[test]
    fn lines_without_a_timestamp_parse() {
        let line = ServerLine::parse("{\"type\":\"goodbye\"}\r\n").unwrap();
        assert_eq!(line.ts, None);
        assert_eq!(line.event, ServerEvent::Goodbye);
    }

    #[test]
    fn offline_dms_carry_when_they_were_sent() {
        assert_eq!(
            parse(
                r#"{"type":"dm","from":"bob","text":"later","id":"01","offline":true,"sent_at":5}"#
            ),
            ServerEvent::Dm {
                from: "bob".into(),
                text: "later".into(),
                id: Some("01".into()),
                offline: true,
                sent_at: Some(5)
            }
        );
    }

    #[test]
    fn channel_lists_carry_member_counts() {
        assert_eq!(
            parse(
                r#"{"type":"channels","channels":[{"name":"Global","members":3},{"name":"rust","members":1}]}"#
            ),
            ServerEvent::Channels {
                channels: vec![
                    ChannelInfo {
                        name: "Global".into(),
                        members: 3
                    },
                    ChannelInfo {
                        name: "rust".into(),
                        members: 1
                    }
                ]
            }
        );
    }

    #[test]
    fn file_lines_parse_for_both_sides() {
        assert_eq!(
            parse(r#"{"type":"file_offer","id":7,"from":"bob","name":"a.bin","size":3}"#),
            ServerEvent::FileOffer {
                id: 7,
                from: "bob".into(),
                name: "a.bin".into(),
                size: 3
            }
        );
        assert_eq!(
            parse(r#"{"type":"file_chunk","id":7,"data":"AAEC"}"#),
            ServerEvent::FileChunk {
                id: 7,
                data: "AAEC".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"file_done","id":7,"name":"a.bin","size":3,"from":"bob"}"#),
            ServerEvent::FileDone {
                id: 7,
                name: "a.bin".into(),
                size: Some(3),
                from: Some("bob".into()),
                to: None
            }
        );
        assert_eq!(
            parse(r#"{"type":"file_done","id":7,"name":"a.bin","to":"alice"}"#),
            ServerEvent::FileDone {
                id: 7,
                name: "a.bin".into(),
                size: None,
                from: None,
                to: Some("alice".into())
            }
        );
        assert_eq!(
            parse(r#"{"type":"file_cancelled","id":7,"reason":"bob left"}"#),
            ServerEvent::FileCancelled {
                id: 7,
                reason: "bob left".into()
            }
        );
    }

    #[test]
    fn errors_keep_their_stable_code() {
        assert_eq!(
            parse(r#"{"type":"error","code":"not_online","message":"bob is not online"}"#),
            ServerEvent::Error {
                code: "not_online".into(),
                message: "bob is not online".into()
            }
        );
    }

    #[test]
    fn help_lists_usage_and_description_pairs() {
        assert_eq!(
            parse(r#"{"type":"help","commands":[["/list","users online"]]}"#),
            ServerEvent::Help {
                commands: vec![("/list".into(), "users online".into())]
            }
        );
    }

    #[test]
    fn unknown_types_from_a_newer_server_are_not_errors() {
        assert_eq!(
            parse(r#"{"type":"reaction","emoji":"x","ts":1}"#),
            ServerEvent::Unknown
        );
    }

    #[test]
    fn text_mode_lines_are_parse_errors() {
        assert!(ServerLine::parse("Welcome to WUR2 chat!").is_err());
        assert!(ServerLine::parse(r#"{"no_type":1}"#).is_err());
    }
}

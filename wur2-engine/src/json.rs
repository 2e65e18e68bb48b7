//! The schema of JSON lines mode, typed: one [`ServerLine`] per line the server sends
//! (`docs/PROTOCOL.md`, "JSON lines mode").
//!
//! The engine renders its JSON lines from these types and a client parses them into the
//! same types, so the two cannot drift apart. The types are generic over their strings:
//! the engine writes a `ServerLine<&str>` that borrows what it already holds, a client reads
//! a `ServerLine<String>` (the default). Values that a newer server may extend (roles,
//! error codes, prompts) stay strings, so an older client still reads the line.
//!
//! This module only describes lines; it never touches a socket.

use serde::{Deserialize, Serialize};

/// One line the server sent in JSON mode, with the server's timestamp when it had one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "S: Deserialize<'de> + Default"))]
pub struct ServerLine<S = String> {
    /// Milliseconds since the Unix epoch, when the server knew the time
    /// ([`Config::wall_clock`](crate::Config::wall_clock)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<i64>,
    /// What the line says.
    #[serde(flatten)]
    pub event: ServerEvent<S>,
}

/// A channel and how many people are in it, from a `channels` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo<S = String> {
    /// The channel's name.
    pub name: S,
    /// Members at the time of the answer.
    pub members: u64,
    /// The channel's topic, when one is set (absent from older servers' lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<S>,
}

/// A ban or mute in force, from a `sanctions` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionInfo<S = String> {
    /// `ban` or `mute`.
    pub kind: S,
    /// The sanctioned user.
    pub user: S,
    /// Who set it.
    pub by: S,
    /// Why.
    pub reason: S,
    /// When it was set, in milliseconds since the Unix epoch.
    pub set_at: i64,
    /// When it ends, in milliseconds since the Unix epoch; absent: until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// Everything the server can say in JSON mode, one variant per `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "snake_case",
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub enum ServerEvent<S = String> {
    /// The answer to `/mode`.
    Mode {
        /// `json` or `text`.
        mode: S,
    },
    /// The banner and hints.
    Info {
        /// The words.
        text: S,
    },
    /// A question of the interactive login (a program logs in with one line instead).
    Prompt {
        /// `account`, `username` or `password`.
        prompt: S,
    },
    /// Logged in (or registered, when `new`).
    Welcome {
        /// The username as registered.
        user: S,
        /// `user`, `mod` or `admin`.
        role: S,
        /// True right after a registration.
        #[serde(default)]
        new: bool,
    },
    /// You are in this channel (after login).
    Channel {
        /// The channel.
        channel: S,
    },
    /// Someone wrote to your channel.
    Message {
        /// The channel.
        channel: S,
        /// The author.
        from: S,
        /// The words.
        text: S,
        /// The stored message id (32 hex digits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<S>,
    },
    /// A private message to you.
    Dm {
        /// The author.
        from: S,
        /// The words.
        text: S,
        /// The stored message id (32 hex digits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<S>,
        /// True when it waited for you while you were offline.
        #[serde(default, skip_serializing_if = "is_false")]
        offline: bool,
        /// When it was sent (ms since the epoch), for offline messages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<i64>,
    },
    /// Your private message waits for an offline user.
    DmStored {
        /// The offline user.
        to: S,
    },
    /// A message of the channel's past, replayed.
    History {
        /// The channel.
        channel: S,
        /// The author.
        from: S,
        /// The words.
        text: S,
        /// When it was sent (ms since the epoch).
        sent_at: i64,
        /// The stored message id (32 hex digits).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<S>,
    },
    /// Someone entered your channel.
    Join {
        /// Who.
        user: S,
        /// The channel.
        channel: S,
    },
    /// Someone left your channel.
    Part {
        /// Who.
        user: S,
        /// The channel.
        channel: S,
    },
    /// You moved to another channel.
    Switched {
        /// The channel you left.
        from: S,
        /// The channel you are in now.
        to: S,
    },
    /// The answer to `/list`.
    List {
        /// Users online, each once.
        users: Vec<S>,
        /// `[user, away message]` for the users in `users` who are away (absent when
        /// nobody is, and from older servers).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        away: Vec<(S, S)>,
    },
    /// A channel's topic: the answer to `/topic` and what follows a `/join` (no `by`), or
    /// a change to it (`by` who).
    Topic {
        /// The channel.
        channel: S,
        /// The topic; absent when none is set (or it was cleared).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<S>,
        /// Who changed it, for a change.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<S>,
    },
    /// Your channel became private (only invited users may join) or public.
    Private {
        /// The channel.
        channel: S,
        /// Whether it is private now.
        private: bool,
        /// Who changed it.
        by: S,
    },
    /// The answer to `/invite`.
    Invited {
        /// The channel.
        channel: S,
        /// Who may join it now.
        user: S,
    },
    /// Someone invited you to a channel.
    Invitation {
        /// The channel.
        channel: S,
        /// Who invited you.
        by: S,
    },
    /// The answer to `/names`.
    Names {
        /// Your channel.
        channel: S,
        /// Who is in it, on any node, each once.
        users: Vec<S>,
    },
    /// The answer to `/away`: your away message, or none (you are back).
    AwaySet {
        /// The message; absent when you are back.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<S>,
    },
    /// The user you sent a private message to is away (said once per away message).
    Away {
        /// The user.
        user: S,
        /// Their away message.
        text: S,
    },
    /// The answer to `/channels`.
    Channels {
        /// Active channels with member counts.
        channels: Vec<ChannelInfo<S>>,
    },
    /// The answer to `/profile`.
    Profile {
        /// You.
        user: S,
        /// Your channel.
        channel: S,
        /// Your role.
        role: S,
    },
    /// Your role, or a change of it (`by` says who changed it).
    Role {
        /// The role.
        role: S,
        /// The admin who set it, when it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<S>,
    },
    /// An admin's `/role <user> <role>` succeeded.
    RoleSet {
        /// The user.
        user: S,
        /// The new role.
        role: S,
    },
    /// Someone in your channel was kicked.
    Kick {
        /// Who was kicked.
        user: S,
        /// Who kicked.
        by: S,
        /// Why.
        reason: S,
    },
    /// A private message of the past (`/history @user`), between you and `with`.
    DmHistory {
        /// The other user of the conversation.
        with: S,
        /// The author (you or `with`).
        from: S,
        /// The words.
        text: S,
        /// When it was sent (ms since the epoch).
        sent_at: i64,
        /// The stored message id (32 hex digits), for `/history … before <id>`.
        id: S,
    },
    /// A page of history was full: older messages may be had with
    /// `/history [@with] <count> before <before>`.
    HistoryMore {
        /// The conversation's other user; absent for a channel's history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        with: Option<S>,
        /// The page's size.
        count: usize,
        /// The oldest message id of the page.
        before: S,
    },
    /// Your `/password` took effect; your other sessions were logged out.
    PasswordChanged,
    /// Your `/token`: a resume token, shown once (`/resume <user> <token>`).
    Token {
        /// The token.
        token: S,
    },
    /// Your `/logout-everywhere` took effect.
    LoggedOutEverywhere,
    /// Your `/delete-account` took effect; the connection closes.
    AccountDeleted {
        /// The account's name.
        user: S,
    },
    /// This session was logged out (another session changed the account's password);
    /// the connection closes.
    LoggedOut {
        /// Why.
        reason: S,
    },
    /// You were kicked; the connection closes.
    Kicked {
        /// Who kicked you.
        by: S,
        /// Why.
        reason: S,
    },
    /// Your `/kick` succeeded.
    KickDone {
        /// Who was kicked.
        user: S,
    },
    /// You are banned: at login (whatever the password), or while logged in; the
    /// connection closes.
    Banned {
        /// Who banned you.
        by: S,
        /// Why.
        reason: S,
        /// When the ban ends, in milliseconds since the Unix epoch; absent: until lifted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// You are muted (at login, or when a moderator mutes you): your messages, private
    /// messages and files are refused until it ends.
    Muted {
        /// Who muted you.
        by: S,
        /// Why.
        reason: S,
        /// When the mute ends, in milliseconds since the Unix epoch; absent: until lifted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// Your mute was lifted.
    Unmuted,
    /// Your `/ban` or `/mute` succeeded.
    Sanctioned {
        /// `ban` or `mute`.
        kind: S,
        /// The sanctioned user, as registered.
        user: S,
        /// Why.
        reason: S,
        /// When it ends, in milliseconds since the Unix epoch; absent: until lifted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
    },
    /// Your `/unban` or `/unmute` succeeded.
    Lifted {
        /// `ban` or `mute`.
        kind: S,
        /// The user, as registered.
        user: S,
    },
    /// The answer to `/bans`: the bans and mutes in force.
    Sanctions {
        /// Ordered by user, bans before mutes.
        sanctions: Vec<SanctionInfo<S>>,
    },
    /// The answer to `/ping`.
    Pong {
        /// The token, echoed (empty when none was given).
        #[serde(default)]
        token: S,
    },
    /// The answer to `/help`: `[usage, description]` pairs.
    Help {
        /// The commands this user may use.
        commands: Vec<(S, S)>,
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
        from: S,
        /// The file's name as the sender gave it.
        name: S,
        /// Its size in bytes.
        size: u64,
    },
    /// Your upload was accepted.
    FileSending {
        /// The transfer's id.
        id: u64,
        /// The recipient.
        to: S,
        /// The file's name.
        name: S,
        /// Its size in bytes.
        size: u64,
    },
    /// A piece of a file sent to you.
    FileChunk {
        /// The transfer's id.
        id: u64,
        /// The bytes, standard base64 with padding.
        data: S,
    },
    /// A transfer finished: `from` and `size` for the recipient, `to` for the sender.
    FileDone {
        /// The transfer's id.
        id: u64,
        /// The file's name.
        name: S,
        /// Its size (recipient side).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// The sender (recipient side).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<S>,
        /// The recipient (sender side).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<S>,
    },
    /// A transfer stopped before the end.
    FileCancelled {
        /// The transfer's id.
        id: u64,
        /// Why.
        reason: S,
    },
    /// Something went wrong; `code` is stable ([`ErrorCode::as_str`](crate::ErrorCode::as_str)).
    Error {
        /// The stable code.
        code: S,
        /// The words for a person.
        message: S,
    },
    /// A `type` this schema does not know (a newer server): what an older client reads
    /// instead of failing. The engine never sends it.
    #[serde(other)]
    Unknown,
}

/// Why a line could not be read as a [`ServerLine`]: not JSON, or no known shape.
#[derive(Debug, thiserror::Error)]
#[error("not a JSON server line: {0}")]
pub struct InvalidServerLine(#[from] serde_json::Error);

impl ServerLine {
    /// Parses one line (with or without its line break).
    pub fn parse(line: &str) -> Result<ServerLine, InvalidServerLine> {
        Ok(serde_json::from_str(line.trim_end_matches(['\r', '\n']))?)
    }
}

impl ServerLine<&str> {
    /// The line as sent: one JSON object and `\n`. Keys come out in sorted order, as they
    /// always have (`type` among the others, not first); JSON readers do not care.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        // Through a `serde_json::Value`: its map sorts the keys.
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut out = Vec::with_capacity(96);
        // Serialising a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, &value);
        out.push(b'\n');
        out
    }
}

fn is_false(value: &bool) -> bool {
    !*value
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
    fn what_the_engine_writes_reads_back_as_the_same_line() {
        let written = ServerLine {
            ts: Some(5),
            event: ServerEvent::FileDone {
                id: 7,
                name: "a.bin",
                size: None,
                from: None,
                to: Some("alice"),
            },
        };
        let bytes = written.to_bytes();
        assert_eq!(
            bytes,
            b"{\"id\":7,\"name\":\"a.bin\",\"to\":\"alice\",\"ts\":5,\"type\":\"file_done\"}\n"
        );
        let read = ServerLine::parse(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(
            read,
            ServerLine {
                ts: Some(5),
                event: ServerEvent::FileDone {
                    id: 7,
                    name: "a.bin".into(),
                    size: None,
                    from: None,
                    to: Some("alice".into())
                }
            }
        );
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
                        members: 3,
                        topic: None
                    },
                    ChannelInfo {
                        name: "rust".into(),
                        members: 1,
                        topic: None
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
    fn text_mode_lines_are_not_server_lines() {
        assert!(ServerLine::parse("Welcome to WUR2 chat!").is_err());
        assert!(ServerLine::parse(r#"{"no_type":1}"#).is_err());
    }
}

//! Cluster mode, the engine's side: what one node publishes for the others, and the parser
//! for what they publish (see `docs/design/cluster.md` in the repository).
//!
//! Several engines sharing one store form one chat when their drivers carry each
//! [`Output::Publish`](crate::Output::Publish) to the other nodes and hand what arrives to
//! [`Engine::handle_published`](crate::Engine::handle_published). The engine encodes and
//! parses every payload itself: a peer's bytes are as hostile as a client's, so a payload
//! is checked whole (version, sizes, names, texts) before any of it is applied.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::file::is_valid_file_name;
use crate::ids::MessageId;
use crate::names::{is_valid_channel_name, is_valid_username};
use crate::store::Role;

/// The version of the payloads below: a node ignores (and counts) payloads of another.
pub const CLUSTER_PROTOCOL_VERSION: u32 = 1;

/// How this engine takes part in a cluster ([`Config::cluster`](crate::Config::cluster)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name, unique in the cluster (a username's characters, 1 to 32); its
    /// incarnation is [`Config::message_id_origin`](crate::Config::message_id_origin),
    /// new at every start, so a restarted node is a new peer.
    pub node: String,
    /// How often this node says it is alive.
    pub heartbeat_interval: Duration,
    /// A peer that publishes nothing for this long is lost: its sessions leave.
    pub node_timeout: Duration,
    /// Sessions kept for any one peer; a peer announcing more is not believed beyond it.
    pub max_sessions_per_peer: usize,
    /// Peers kept at once; payloads from further nodes are ignored.
    pub max_peers: usize,
    /// Longest payload accepted from a peer.
    pub max_payload_bytes: usize,
}

impl ClusterConfig {
    /// A node named `node`, with the default heartbeat (1 s), timeout (5 s) and limits.
    pub fn new(node: impl Into<String>) -> ClusterConfig {
        ClusterConfig {
            node: node.into(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            max_sessions_per_peer: 200_000,
            max_peers: 64,
            max_payload_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Where a publication goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    /// Every node of the cluster (this one included: it ignores its own).
    All,
    /// The node with this name only.
    Node(String),
}

/// One publication: the envelope every payload shares, and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Envelope {
    /// [`CLUSTER_PROTOCOL_VERSION`].
    pub(crate) v: u32,
    /// The publishing node's name.
    pub(crate) node: String,
    /// The publishing node's incarnation.
    pub(crate) inc: u64,
    /// The publisher's count of its publications on [`Topic::All`]: this one's number
    /// there, or (on a node's own topic) the last one published before it.
    pub(crate) seq: u64,
    /// The node a publication on its own topic is for; `None` on [`Topic::All`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) to: Option<String>,
    #[serde(flatten)]
    pub(crate) body: Body,
}

/// What a node tells the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Body {
    /// A committed channel message, for every node's members of `channel`.
    Chat {
        #[serde(with = "as_text")]
        id: MessageId,
        channel: String,
        from: String,
        text: String,
    },
    /// Session `session` of `user`, whose role is `role`, is now in `channel` (logged in,
    /// or moved there).
    Enter {
        session: u64,
        user: String,
        channel: String,
        #[serde(with = "as_text")]
        role: Role,
    },
    /// Session `session` ended; `announce`: its channel hears that it left.
    Exit { session: u64, announce: bool },
    /// The publisher is alive.
    Alive,
    /// The publisher (new, or back on the bus, or missing something) asks for the
    /// receivers' full state, on its own topic.
    Hello,
    /// Every session of the publisher, replacing what the receiver knew of it.
    State { sessions: Vec<PeerSession> },
    /// A committed private message for `recipient`'s sessions on the nodes in `nodes`
    /// (not `to`: that is the envelope's).
    Direct {
        #[serde(with = "as_text")]
        id: MessageId,
        recipient: String,
        from: String,
        text: String,
        nodes: Vec<String>,
    },
    /// The answer of a node named in a [`Body::Direct`]: whether it showed message `id`
    /// to a session of its recipient.
    Delivered {
        #[serde(with = "as_text")]
        id: MessageId,
        delivered: bool,
    },
    /// `user` was kicked by `by`: every node closes its sessions of `user` and tells its
    /// members of `channels` (where the user's sessions were).
    Kick {
        user: String,
        by: String,
        reason: String,
        channels: Vec<String>,
    },
    /// `by` (an admin, with `/role`) gave account `user` role `role`.
    Role {
        user: String,
        #[serde(with = "as_text")]
        role: Role,
        by: String,
    },
    /// Account `user` set its away message on the publisher (`None`: it is back): every
    /// node shows it in `/list`, tells its sessions of `user`, and answers DMs with it.
    Away {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A session of account `user` on the publisher logged the account's other sessions
    /// out (`cause`): every other node logs its sessions of `user` out.
    LoggedOut { user: String, cause: LogoutCause },
    /// The publisher's store registered `channel` (its first joiner's there, or another
    /// node's first) with owner `owner`, as stored.
    Registered {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    /// `by` set channel `channel`'s topic (committed); `None` cleared it.
    Topic {
        channel: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        topic: Option<String>,
        by: String,
    },
    /// `by` made channel `channel` private or public (committed).
    Private {
        channel: String,
        private: bool,
        by: String,
    },
    /// `by` invited `user` (as registered) to channel `channel` (committed).
    Invite {
        channel: String,
        user: String,
        by: String,
    },
    /// The sender's node offers `recipient` (a user with sessions on the receiving node)
    /// file `name` of `size` bytes from `from`: its transfer `transfer` there, which every
    /// other file payload of it names.
    FileOffer {
        transfer: u64,
        recipient: String,
        from: String,
        name: String,
        size: u64,
    },
    /// The bytes of transfer `transfer` from `offset` on, after the envelope's line (from
    /// the sender's node, never past the credit the recipient's node granted).
    FileChunk { transfer: u64, offset: u64 },
    /// The recipient's node lets the sender's node send transfer `transfer`'s bytes up to
    /// `upto` (the file's first `upto` bytes; credits only grow).
    FileCredit { transfer: u64, upto: u64 },
    /// The sender's node ended transfer `transfer` before the recipient had it all.
    FileAbort { transfer: u64, reason: String },
    /// The recipient's node ended transfer `transfer`: the recipient has every byte
    /// (`failure` is `None`), or why not.
    FileOutcome {
        transfer: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
}

/// Why a session logged its account's other sessions out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LogoutCause {
    /// `/password`.
    PasswordChanged,
    /// `/logout-everywhere`.
    Everywhere,
}

impl LogoutCause {
    /// What the sessions logged out are told.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            LogoutCause::PasswordChanged => "the account's password was changed in another session",
            LogoutCause::Everywhere => "another session of the account logged out everywhere",
        }
    }
}

/// A message id or a role as its text on the wire (`Display` out, `FromStr` in), so a
/// payload that parses holds only valid ones.
mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub(super) fn serialize<T: Display, S: Serializer>(
        value: &T,
        out: S,
    ) -> Result<S::Ok, S::Error> {
        out.collect_str(value)
    }

    pub(super) fn deserialize<'de, T, D>(input: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(input)?
            .parse()
            .map_err(de::Error::custom)
    }
}

/// Most nodes or channels a publication may list.
const MAX_LISTED: usize = 1024;

/// A session as [`Body::State`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PeerSession {
    pub(crate) session: u64,
    pub(crate) user: String,
    pub(crate) channel: String,
    #[serde(with = "as_text")]
    pub(crate) role: Role,
    /// The account's away message, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) away: Option<String>,
}

/// Why a payload from a peer was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("payload is not a cluster message: {0}")]
    Malformed(String),
    #[error("cluster protocol version {0}, this node speaks {CLUSTER_PROTOCOL_VERSION}")]
    Version(u32),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl Envelope {
    /// Encodes this publication with `data` after it, on the line after the envelope's
    /// (a [`Body::FileChunk`]'s bytes; JSON has no raw newline, so the first one ends it).
    pub(crate) fn encode_with(&self, data: &[u8]) -> bytes::Bytes {
        // Serializing plain strings and integers into a Vec cannot fail.
        let mut payload = serde_json::to_vec(self).unwrap_or_default();
        if !data.is_empty() {
            payload.reserve(1 + data.len());
            payload.push(b'\n');
            payload.extend_from_slice(data);
        }
        payload.into()
    }

    /// Parses and checks a peer's payload: every name by the rules clients' names follow,
    /// every text within `max_text` bytes. Returns it with the data after its line, which
    /// only a [`Body::FileChunk`] has (and must have).
    pub(crate) fn decode(
        payload: &[u8],
        max_payload: usize,
        max_text: usize,
    ) -> Result<(Envelope, &[u8]), Refusal> {
        if payload.len() > max_payload {
            return Err(Refusal::TooLarge(payload.len()));
        }
        let (payload, data) = match payload.iter().position(|&b| b == b'\n') {
            Some(end) => (&payload[..end], &payload[end + 1..]),
            None => (payload, &[][..]),
        };
        // The version first, so a newer peer's unknown payloads read as a version
        // mismatch, not as garbage.
        #[derive(Deserialize)]
        struct Version {
            v: u32,
        }
        let version: Version =
            serde_json::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if version.v != CLUSTER_PROTOCOL_VERSION {
            return Err(Refusal::Version(version.v));
        }
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
        envelope.check(max_text)?;
        let carries_data = matches!(envelope.body, Body::FileChunk { .. });
        if carries_data == data.is_empty() {
            return Err(Refusal::Invalid("data after the envelope"));
        }
        Ok((envelope, data))
    }

    fn check(&self, max_text: usize) -> Result<(), Refusal> {
        if !is_valid_username(&self.node)
            || self.to.as_deref().is_some_and(|to| !is_valid_username(to))
        {
            return Err(Refusal::Invalid("node name"));
        }
        match &self.body {
            Body::Chat {
                channel,
                from,
                text,
                ..
            } => {
                check_names(from, channel)?;
                if text.len() > max_text {
                    return Err(Refusal::Invalid("message text"));
                }
            }
            Body::Enter { user, channel, .. } => check_names(user, channel)?,
            Body::State { sessions } => {
                for session in sessions {
                    check_names(&session.user, &session.channel)?;
                    if session.away.as_ref().is_some_and(|t| t.len() > max_text) {
                        return Err(Refusal::Invalid("away message"));
                    }
                }
            }
            Body::Direct {
                recipient,
                from,
                text,
                nodes,
                ..
            } => {
                check_user(recipient)?;
                check_user(from)?;
                if text.len() > max_text {
                    return Err(Refusal::Invalid("message text"));
                }
                if nodes.len() > MAX_LISTED || !nodes.iter().all(|n| is_valid_username(n)) {
                    return Err(Refusal::Invalid("node list"));
                }
            }
            Body::Kick {
                user,
                by,
                reason,
                channels,
            } => {
                check_user(user)?;
                check_user(by)?;
                if reason.len() > max_text {
                    return Err(Refusal::Invalid("kick reason"));
                }
                if channels.len() > MAX_LISTED || !channels.iter().all(|c| is_valid_channel_name(c))
                {
                    return Err(Refusal::Invalid("channel list"));
                }
            }
            Body::Role { user, by, .. } => {
                check_user(user)?;
                check_user(by)?;
            }
            Body::FileOffer {
                recipient,
                from,
                name,
                ..
            } => {
                check_user(recipient)?;
                check_user(from)?;
                if !is_valid_file_name(name) {
                    return Err(Refusal::Invalid("file name"));
                }
            }
            Body::LoggedOut { user, .. } => check_user(user)?,
            Body::Away { user, text } => {
                check_user(user)?;
                if text.as_ref().is_some_and(|t| t.len() > max_text) {
                    return Err(Refusal::Invalid("away message"));
                }
            }
            Body::Registered { channel, owner } => {
                check_channel(channel)?;
                if let Some(owner) = owner {
                    check_user(owner)?;
                }
            }
            Body::Topic { channel, topic, by } => {
                check_names(by, channel)?;
                if topic.as_ref().is_some_and(|t| t.len() > max_text) {
                    return Err(Refusal::Invalid("topic"));
                }
            }
            Body::Private { channel, by, .. } => check_names(by, channel)?,
            Body::Invite { channel, user, by } => {
                check_names(by, channel)?;
                check_user(user)?;
            }
            Body::FileAbort { reason, .. }
            | Body::FileOutcome {
                failure: Some(reason),
                ..
            } => {
                if reason.len() > max_text {
                    return Err(Refusal::Invalid("transfer's end reason"));
                }
            }
            Body::Exit { .. }
            | Body::Alive
            | Body::Hello
            | Body::Delivered { .. }
            | Body::FileChunk { .. }
            | Body::FileCredit { .. }
            | Body::FileOutcome { failure: None, .. } => {}
        }
        Ok(())
    }
}

fn check_user(user: &str) -> Result<(), Refusal> {
    if is_valid_username(user) {
        Ok(())
    } else {
        Err(Refusal::Invalid("username"))
    }
}

fn check_channel(channel: &str) -> Result<(), Refusal> {
    if is_valid_channel_name(channel) {
        Ok(())
    } else {
        Err(Refusal::Invalid("channel name"))
    }
}

fn check_names(user: &str, channel: &str) -> Result<(), Refusal> {
    check_user(user)?;
    check_channel(channel)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn envelope(body: Body) -> Envelope {
        Envelope {
            v: CLUSTER_PROTOCOL_VERSION,
            node: "a".into(),
            inc: 7,
            seq: 3,
            to: None,
            body,
        }
    }

    #[test]
    fn a_payload_of_another_version_is_refused_as_such() {
        let payload = br#"{"v":2,"node":"a","inc":1,"seq":1,"type":"something_new"}"#;
        assert_eq!(
            Envelope::decode(payload, 1 << 20, 2048),
            Err(Refusal::Version(2))
        );
    }

    #[test]
    fn a_payload_with_a_bad_message_id_or_role_is_refused() {
        let bad_id =
            br#"{"v":1,"node":"a","inc":1,"seq":1,"type":"delivered","id":"xyz","delivered":true}"#;
        let bad_role = br#"{"v":1,"node":"a","inc":1,"seq":1,"type":"role","user":"bob","role":"king","by":"ann"}"#;
        for payload in [&bad_id[..], &bad_role[..]] {
            let refusal = Envelope::decode(payload, 1 << 20, 2048);
            assert!(matches!(refusal, Err(Refusal::Malformed(_))), "{refusal:?}");
        }
    }

    #[test]
    fn only_a_file_chunk_carries_data_and_it_must() {
        let chunk = envelope(Body::FileChunk {
            transfer: 1,
            offset: 0,
        });
        assert_eq!(
            Envelope::decode(&chunk.encode_with(&[]), 1 << 20, 2048),
            Err(Refusal::Invalid("data after the envelope"))
        );
        let alive = envelope(Body::Alive);
        assert_eq!(
            Envelope::decode(&alive.encode_with(b"x"), 1 << 20, 2048),
            Err(Refusal::Invalid("data after the envelope"))
        );
        let offer = |name: &str| {
            envelope(Body::FileOffer {
                transfer: 1,
                recipient: "bob".into(),
                from: "ann".into(),
                name: name.into(),
                size: 3,
            })
            .encode_with(&[])
        };
        assert!(Envelope::decode(&offer("notes.txt"), 1 << 20, 2048).is_ok());
        assert_eq!(
            Envelope::decode(&offer("../etc/passwd"), 1 << 20, 2048),
            Err(Refusal::Invalid("file name"))
        );
    }

    #[test]
    fn channel_changes_are_checked_as_a_clients_would_be() {
        let decode =
            |body| Envelope::decode(&envelope(body).encode_with(&[]), 1 << 20, 8).map(|_| ());
        let topic = |channel: &str, topic: &str, by: &str| Body::Topic {
            channel: channel.into(),
            topic: Some(topic.into()),
            by: by.into(),
        };
        assert!(decode(topic("#rust", "crabs", "ann")).is_ok());
        assert_eq!(
            decode(topic("#rust", "far too long", "ann")),
            Err(Refusal::Invalid("topic"))
        );
        assert_eq!(
            decode(topic("no spaces", "crabs", "ann")),
            Err(Refusal::Invalid("channel name"))
        );
        let invite = Body::Invite {
            channel: "#rust".into(),
            user: "bob\u{1b}".into(),
            by: "ann".into(),
        };
        assert_eq!(decode(invite), Err(Refusal::Invalid("username")));
        let registered = Body::Registered {
            channel: "#rust".into(),
            owner: Some("".into()),
        };
        assert_eq!(decode(registered), Err(Refusal::Invalid("username")));
        let private = Body::Private {
            channel: "#rust".into(),
            private: true,
            by: "ann".into(),
        };
        assert!(decode(private).is_ok());
    }

    #[test]
    fn names_and_texts_are_checked_as_a_clients_would_be() {
        let chat = |from: &str, channel: &str, text: &str| {
            envelope(Body::Chat {
                id: MessageId {
                    origin: 1,
                    sequence: 2,
                },
                channel: channel.into(),
                from: from.into(),
                text: text.into(),
            })
            .encode_with(&[])
        };
        assert!(Envelope::decode(&chat("bob", "Global", "hi"), 1 << 20, 2048).is_ok());
        let refused = |payload: &[u8]| Envelope::decode(payload, 1 << 20, 4).unwrap_err();
        assert_eq!(
            refused(&chat("bob\u{1b}", "Global", "hi")),
            Refusal::Invalid("username")
        );
        assert_eq!(
            refused(&chat("bob", "no spaces", "hi")),
            Refusal::Invalid("channel name")
        );
        assert_eq!(
            refused(&chat("bob", "Global", "too long")),
            Refusal::Invalid("message text")
        );
        assert_eq!(
            Envelope::decode(&chat("bob", "Global", "hi"), 10, 2048),
            Err(Refusal::TooLarge(chat("bob", "Global", "hi").len()))
        );
    }

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,32}"
    }

    fn body() -> impl Strategy<Value = Body> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), name(), name(), ".{0,40}").prop_map(
                |(origin, sequence, channel, from, text)| Body::Chat {
                    id: MessageId { origin, sequence },
                    channel,
                    from,
                    text,
                }
            ),
            (any::<u64>(), name(), name(), role()).prop_map(|(session, user, channel, role)| {
                Body::Enter {
                    session,
                    user,
                    channel,
                    role,
                }
            }),
            (any::<u64>(), any::<bool>())
                .prop_map(|(session, announce)| Body::Exit { session, announce }),
            Just(Body::Alive),
            Just(Body::Hello),
            proptest::collection::vec(
                (
                    any::<u64>(),
                    name(),
                    name(),
                    role(),
                    proptest::option::of(".{0,20}")
                ),
                0..5
            )
            .prop_map(|sessions| Body::State {
                sessions: sessions
                    .into_iter()
                    .map(|(session, user, channel, role, away)| PeerSession {
                        session,
                        user,
                        channel,
                        role,
                        away,
                    })
                    .collect(),
            }),
            (name(), proptest::option::of(".{0,40}"))
                .prop_map(|(user, text)| Body::Away { user, text }),
            (
                any::<(u64, u64)>(),
                name(),
                name(),
                ".{0,40}",
                proptest::collection::vec(name(), 0..4)
            )
                .prop_map(|((origin, sequence), recipient, from, text, nodes)| {
                    Body::Direct {
                        id: MessageId { origin, sequence },
                        recipient,
                        from,
                        text,
                        nodes,
                    }
                }),
            (any::<(u64, u64)>(), any::<bool>()).prop_map(|((origin, sequence), delivered)| {
                Body::Delivered {
                    id: MessageId { origin, sequence },
                    delivered,
                }
            }),
            (
                name(),
                name(),
                ".{0,40}",
                proptest::collection::vec(name(), 0..4)
            )
                .prop_map(|(user, by, reason, channels)| Body::Kick {
                    user,
                    by,
                    reason,
                    channels,
                }),
            (name(), role(), name()).prop_map(|(user, role, by)| Body::Role { user, role, by }),
            (name(), any::<bool>()).prop_map(|(user, everywhere)| Body::LoggedOut {
                user,
                cause: if everywhere {
                    LogoutCause::Everywhere
                } else {
                    LogoutCause::PasswordChanged
                },
            }),
            (name(), proptest::option::of(name()))
                .prop_map(|(channel, owner)| Body::Registered { channel, owner }),
            (name(), proptest::option::of(".{0,40}"), name())
                .prop_map(|(channel, topic, by)| Body::Topic { channel, topic, by }),
            (name(), any::<bool>(), name()).prop_map(|(channel, private, by)| Body::Private {
                channel,
                private,
                by
            }),
            (name(), name(), name()).prop_map(|(channel, user, by)| Body::Invite {
                channel,
                user,
                by
            }),
            (any::<u64>(), name(), name(), file_name(), any::<u64>()).prop_map(
                |(transfer, recipient, from, name, size)| Body::FileOffer {
                    transfer,
                    recipient,
                    from,
                    name,
                    size,
                }
            ),
            any::<(u64, u64)>().prop_map(|(transfer, offset)| Body::FileChunk { transfer, offset }),
            any::<(u64, u64)>().prop_map(|(transfer, upto)| Body::FileCredit { transfer, upto }),
            (any::<u64>(), ".{0,40}")
                .prop_map(|(transfer, reason)| Body::FileAbort { transfer, reason }),
            (any::<u64>(), proptest::option::of(".{0,40}"))
                .prop_map(|(transfer, failure)| Body::FileOutcome { transfer, failure }),
        ]
    }

    /// A file name by the upload rules (never `.` or `..`).
    fn file_name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,12}(\\.[a-z]{1,4})?"
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::User), Just(Role::Mod), Just(Role::Admin)]
    }

    proptest! {
        #[test]
        fn every_publication_decodes_to_itself(
            body in body(),
            node in name(),
            inc in any::<u64>(),
            seq in any::<u64>(),
            to in proptest::option::of(name()),
            chunk in proptest::collection::vec(any::<u8>(), 1..64),
        ) {
            // Only a chunk carries data, and it may hold any bytes, newlines included.
            let data = if matches!(body, Body::FileChunk { .. }) { &chunk[..] } else { &[][..] };
            let sent = Envelope { v: CLUSTER_PROTOCOL_VERSION, node, inc, seq, to, body };
            let payload = sent.encode_with(data);
            let got = Envelope::decode(&payload, usize::MAX, usize::MAX);
            prop_assert_eq!(got, Ok((sent, data)));
        }

        #[test]
        fn any_bytes_decode_or_are_refused_without_panicking(
            bytes in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            let _ = Envelope::decode(&bytes, 1 << 20, 2048);
        }
    }
}

//! Bans and mutes: `/ban`, `/unban`, `/mute`, `/unmute`, `/bans`, the store answers that
//! complete them, and what a sanction does to live sessions.
//!
//! The store owns sanctions and the wall clock that dates them; it checks who may
//! sanction whom (the target's role must be below the asker's), refuses a banned login
//! whatever the password, and records every change for the servers sharing the accounts.
//! This module keeps only the mute of each online account, with its end on the caller's
//! clock, so that refusing a muted user's message costs no store round trip.

use std::time::Duration;

use super::accounts::Mute;
use super::{Departure, Engine, Pending, Sender};
use crate::ids::ConnectionId;
use crate::names::{is_valid_username, username_key};
use crate::output::CloseReason;
use crate::sanction::{Sanction, SanctionKind};
use crate::sanitize::sanitize_text;
use crate::store::{Role, StoreError, StoreReply, StoreRequest};
use crate::wire::{ErrorCode, Line, Until};

/// The reason stored when a moderator gives none.
const NO_REASON: &str = "no reason given";

impl Engine {
    /// `/ban` or `/mute`: checked here as far as the engine knows, then stored (the store
    /// checks the target's role, which the engine may not know).
    pub(super) fn impose(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        kind: SanctionKind,
        user: &str,
        duration: Option<Duration>,
        reason: Option<String>,
    ) {
        if !self.may_sanction(connection, sender, user) {
            return;
        }
        let reason = reason
            .map(|reason| sanitize_text(&reason).trim().to_string())
            .filter(|reason| !reason.is_empty())
            .unwrap_or_else(|| NO_REASON.to_string());
        let request = StoreRequest::Sanction {
            kind,
            username: user.to_string(),
            by: sender.username.clone(),
            by_role: sender.role,
            duration,
            reason,
        };
        let user = user.to_string();
        self.request_for(request, Pending::Sanction { connection, user });
    }

    /// `/unban` or `/unmute`.
    pub(super) fn lift(
        &mut self,
        connection: ConnectionId,
        sender: &Sender,
        kind: SanctionKind,
        user: &str,
    ) {
        if !self.may_sanction(connection, sender, user) {
            return;
        }
        let request = StoreRequest::LiftSanction {
            kind,
            username: user.to_string(),
            by_role: sender.role,
        };
        let user = user.to_string();
        self.request_for(
            request,
            Pending::Lift {
                connection,
                kind,
                user,
            },
        );
    }

    /// `/bans`.
    pub(super) fn list_sanctions(&mut self, connection: ConnectionId, sender: &Sender) {
        if sender.role < Role::Mod {
            return self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("only moderators and admins can see bans and mutes"),
            );
        }
        let limit = self.config.max_sanctions_listed;
        self.request_for(
            StoreRequest::FetchSanctions { limit },
            Pending::Sanctions { connection },
        );
    }

    /// Whether `sender` may ban, mute or lift a sanction of `user` as far as the engine
    /// can tell (the store checks the target's role); if not, `connection` is told why.
    fn may_sanction(&mut self, connection: ConnectionId, sender: &Sender, user: &str) -> bool {
        if sender.role < Role::Mod {
            self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("only moderators and admins can ban or mute"),
            );
            false
        } else if !is_valid_username(user) {
            self.no_such_user(connection, user);
            false
        } else if username_key(user) == sender.account {
            self.error(
                connection,
                ErrorCode::CannotSanctionSelf,
                format_args!("you cannot ban or mute yourself"),
            );
            false
        } else {
            true
        }
    }

    /// The store set a ban or mute: the asker hears it, and the account's sessions here
    /// follow at once (other servers read it from the store's record of changes).
    pub(super) fn on_sanctioned(
        &mut self,
        connection: ConnectionId,
        user: &str,
        reply: StoreReply,
    ) {
        let StoreReply::Sanctioned(sanction) = reply else {
            return self.sanction_refused(connection, user, reply);
        };
        let sanction = shown(&sanction);
        tracing::info!(
            by = %sanction.by,
            user = %sanction.username,
            kind = %sanction.kind,
            expires_at_ms = ?sanction.expires.map(|e| e.at_unix_ms),
            "sanction set"
        );
        self.send(connection, Line::Sanctioned(&sanction));
        self.apply_sanction(sanction);
    }

    /// The store lifted a ban or mute of `user`.
    pub(super) fn on_lifted(
        &mut self,
        connection: ConnectionId,
        kind: SanctionKind,
        user: &str,
        reply: StoreReply,
    ) {
        let StoreReply::Lifted { username } = reply else {
            if reply == StoreReply::Failed(StoreError::NotSanctioned) {
                let user = sanitize_text(user);
                let what = match kind {
                    SanctionKind::Ban => "banned",
                    SanctionKind::Mute => "muted",
                };
                return self.error(
                    connection,
                    ErrorCode::NotSanctioned,
                    format_args!("{user} is not {what}"),
                );
            }
            return self.sanction_refused(connection, user, reply);
        };
        let username = sanitize_text(&username);
        tracing::info!(user = %username, %kind, "sanction lifted");
        self.send(
            connection,
            Line::Lifted {
                kind,
                user: &username,
            },
        );
        if kind == SanctionKind::Mute {
            self.unmute(&username_key(&username));
        }
    }

    /// The answer to `/bans`.
    pub(super) fn on_sanctions(&mut self, connection: ConnectionId, reply: StoreReply) {
        let StoreReply::Sanctions(sanctions) = reply else {
            return self.store_failed(connection, &reply);
        };
        let sanctions: Vec<Sanction> = sanctions.iter().map(shown).collect();
        self.send(connection, Line::Sanctions(&sanctions));
    }

    /// A refused `/ban`, `/mute`, `/unban` or `/unmute` of `user` (as typed).
    fn sanction_refused(&mut self, connection: ConnectionId, user: &str, reply: StoreReply) {
        match reply {
            StoreReply::Failed(StoreError::UnknownUser) => self.no_such_user(connection, user),
            StoreReply::Failed(StoreError::Outranked) => self.error(
                connection,
                ErrorCode::Forbidden,
                format_args!("moderators can ban and mute users only, admins users and moderators"),
            ),
            other => self.store_failed(connection, &other),
        }
    }

    /// A ban or mute in force (set here, or read from the store's record of changes):
    /// a banned account's sessions here are told and closed, a muted one's told.
    pub(super) fn apply_sanction(&mut self, sanction: Sanction) {
        let key = username_key(&sanction.username);
        match sanction.kind {
            SanctionKind::Ban => self.close_banned(&key, &sanction),
            SanctionKind::Mute => self.mute(&key, sanction),
        }
    }

    /// Closes every session here of banned account `key`, each told why first.
    fn close_banned(&mut self, key: &str, ban: &Sanction) {
        let ban = &shown(ban);
        let sessions = self
            .accounts
            .get(key)
            .map(|account| account.sessions.clone())
            .unwrap_or_default();
        for &session in &sessions {
            self.send(session, Line::Banned(ban));
        }
        // The channel hears the account leave once, as its last session goes.
        let last = sessions.last().copied();
        for session in sessions {
            let departure = if Some(session) == last {
                Departure::Announced
            } else {
                Departure::Silent
            };
            self.close(session, CloseReason::Banned, departure);
        }
    }

    /// Account `key` is muted by `sanction` from the `now` of this input: its sessions
    /// here are told, unless they already know this very mute.
    fn mute(&mut self, key: &str, sanction: Sanction) {
        let sanction = shown(&sanction);
        let now = self.outbox.now();
        let Some(account) = self.accounts.get_mut(key) else {
            return;
        };
        if account
            .mute
            .as_ref()
            .is_some_and(|mute| same_record(&mute.sanction, &sanction))
        {
            return;
        }
        let until = sanction
            .expires
            .map(|expiry| now.and_then(|now| now.checked_add(expiry.remaining)));
        let sessions = account.sessions.clone();
        let mute = Mute {
            // A mute whose end cannot be counted on this clock lasts until lifted.
            until: until.flatten(),
            sanction,
        };
        self.outbox.broadcast(
            &mut self.sessions,
            &sessions,
            None,
            &Line::Muted(&mute.sanction),
        );
        if let Some(account) = self.accounts.get_mut(key) {
            account.mute = Some(mute);
        }
    }

    /// `connection` logged in to account `key`, muted or not as the store said at this
    /// login; the store's word replaces what the account's other sessions knew.
    pub(super) fn muted_at_login(
        &mut self,
        connection: ConnectionId,
        key: &str,
        mute: Option<Sanction>,
    ) {
        let Some(mute) = mute else {
            return self.unmute(key);
        };
        let known = self
            .accounts
            .get(key)
            .and_then(|account| account.mute.as_ref())
            .is_some_and(|known| same_record(&known.sanction, &mute));
        if known {
            self.send(connection, Line::Muted(&shown(&mute)));
        } else {
            self.mute(key, mute);
        }
    }

    /// Account `key` is no longer muted: its sessions here are told, if they knew.
    pub(super) fn unmute(&mut self, key: &str) {
        let Some(account) = self.accounts.get_mut(key) else {
            return;
        };
        if account.mute.take().is_some() {
            let sessions = account.sessions.clone();
            self.outbox
                .broadcast(&mut self.sessions, &sessions, None, &Line::Unmuted);
        }
    }

    /// The mute of online account `key` still in force at the `now` of this input.
    pub(super) fn mute_in_force(&self, key: &str) -> Option<&Sanction> {
        let mute = self.accounts.get(key)?.mute.as_ref()?;
        let ended = match (mute.until, self.outbox.now()) {
            (Some(until), Some(now)) => now >= until,
            _ => false,
        };
        (!ended).then_some(&mute.sanction)
    }

    /// Whether account `key` is muted now; if so, `connection` is told that what it sent
    /// went nowhere.
    pub(super) fn refuse_if_muted(&mut self, connection: ConnectionId, key: &str) -> bool {
        let Some(text) = self.mute_in_force(key).map(muted_text) else {
            return false;
        };
        self.error(connection, ErrorCode::Muted, format_args!("{text}"));
        true
    }

    /// A login refused because the account is banned: told once, then closed. Nothing
    /// counts it as a failed login: the answer was the same whatever the password.
    pub(super) fn refuse_banned(&mut self, connection: ConnectionId, ban: &Sanction) {
        let ban = shown(ban);
        tracing::info!(%connection, user = %ban.username, "banned account refused at login");
        self.send(connection, Line::Banned(&ban));
        self.close(connection, CloseReason::Banned, Departure::Silent);
    }
}

/// What a muted user is told when something they sent is refused.
pub(super) fn muted_text(mute: &Sanction) -> String {
    format!(
        "you are muted {} ({}); nothing was sent",
        Until(mute),
        sanitize_text(&mute.reason)
    )
}

/// A sanction as users may see it: names and reason with no terminal control sequences
/// (the store may hold text the engine did not write, such as the operator's).
fn shown(sanction: &Sanction) -> Sanction {
    Sanction {
        username: sanitize_text(&sanction.username).into_owned(),
        by: sanitize_text(&sanction.by).into_owned(),
        reason: sanitize_text(&sanction.reason).into_owned(),
        ..sanction.clone()
    }
}

/// Whether two reads of a sanction are the same record (the time remaining differs
/// between reads; nothing else does).
fn same_record(a: &Sanction, b: &Sanction) -> bool {
    let end = |s: &Sanction| s.expires.map(|e| e.at_unix_ms);
    (
        a.kind,
        &a.username,
        &a.by,
        &a.reason,
        a.set_at_unix_ms,
        end(a),
    ) == (
        b.kind,
        &b.username,
        &b.by,
        &b.reason,
        b.set_at_unix_ms,
        end(b),
    )
}

//! File transfers whose sender and recipient are on different nodes of a cluster.
//!
//! The sender's node offers the file to the recipient's node ([`Body::FileOffer`]), which
//! shows the offer to its recipient's newest session and grants credit
//! ([`Body::FileCredit`]) as that session reads: never more than the transfer window
//! between what it has queued and what is still on its way. The sender's node sends
//! chunks ([`Body::FileChunk`]) only within the credit, so neither node holds more than
//! the window of a file. Either node may end the transfer ([`Body::FileAbort`] from the
//! sender's, [`Body::FileOutcome`] from the recipient's, which alone can say it completed);
//! the sender's node records the outcome in the history. A node that leaves the cluster
//! ends every transfer it took part in.
//!
//! Every payload names the transfer by its id on the sender's node.

use std::time::Instant;

use super::{Recipient, Requester, Source, Transfer, Transfers, Untold};
use crate::cluster::{Body, Topic};
use crate::engine::Engine;
use crate::ids::{ConnectionId, TransferId};
use crate::names::username_key;
use crate::sanitize::sanitize_text;

impl Transfers {
    /// The transfer here that is `node`'s transfer `transfer` (its recipient is here).
    fn sent_from(&self, node: &str, transfer: u64) -> Option<TransferId> {
        self.running.iter().find_map(|(id, t)| match &t.requester {
            Requester::Node {
                node: from,
                transfer: theirs,
                ..
            } if from == node && *theirs == transfer => Some(*id),
            _ => None,
        })
    }

    /// Transfer `transfer` of this node, if its recipient is on `node`.
    fn sent_to(&self, node: &str, transfer: u64) -> Option<TransferId> {
        let id = TransferId(transfer);
        let transfer = self.running.get(&id)?;
        match &transfer.recipient {
            Recipient::Node { node: to, .. } if to == node => Some(id),
            _ => None,
        }
    }

    /// Bytes granted to other nodes for `recipient` and not arrived yet, over all its
    /// transfers from other nodes, counted as base64 (4 for 3): what may still land in its
    /// queue on top of what is there.
    pub(super) fn on_the_way_to(&self, recipient: ConnectionId) -> usize {
        let bytes: u64 = self
            .running
            .values()
            .filter(|t| t.recipient_here() == Some(recipient))
            .map(|t| match t.requester {
                Requester::Node { granted, .. } => granted.saturating_sub(t.moved()),
                Requester::Here(_) => 0,
            })
            .sum();
        usize::try_from(bytes.saturating_mul(4) / 3).unwrap_or(usize::MAX)
    }

    /// Every transfer with a side on `node`, with what that node's loss means for it.
    fn with_node(&self, node: &str) -> Vec<(TransferId, &'static str)> {
        self.running
            .iter()
            .filter_map(|(id, t)| match (&t.requester, &t.recipient) {
                (Requester::Node { node: from, .. }, _) if from == node => {
                    Some((*id, "the sender's node left the cluster"))
                }
                (_, Recipient::Node { node: to, .. }) if to == node => {
                    Some((*id, "the recipient's node left the cluster"))
                }
                _ => None,
            })
            .collect()
    }
}

impl Engine {
    /// Offers transfer `id` to `recipient` on `node` (this is the sender's node).
    pub(super) fn offer_to_node(
        &mut self,
        id: TransferId,
        node: String,
        recipient: String,
        from: String,
        name: String,
        size: u64,
    ) {
        let body = Body::FileOffer {
            transfer: id.0,
            recipient,
            from,
            name,
            size,
        };
        self.publish(Topic::Node(node), body);
    }

    /// `node` offers file `name` of `size` bytes from `from` to `recipient`, as its
    /// transfer `transfer`: it goes to the recipient's newest session here, or the
    /// sender's node hears why not.
    pub(in crate::engine) fn on_file_offer(
        &mut self,
        node: &str,
        transfer: u64,
        recipient: &str,
        from: &str,
        name: &str,
        size: u64,
    ) {
        if self.transfers.sent_from(node, transfer).is_some() {
            return;
        }
        let max = self.config.max_file_bytes;
        let here = self.accounts.get(&username_key(recipient)).and_then(|a| {
            let newest = a.sessions.last()?;
            Some((Recipient::Here(*newest), a.username.clone()))
        });
        let refusal = match &here {
            _ if size > max => Some(format!("file too large (max {max} bytes)")),
            None => Some(format!("{recipient} is not online")),
            Some(_) => None,
        };
        let (Some(here), None) = (here, refusal.as_ref()) else {
            let failure = refusal;
            let body = Body::FileOutcome { transfer, failure };
            return self.publish(Topic::Node(node.to_owned()), body);
        };
        let requester = Requester::Node {
            node: node.to_owned(),
            transfer,
            granted: 0,
        };
        let from = (username_key(from), from);
        let id = self.new_transfer((&from.0, from.1), requester, here, name, Source::Peer);
        self.announce(id, size);
        self.grant_credit(id);
    }

    /// Bytes of `node`'s transfer `transfer` from `offset` on: to the recipient here.
    /// Bytes out of place or beyond the credit granted end the transfer (some were lost
    /// on the way, or the peer is broken).
    pub(in crate::engine) fn on_file_chunk(
        &mut self,
        node: &str,
        transfer: u64,
        offset: u64,
        data: &[u8],
    ) {
        let Some(id) = self.transfers.sent_from(node, transfer) else {
            // Ended here already.
            return;
        };
        let Some(running) = self.transfers.get(id) else {
            return;
        };
        let Requester::Node { granted, .. } = running.requester else {
            return;
        };
        let len = data.len() as u64;
        if offset
            .checked_add(len)
            .is_some_and(|end| end <= running.moved())
        {
            // A repeat of bytes forwarded already.
            return;
        }
        let in_place = offset == running.moved()
            && len <= running.remaining
            && offset.checked_add(len).is_some_and(|end| end <= granted);
        if !in_place {
            self.stats.bus_refused += 1;
            tracing::warn!(node, transfer = %id, offset, len, "file bytes out of place from a cluster node");
            let failure = "file bytes were lost between the nodes".to_string();
            return self.end_transfer(id, Some(failure));
        }
        self.forward(id, data);
    }

    /// `node`, where transfer `transfer`'s recipient is, lets this node send its bytes up
    /// to `upto`: the source goes on if it waited for room.
    pub(in crate::engine) fn on_file_credit(
        &mut self,
        node: &str,
        transfer: u64,
        upto: u64,
        now: Instant,
    ) {
        let Some(id) = self.transfers.sent_to(node, transfer) else {
            return;
        };
        if let Some(running) = self.transfers.get_mut(id) {
            let size = running.size;
            if let Recipient::Node { credit, .. } = &mut running.recipient {
                *credit = (*credit).max(upto.min(size));
            }
        }
        self.go_on(id, now);
    }

    /// `node`'s transfer `transfer` ended there, for `reason`.
    pub(in crate::engine) fn on_file_abort(&mut self, node: &str, transfer: u64, reason: &str) {
        if let Some(id) = self.transfers.sent_from(node, transfer) {
            let reason = sanitize_text(reason).into_owned();
            self.end_transfer_without(id, Some(reason), Untold::Node);
        }
    }

    /// Transfer `transfer` of this node ended on `node`, its recipient's: complete
    /// (`failure` is `None`) or not.
    pub(in crate::engine) fn on_file_outcome(
        &mut self,
        node: &str,
        transfer: u64,
        failure: Option<&str>,
    ) {
        if let Some(id) = self.transfers.sent_to(node, transfer) {
            let unsent = self.transfers.get(id).is_some_and(|t| t.remaining > 0);
            let failure = match failure {
                Some(reason) => Some(sanitize_text(reason).into_owned()),
                // Completed, says the peer, of bytes never sent: it is not.
                None if unsent => Some("the recipient's node ended it early".to_string()),
                None => None,
            };
            self.end_transfer_without(id, failure, Untold::Node);
        }
    }

    /// `node` left the cluster: every transfer it took part in ends.
    pub(in crate::engine) fn end_transfers_with(&mut self, node: &str) {
        for (id, reason) in self.transfers.with_node(node) {
            self.end_transfer_without(id, Some(reason.to_string()), Untold::Node);
        }
    }

    /// Tells the other node of ended transfer `id`, if one side was there: the sender's
    /// node how it ended, the recipient's node why it was stopped.
    pub(super) fn tell_other_node(
        &mut self,
        id: TransferId,
        transfer: &Transfer,
        failure: Option<&str>,
    ) {
        match (&transfer.requester, &transfer.recipient) {
            (
                Requester::Node {
                    node,
                    transfer: theirs,
                    ..
                },
                _,
            ) => {
                let body = Body::FileOutcome {
                    transfer: *theirs,
                    failure: failure.map(str::to_owned),
                };
                self.publish(Topic::Node(node.clone()), body);
            }
            (_, Recipient::Node { node, .. }) => {
                // Only the recipient's node completes a transfer: this one stopped it.
                let reason = failure.unwrap_or("stopped by the sender's node").to_owned();
                let body = Body::FileAbort {
                    transfer: id.0,
                    reason,
                };
                self.publish(Topic::Node(node.clone()), body);
            }
            _ => {}
        }
    }

    /// Grants the sender's node of transfer `id` (whose recipient is here) credit for as
    /// many more bytes as the window has room for, counting those on their way; in steps
    /// of at least a chunk (or half the window), so credits stay few.
    pub(super) fn grant_credit(&mut self, id: TransferId) {
        let window = self.config.transfer_window_bytes as u64;
        let step = (self.config.transfer_chunk_bytes as u64)
            .min(window / 2)
            .max(1);
        let Some(running) = self.transfers.get(id) else {
            return;
        };
        let (Requester::Node { granted, .. }, &Recipient::Here(recipient)) =
            (&running.requester, &running.recipient)
        else {
            return;
        };
        // Bytes on their way may reach the recipient as base64 (binary data in text mode,
        // any data in JSON mode), 4 bytes for 3: credit is counted so that even then what
        // waits for the recipient, from every transfer to it, stays within the window, as
        // for senders here.
        let on_the_way = self.transfers.on_the_way_to(recipient) as u64;
        let queued = self.sessions.queued_bytes(recipient) as u64;
        let room = window.saturating_sub(queued.saturating_add(on_the_way)) * 3 / 4;
        let upto = granted.saturating_add(room).min(running.size);
        let more = upto.saturating_sub(*granted);
        if more == 0 || (more < step && upto < running.size) {
            return;
        }
        let Some(Requester::Node {
            node,
            transfer,
            granted,
        }) = self.transfers.get_mut(id).map(|t| &mut t.requester)
        else {
            return;
        };
        *granted = upto;
        let body = Body::FileCredit {
            transfer: *transfer,
            upto,
        };
        let topic = Topic::Node(node.clone());
        self.publish(topic, body);
    }
}

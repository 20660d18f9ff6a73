//! What the tool was granted, checked against the limiter's promises:
//! no account ever holds more live streams than its limit, and a granted
//! stream's heartbeat is refused only when something explains it.
//!
//! Times are microseconds since the run began. A request's effect happened
//! somewhere between its send and its answer, so every judgement takes the
//! side that cannot produce a false alarm:
//! - a stream is *certainly live* from the answer that granted it until the
//!   earliest of: its last renewal's send time plus the lease TTL (the
//!   server renewed it no earlier than that send), the send time of the
//!   request known to have ended it, and the send time of any request on
//!   the account still in flight (which may have ended it unbeknown to us);
//! - an over-grant is counted at the instant a grant's answer arrives: the
//!   streams certainly live then, the new one included, above the limit;
//! - a refused heartbeat (410 evicted/replaced/stopped) is explained when
//!   some answer reported that stream ended; while requests on the account
//!   are in flight the explanation may still be on its way, so the check
//!   waits until none are.
//! - a heartbeat answered 404 before the stream's tombstone could have
//!   lapsed stopped a viewer who did nothing wrong (with grants, the
//!   heartbeat carried one: the store forgot and did not resume): a
//!   violation; a resume (`resumed`) is a grant and counts like one;
//! - every rule of the account's plan is checked like the limit, on the
//!   same certainly-live streams, and a 409 naming a rule must name one of
//!   the plan, with its max, listing streams in the start's scope
//!   ([`rules`]).

mod rules;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use streamguard::domain::Plan;

pub use rules::StreamAttrs;

/// Microseconds since the start of the run.
pub type Micros = u64;

/// One broken promise, in words.
pub type Violation = String;

#[derive(Default)]
pub struct Audit {
    accounts: HashMap<String, AccountAudit>,
    violations: Vec<Violation>,
    count: u64,
}

#[derive(Default)]
struct AccountAudit {
    limit: Option<u32>,
    /// The account's plan (the implicit one: no rules).
    plan: Option<Arc<Plan>>,
    /// Whether the plan's `limit` is the account's (the tool read the
    /// service's plans file); otherwise starts report the limit.
    plan_limit: bool,
    streams: HashMap<String, StreamAudit>,
    /// Requests on the account that may end streams (starts, stops), by id,
    /// with their send times.
    in_flight: HashMap<u64, Micros>,
    /// Refused heartbeats waiting for an explanation: stream, reason, when.
    unexplained: Vec<(String, String, Micros)>,
}

#[derive(Clone)]
struct StreamAudit {
    /// When the answer granting it arrived (`None`: only its end is known yet).
    granted: Option<Micros>,
    /// Live at least until here unless ended: last renewal's send + TTL.
    certain_until: Micros,
    /// The send time of the request that ended it.
    ended: Option<Micros>,
    ttl: Micros,
    /// What it was started with (unknown for a stream seen only ending).
    attrs: Option<Arc<StreamAttrs>>,
}

/// What a granted start reported.
pub struct Grant<'a> {
    pub stream: &'a str,
    pub limit: u32,
    pub ttl: Micros,
    pub evicted: &'a [String],
    pub replaced: &'a [String],
    /// What it was started with (`None`: as known already).
    pub attrs: Option<Arc<StreamAttrs>>,
}

impl Audit {
    /// Kept examples; `count()` has them all.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    fn violation(&mut self, v: Violation) {
        self.count += 1;
        if self.violations.len() < 20 {
            self.violations.push(v);
        }
    }

    /// `account` has `plan`; `plan_limit`: its `limit` is the account's.
    pub fn plan(&mut self, account: &str, plan: &Arc<Plan>, plan_limit: bool) {
        let acc = self.accounts.entry(account.to_owned()).or_default();
        if acc.plan.is_none() {
            acc.plan = Some(plan.clone());
            acc.plan_limit = plan_limit;
        }
    }

    /// A start or stop on `account` was sent at `sent`.
    pub fn sent(&mut self, account: &str, request: u64, sent: Micros) {
        let acc = self.accounts.entry(account.to_owned()).or_default();
        acc.in_flight.insert(request, sent);
    }

    /// The answer to request `request` arrived without granting anything
    /// (denied, failed, or a stop).
    pub fn answered(&mut self, account: &str, request: u64) {
        if let Some(acc) = self.accounts.get_mut(account) {
            acc.in_flight.remove(&request);
        }
        self.settle(account);
    }

    /// Request `request`, sent at `sent`, granted a stream; its answer
    /// arrived at `now`.
    pub fn granted(&mut self, account: &str, request: u64, sent: Micros, now: Micros, g: &Grant) {
        let acc = self.accounts.entry(account.to_owned()).or_default();
        acc.in_flight.remove(&request);
        acc.limit = Some(g.limit);
        for ended in g.evicted.iter().chain(g.replaced) {
            acc.end(ended, sent, g.ttl);
        }
        let s = acc
            .streams
            .entry(g.stream.to_owned())
            .or_insert(StreamAudit {
                granted: None,
                certain_until: 0,
                ended: None,
                ttl: g.ttl,
                attrs: None,
            });
        s.granted = Some(now);
        if g.attrs.is_some() {
            s.attrs.clone_from(&g.attrs);
        }
        s.certain_until = s.certain_until.max(sent + g.ttl);
        let horizon = acc.in_flight.values().copied().min().unwrap_or(Micros::MAX);
        let certain: Vec<(&String, &StreamAudit)> = acc
            .streams
            .iter()
            .filter(|(_, s)| {
                let until = s
                    .certain_until
                    .min(s.ended.unwrap_or(Micros::MAX))
                    .min(horizon);
                s.granted.is_some_and(|g| g <= now) && now < until
            })
            .collect();
        let mut found = Vec::new();
        if certain.len() > g.limit as usize {
            let mut ids: Vec<_> = certain.iter().map(|(id, _)| id.as_str()).collect();
            ids.sort_unstable();
            found.push(format!(
                "account {account} held {} live streams over its limit of {}: {}",
                certain.len(),
                g.limit,
                ids.join(", ")
            ));
        }
        let with_attrs: Vec<(&str, &StreamAttrs)> = certain
            .iter()
            .filter_map(|(id, s)| Some((id.as_str(), s.attrs.as_deref()?)))
            .collect();
        for rule in acc.plan.iter().flat_map(|p| &p.rules) {
            if let Some(ids) = rules::overfull(rule, &with_attrs) {
                found.push(format!(
                    "account {account} held {} live streams in the scope of rule {} over its max of {}: {}",
                    ids.len(),
                    rule.name,
                    rule.max.get(),
                    ids.join(", ")
                ));
            }
        }
        for v in found {
            self.violation(v);
        }
        acc_gc(self.accounts.get_mut(account).unwrap(), now);
        self.settle(account);
    }

    /// A heartbeat of `stream`, sent at `sent` and answered at `now`, found
    /// the store had forgotten it and re-admitted it from its grant: a
    /// grant like a start's, so the account's live streams are counted
    /// again (against the limit its last start reported).
    pub fn resumed(&mut self, account: &str, stream: &str, sent: Micros, now: Micros, ttl: Micros) {
        let limit = self.accounts.get(account).and_then(|a| a.limit);
        let Some(limit) = limit else {
            return self.renewed(account, stream, sent);
        };
        self.granted(
            account,
            u64::MAX,
            sent,
            now,
            &Grant {
                stream,
                limit,
                ttl,
                evicted: &[],
                replaced: &[],
                attrs: None,
            },
        );
    }

    /// A 409 `stream-limit-reached` (`body`) refused a start or resume with
    /// attributes `start` on `account`: it must be consistent with the
    /// account's plan and with what the tool started.
    pub fn limit_reached(&mut self, account: &str, start: &StreamAttrs, body: &Value) {
        let Some(acc) = self.accounts.get(account) else {
            return;
        };
        let Some(plan) = &acc.plan else { return };
        let account_limit = if acc.plan_limit {
            Some(plan.limit.get())
        } else {
            acc.limit
        };
        let known = |id: &str| acc.streams.get(id).and_then(|s| s.attrs.as_deref());
        let wrong = rules::check_refusal(plan, account_limit, start, body, known);
        for v in wrong {
            self.violation(format!("account {account}: {v}"));
        }
    }

    /// The attributes `stream` was started with, if the tool still knows.
    pub fn attrs_of(&self, account: &str, stream: &str) -> Option<Arc<StreamAttrs>> {
        self.accounts
            .get(account)?
            .streams
            .get(stream)?
            .attrs
            .clone()
    }

    /// A heartbeat of `stream` sent at `sent` renewed it.
    pub fn renewed(&mut self, account: &str, stream: &str, sent: Micros) {
        if let Some(s) = self
            .accounts
            .get_mut(account)
            .and_then(|a| a.streams.get_mut(stream))
        {
            s.certain_until = s.certain_until.max(sent + s.ttl);
        }
    }

    /// The tool stopped `stream` with a request sent at `sent`.
    pub fn stopped(&mut self, account: &str, request: u64, stream: &str, sent: Micros) {
        if let Some(acc) = self.accounts.get_mut(account) {
            let ttl = acc.streams.get(stream).map_or(0, |s| s.ttl);
            acc.end(stream, sent, ttl);
        }
        self.answered(account, request);
    }

    /// A heartbeat of a stream the tool was granted got 410 with `reason`
    /// (or 404: `reason` = "unknown"), answered at `now`.
    pub fn refused(&mut self, account: &str, stream: &str, reason: &str, now: Micros) {
        let Some(acc) = self.accounts.get_mut(account) else {
            return;
        };
        let Some(s) = acc.streams.get(stream).cloned() else {
            return;
        };
        let could_expire = now >= s.certain_until;
        let v = match reason {
            "expired" if could_expire => None,
            "expired" => Some(format!(
                "heartbeat of {account}/{stream} refused as expired {} ms before its lease could end",
                (s.certain_until - now) / 1000
            )),
            // The tombstone outlives the lease tenfold.
            "unknown" if now >= s.certain_until + 10 * s.ttl => None,
            "unknown" => Some(format!(
                "heartbeat of granted stream {account}/{stream} answered 404"
            )),
            // A resume refused for want of room: the player stops, as on
            // a denied start; the limit was kept.
            "limit-reached" => None,
            "evicted" | "replaced" | "stopped" => {
                acc.unexplained
                    .push((stream.to_owned(), reason.to_owned(), now));
                None
            }
            other => Some(format!(
                "heartbeat of {account}/{stream} refused with reason {other}, which no request of this run causes"
            )),
        };
        if let Some(v) = v {
            self.violation(v);
        }
        if let Some(acc) = self.accounts.get_mut(account) {
            acc.end(stream, now, s.ttl);
        }
        self.settle(account);
    }

    /// Judges refusals once no request on the account is in flight.
    fn settle(&mut self, account: &str) {
        let Some(acc) = self.accounts.get_mut(account) else {
            return;
        };
        if !acc.in_flight.is_empty() || acc.unexplained.is_empty() {
            return;
        }
        let mut found = Vec::new();
        for (stream, reason, at) in std::mem::take(&mut acc.unexplained) {
            let explained = acc
                .streams
                .get(&stream)
                .and_then(|s| s.ended)
                .is_some_and(|ended| ended < at);
            if !explained {
                found.push(format!(
                    "heartbeat of {account}/{stream} refused as {reason} with no eviction or stop seen by the tool"
                ));
            }
        }
        for v in found {
            self.violation(v);
        }
    }

    /// Judges whatever is still pending; call at the end of the run.
    pub fn finish(&mut self) {
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for name in names {
            if let Some(acc) = self.accounts.get_mut(&name) {
                acc.in_flight.clear();
            }
            self.settle(&name);
        }
    }
}

/// Forgets streams that can matter no more: ended or lapsed long ago.
fn acc_gc(acc: &mut AccountAudit, now: Micros) {
    if acc.streams.len() < 16 || !acc.unexplained.is_empty() {
        return;
    }
    acc.streams.retain(|_, s| {
        let until = s.certain_until.min(s.ended.unwrap_or(Micros::MAX));
        until.saturating_add(11 * s.ttl) > now
    });
}

impl AccountAudit {
    /// Records that `stream` ended, no later than `at`.
    fn end(&mut self, stream: &str, at: Micros, ttl: Micros) {
        let s = self
            .streams
            .entry(stream.to_owned())
            .or_insert(StreamAudit {
                granted: None,
                certain_until: 0,
                ended: None,
                ttl,
                attrs: None,
            });
        s.ended = Some(s.ended.map_or(at, |e| e.min(at)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Micros = 90_000_000;

    fn grant<'a>(stream: &'a str, limit: u32, evicted: &'a [String]) -> Grant<'a> {
        Grant {
            stream,
            limit,
            ttl: TTL,
            evicted,
            replaced: &[],
            attrs: None,
        }
    }

    #[test]
    fn a_planted_over_grant_fails_the_audit() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 1, &[]));
        assert_eq!(audit.count(), 0);
        // A second grant on a full account, nothing evicted: the server broke its limit.
        audit.sent("acct", 2, 30);
        audit.granted("acct", 2, 30, 40, &grant("b", 1, &[]));
        assert_eq!(audit.count(), 1);
        assert!(audit.violations()[0].contains("over its limit of 1"));
    }

    #[test]
    fn an_eviction_reported_before_the_grant_it_ended_is_no_over_grant() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.sent("acct", 2, 11);
        // The server granted "a", then "b" evicting "a"; the answers came back
        // in the other order.
        audit.granted("acct", 2, 11, 30, &grant("b", 1, &["a".to_owned()]));
        audit.granted("acct", 1, 10, 31, &grant("a", 1, &[]));
        assert_eq!(audit.count(), 0, "{:?}", audit.violations());
    }

    #[test]
    fn a_start_in_flight_may_have_freed_the_slot() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 1, &[]));
        audit.sent("acct", 2, 30); // a stop of "a", not answered yet
        audit.sent("acct", 3, 31);
        audit.granted("acct", 3, 31, 40, &grant("b", 1, &[]));
        assert_eq!(audit.count(), 0);
        audit.stopped("acct", 2, "a", 30);
        assert_eq!(audit.count(), 0);
    }

    #[test]
    fn a_lease_that_could_have_expired_frees_its_slot() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 1, &[]));
        audit.renewed("acct", "a", 1_000);
        audit.sent("acct", 2, 1_000 + TTL);
        audit.granted("acct", 2, 1_000 + TTL, 1_001 + TTL, &grant("b", 1, &[]));
        assert_eq!(audit.count(), 0);
    }

    #[test]
    fn refusals_need_an_explanation() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 2, &[]));
        audit.sent("acct", 2, 30);
        audit.granted("acct", 2, 30, 40, &grant("b", 2, &[]));
        // Early expiry is a broken promise.
        audit.refused("acct", "a", "expired", 50);
        assert_eq!(audit.count(), 1);
        // An eviction nobody reported is one too, once nothing is in flight.
        audit.refused("acct", "b", "evicted", 60);
        assert_eq!(audit.count(), 2);
    }

    #[test]
    fn an_eviction_seen_explains_the_refusal_even_when_it_arrives_later() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 1, &[]));
        audit.sent("acct", 2, 30); // another device's start with terminate: ["a"]
        audit.refused("acct", "a", "evicted", 45);
        assert_eq!(audit.count(), 0, "the start in flight may explain it");
        audit.granted("acct", 2, 30, 50, &grant("b", 1, &["a".to_owned()]));
        assert_eq!(audit.count(), 0, "{:?}", audit.violations());
        audit.finish();
        assert_eq!(audit.count(), 0);
    }

    #[test]
    fn a_404_stops_a_viewer_and_fails_the_audit() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 3, &[]));
        audit.refused("acct", "a", "unknown", 1_000);
        assert_eq!(audit.count(), 1);
        assert!(audit.violations()[0].contains("answered 404"));
    }

    #[test]
    fn a_resume_is_a_grant_and_counts_against_the_limit() {
        let mut audit = Audit::default();
        audit.sent("acct", 1, 10);
        audit.granted("acct", 1, 10, 20, &grant("a", 1, &[]));
        // The store forgot "a"; its heartbeat resumes it: no over-grant.
        audit.resumed("acct", "a", 100, 110, TTL);
        assert_eq!(audit.count(), 0, "{:?}", audit.violations());
        // Meanwhile "b" was admitted into the forgotten room, and "a" is
        // still certainly live: that is the over-grant a loss can cause.
        audit.sent("acct", 2, 120);
        audit.granted("acct", 2, 120, 130, &grant("b", 1, &[]));
        assert_eq!(audit.count(), 1);
        // A resume refused for want of room stops the viewer, legitimately.
        audit.refused("acct", "a", "limit-reached", 140);
        assert_eq!(audit.count(), 1);
    }
}

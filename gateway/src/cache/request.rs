//! What a LIST or WATCH asks for (`resourceVersion`, `resourceVersionMatch`,
//! `sendInitialEvents`) and where it is served from: pure decisions, tested as tables.

use std::collections::HashMap;

use super::state::Progress;

/// How fresh a read must be (Kubernetes' resourceVersion semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// `resourceVersion` unset or "": as fresh as the store when the request arrived.
    Consistent,
    /// "0": any state the cache holds.
    Any,
    /// N (`resourceVersionMatch=NotOlderThan`, the default): revision N or later. For a
    /// watch: resume after N.
    NotOlderThan(u64),
    /// N with `resourceVersionMatch=Exact`: exactly revision N (lists only).
    Exact(u64),
}

/// The read parameters of a LIST or WATCH request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// From `resourceVersion` and `resourceVersionMatch`.
    pub freshness: Freshness,
    /// `sendInitialEvents` (watch only), when given.
    pub send_initial_events: Option<bool>,
}

impl ReadRequest {
    /// Reads the parameters from a request's query.
    pub fn from_query(q: &HashMap<String, String>) -> Result<ReadRequest, String> {
        let get = |k: &str| q.get(k).map(String::as_str);
        ReadRequest::parse(
            get("resourceVersion"),
            get("resourceVersionMatch"),
            get("sendInitialEvents"),
        )
    }

    /// Validates the three parameters as Kubernetes does.
    pub fn parse(
        resource_version: Option<&str>,
        resource_version_match: Option<&str>,
        send_initial_events: Option<&str>,
    ) -> Result<ReadRequest, String> {
        let send_initial_events = match send_initial_events {
            None | Some("") => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(other) => return Err(format!("invalid sendInitialEvents {other:?}")),
        };
        let rv = resource_version.unwrap_or("");
        let rv_match = resource_version_match.unwrap_or("");
        let number = || {
            rv.parse::<u64>()
                .map_err(|_| format!("invalid resourceVersion {rv:?}"))
        };
        let freshness = match (rv, rv_match) {
            ("", "") => Freshness::Consistent,
            // A watch-list (client-go's WatchList): the consistent state, then changes.
            ("", "NotOlderThan") if send_initial_events.is_some() => Freshness::Consistent,
            ("", _) => {
                return Err(
                    "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                );
            }
            ("0", "" | "NotOlderThan") => Freshness::Any,
            ("0", "Exact") => {
                return Err(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"".into(),
                );
            }
            (_, "" | "NotOlderThan") => Freshness::NotOlderThan(number()?),
            (_, "Exact") => Freshness::Exact(number()?),
            (_, other) => {
                return Err(format!(
                    "unsupported resourceVersionMatch {other:?}: supported values are \"Exact\" and \"NotOlderThan\""
                ));
            }
        };
        Ok(ReadRequest {
            freshness,
            send_initial_events,
        })
    }
}

/// Where a LIST is served from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListPlan {
    /// The store, exactly as without a cache.
    Store,
    /// The cache, once it is at least as fresh as asked; `limit` is ignored (the whole
    /// matching set comes in one page, as Kubernetes' cache does).
    Cache(Freshness),
}

/// Paged reads go to the store: a `continue` token always (the store issued it), and a
/// `limit` unless the client accepts any state ("0") or asks for an exact revision, which
/// the store cannot serve. This is Kubernetes' choice before snapshot paging (1.33),
/// and keeps the store's paging semantics exactly.
pub fn list_plan(freshness: Freshness, has_limit: bool, has_continue: bool) -> ListPlan {
    match freshness {
        _ if has_continue => ListPlan::Store,
        Freshness::Any | Freshness::Exact(_) => ListPlan::Cache(freshness),
        Freshness::Consistent | Freshness::NotOlderThan(_) if has_limit => ListPlan::Store,
        Freshness::Consistent | Freshness::NotOlderThan(_) => ListPlan::Cache(freshness),
    }
}

/// Where a WATCH starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// From a state at least as fresh as asked: its matching objects first (as ADDED,
    /// when `initial_events`), a BOOKMARK marking their end (when `end_bookmark`, for
    /// `sendInitialEvents`), then every later change.
    Snapshot {
        /// How fresh the starting state must be.
        freshness: Freshness,
        /// Send the state's objects as ADDED events.
        initial_events: bool,
        /// Follow them with a BOOKMARK annotated `k8s.io/initial-events-end`.
        end_bookmark: bool,
    },
    /// Every change after revision N, then live ones.
    Resume(u64),
}

/// Kubernetes' watch semantics: "" and "0" start from current state with synthetic
/// ADDED events (none with `sendInitialEvents=false`), N resumes after N, and
/// `sendInitialEvents=true` sends the state at least as fresh as asked, then a bookmark.
pub fn watch_start(read: &ReadRequest) -> Result<WatchStart, String> {
    match (read.freshness, read.send_initial_events) {
        (Freshness::Exact(_), _) => {
            Err("resourceVersionMatch \"Exact\" is not supported for watch".into())
        }
        (freshness, Some(true)) => Ok(WatchStart::Snapshot {
            freshness,
            initial_events: true,
            end_bookmark: true,
        }),
        (Freshness::NotOlderThan(rv), _) => Ok(WatchStart::Resume(rv)),
        (freshness, initial) => Ok(WatchStart::Snapshot {
            freshness,
            initial_events: initial.unwrap_or(true),
            end_bookmark: false,
        }),
    }
}

/// Where a watch resuming after revision `rv` is served from, given the cache's progress
/// and the oldest position its ring continues from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeFrom {
    /// The ring holds every change after `rv`.
    Ring,
    /// `rv` is older than the ring: a direct store watch (410 if the store compacted it).
    Store,
    /// The cache has not reached `rv` yet (or is not ready): wait, then decide again.
    Wait,
}

/// See [`ResumeFrom`].
pub fn resume_from(rv: u64, progress: Progress, oldest: u64) -> ResumeFrom {
    if !progress.ready || rv > progress.rv {
        ResumeFrom::Wait
    } else if rv < oldest {
        ResumeFrom::Store
    } else {
        ResumeFrom::Ring
    }
}

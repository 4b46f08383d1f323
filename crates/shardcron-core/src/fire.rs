//! Fire ids: the stable name of one scheduled occurrence of a job.
//!
//! A fire id is `job_id@unix_ms` where `unix_ms` is the *scheduled* instant, not
//! the moment a node happened to start it. Every node computes the same id for
//! the same occurrence, so the id doubles as the claim key in Redis and as an
//! idempotency key handed to handlers and downstream services.
//!
//! A `broadcast` job's fire runs once on every member, so each member's run
//! needs its own name: `job_id@unix_ms/node_id`. The member part is what
//! keeps the id usable as an idempotency key downstream (two members' runs
//! of one instant are two distinct effects).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One scheduled occurrence `(job_id, scheduled_ms)` of a job.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FireId {
    /// The job this fire belongs to.
    pub job_id: String,
    /// Scheduled instant in Unix milliseconds.
    pub scheduled_ms: i64,
    /// The member that runs it, for a `broadcast` job's fire (each member
    /// runs every fire); `None` for a fire that runs once in the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

impl FireId {
    /// Builds the fire id of `job_id` scheduled at `scheduled_ms`.
    pub fn new(job_id: impl Into<String>, scheduled_ms: i64) -> Self {
        Self {
            job_id: job_id.into(),
            scheduled_ms,
            member: None,
        }
    }

    /// The fire id of `member`'s run of a broadcast job's fire.
    pub fn broadcast(
        job_id: impl Into<String>,
        scheduled_ms: i64,
        member: impl Into<String>,
    ) -> Self {
        Self {
            member: Some(member.into()),
            ..Self::new(job_id, scheduled_ms)
        }
    }

    /// The id as text, as `Display` prints it, built in one allocation
    /// (`to_string` grows its buffer part by part; every run record of
    /// every fire names its fire).
    pub fn text(&self) -> String {
        use fmt::Write as _;
        let member = self.member.as_deref();
        // '@', and an i64 is at most 20 characters with its sign.
        let len = self.job_id.len() + 21 + member.map_or(0, |m| m.len() + 1);
        let mut out = String::with_capacity(len);
        out.push_str(&self.job_id);
        out.push('@');
        let _ = write!(out, "{}", self.scheduled_ms);
        if let Some(member) = member {
            out.push('/');
            out.push_str(member);
        }
        out
    }
}

impl fmt::Display for FireId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.job_id, self.scheduled_ms)?;
        match &self.member {
            Some(member) => write!(f, "/{member}"),
            None => Ok(()),
        }
    }
}

/// Error returned when a string is not of the form `job_id@unix_ms` (or
/// `job_id@unix_ms/node_id`). Pass a fire id as the runtime prints it
/// (`FireId`'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fire id {0:?}: expected job_id@unix_ms or job_id@unix_ms/node_id")]
pub struct ParseFireIdError(pub String);

impl FromStr for FireId {
    type Err = ParseFireIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (job, ms) = s
            .rsplit_once('@')
            .ok_or_else(|| ParseFireIdError(s.to_owned()))?;
        if job.is_empty() {
            return Err(ParseFireIdError(s.to_owned()));
        }
        let (ms, member) = match ms.split_once('/') {
            Some((_, "")) => return Err(ParseFireIdError(s.to_owned())),
            Some((ms, member)) => (ms, Some(member.to_owned())),
            None => (ms, None),
        };
        let scheduled_ms = ms.parse().map_err(|_| ParseFireIdError(s.to_owned()))?;
        Ok(Self {
            member,
            ..Self::new(job, scheduled_ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = FireId::new("billing:nightly", 1_767_225_600_000);
        assert_eq!(id.to_string(), "billing:nightly@1767225600000");
        assert_eq!(id.text(), id.to_string());
        assert_eq!("billing:nightly@1767225600000".parse::<FireId>(), Ok(id));
    }

    #[test]
    fn a_broadcast_fire_names_its_member() {
        let id = FireId::broadcast("cache:flush", 1_767_225_600_000, "node-2");
        assert_eq!(id.to_string(), "cache:flush@1767225600000/node-2");
        assert_eq!(id.text(), id.to_string());
        assert_eq!(FireId::new("j", -1).text(), "j@-1");
        assert_eq!("cache:flush@1767225600000/node-2".parse::<FireId>(), Ok(id));
        assert!("cache:flush@1767225600000/".parse::<FireId>().is_err());
    }

    #[test]
    fn rejects_malformed_ids() {
        assert!("no-at-sign".parse::<FireId>().is_err());
        assert!("@123".parse::<FireId>().is_err());
        assert!("job@soon".parse::<FireId>().is_err());
    }
}

//! The `running` step of a fire row's state machine (`claimed → running →
//! outcome`): the recorder reports the fires whose handlers started and
//! whose end it had not yet to write, and one statement moves each of them
//! from `claimed` to `running`, a compare-and-set on the row's state and
//! claim (holder and token), so a notice arriving after the outcome (or
//! after the fire was handed back or recovered by another node) changes
//! nothing. The rows are locked in key order first, the order every other
//! statement that writes several fire rows takes them in.

use serde_json::{json, Value};
use shardcron_coord::{CoordResult, StartedFire};

use crate::coordinator::PostgresCoordinator;

const MARK_RUNNING: &str = "
WITH s AS (
  SELECT e->>'job' AS job, (e->>'at')::bigint AS at, e->>'holder' AS holder,
         (e->>'token')::bigint AS token
  FROM jsonb_array_elements($1::jsonb) AS a(e)
), l AS (
  SELECT r.job_id, r.at_ms FROM __SCHEMA__.fires r
  JOIN s ON r.job_id = s.job AND r.at_ms = s.at
  ORDER BY r.job_id, r.at_ms
  FOR UPDATE OF r
)
UPDATE __SCHEMA__.fires r SET status = 'running'
FROM s, l
WHERE r.job_id = s.job AND r.at_ms = s.at
  AND l.job_id = r.job_id AND l.at_ms = r.at_ms
  AND r.holder = s.holder AND r.token = s.token AND r.status = 'claimed'";

impl PostgresCoordinator {
    /// Moves the given fires from `claimed` to `running` where their row
    /// still names the same claim; one round trip.
    pub(crate) async fn set_running(&self, fires: &[StartedFire]) -> CoordResult<()> {
        if fires.is_empty() {
            return Ok(());
        }
        let started = Value::Array(
            fires
                .iter()
                .map(|f| {
                    json!({
                        "job": f.job_id,
                        "at": f.scheduled_ms,
                        "holder": f.holder,
                        "token": f.token,
                    })
                })
                .collect(),
        );
        self.query("mark fires running", MARK_RUNNING, &[&started])
            .await
            .map(|_| ())
    }
}

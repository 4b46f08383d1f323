//! The handler every simulated worker runs.
//!
//! It does nothing but take time and write down when it ran: the start (true
//! virtual time, node, instance, fire, fencing token, shard, attempt) and the
//! end. Its duration comes from the job's `args` (`{"ms": n}`), so jobs can
//! be slower than their period. It stops early when the runtime cancels it
//! (lost lease, hard stop) and when its node crashes: the crash token stands
//! in for the process dying. A handler future dropped without finishing (the
//! runtime runs handlers inside its run tasks, and aborting a crashed
//! worker's task drops them) ends its run at that moment, as `dropped`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shardcron_runtime::{FireContext, Handler, HandlerError, RunOutput};
use tokio_util::sync::CancellationToken;

use crate::history::History;

/// Name under which the handler is registered and which every job names.
pub const HANDLER: &str = "sim";

/// Records every attempt it runs in the history.
pub struct SimHandler {
    history: Arc<History>,
    node: String,
    inst: String,
    crashed: CancellationToken,
}

impl SimHandler {
    /// The handler of node incarnation `node/inst`; `crashed` trips when it crashes.
    pub fn new(
        history: Arc<History>,
        node: String,
        inst: String,
        crashed: CancellationToken,
    ) -> Self {
        Self {
            history,
            node,
            inst,
            crashed,
        }
    }
}

/// How long a job's handler runs, from its args.
pub fn duration_of(args: &serde_json::Value) -> Duration {
    Duration::from_millis(
        args.get("ms")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
    )
}

#[async_trait]
impl Handler for SimHandler {
    async fn run(&self, ctx: FireContext) -> Result<RunOutput, HandlerError> {
        let run = self.history.started(
            &self.node,
            &self.inst,
            &ctx.job_id,
            ctx.scheduled_ms,
            ctx.fencing_token,
            ctx.shard,
            (ctx.attempt, ctx.delivery),
        );
        let mut guard = EndOnDrop {
            history: &self.history,
            run: Some(run),
        };
        let how = tokio::select! {
            biased;
            () = self.crashed.cancelled() => "crashed",
            () = ctx.cancel.cancelled() => "cancelled",
            () = tokio::time::sleep(duration_of(&ctx.args)) => "done",
        };
        if let Some(run) = guard.run.take() {
            self.history.ended(run, how);
        }
        Ok(RunOutput::default())
    }
}

/// Ends a run whose handler future is dropped before it finishes.
struct EndOnDrop<'a> {
    history: &'a History,
    run: Option<usize>,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            self.history.ended(run, "dropped");
        }
    }
}

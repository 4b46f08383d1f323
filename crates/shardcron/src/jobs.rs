//! Job management: add, replace, remove, pause, resume and trigger jobs in
//! a running fleet.
//!
//! [`Jobs`] is the client a program uses; [`crate::SchedulerHandle`] hands
//! one out. The free functions below are the operations themselves, on a
//! bare [`Coordinator`]: the `shardcron job` commands and the admin HTTP API
//! go through them too, so a job written from a library, the CLI or the API
//! is checked and propagated the same way. A write is one atomic step of the
//! store that publishes the change: the shard's owner reloads it within
//! milliseconds, and a removed or paused job never fires an instant
//! scheduled after the write was acknowledged (the claim checks the job's
//! version).

use std::sync::Arc;
use std::time::Duration;

use shardcron_coord::{CoordError, Coordinator, StoredJob};
use shardcron_core::{FireId, JobSpec, JobValidationError, Placement};
use shardcron_runtime::HandlerRegistry;

use crate::error::{Error, Precondition, Result};

/// Attempts of a read-modify-write (a pause, a resume, a write that must
/// know whether it created the job) before [`Error::Busy`].
pub const RMW_ATTEMPTS: usize = 5;

/// Job ids read per page by [`Jobs::list`].
const LIST_PAGE: usize = 500;

/// Now, in Unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A job as written, and whether the write created it.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The job as stored, with its new version.
    pub job: StoredJob,
    /// True when no job had this id before the write.
    pub created: bool,
}

/// Checks a job about to be written, the way every front-end does: every
/// field with [`JobSpec::validate_new`] at `now_ms`, then, when `handlers`
/// is given, that the handler exists there and accepts the job's `args`
/// ([`HandlerRegistry::validate`]), and, when `max_misfire_grace` is given
/// (the workers' `claim_retention`), that the grace is shorter.
pub fn check_job(
    spec: &JobSpec,
    handlers: Option<&HandlerRegistry>,
    max_misfire_grace: Option<Duration>,
    now_ms: i64,
) -> Result<(), JobValidationError> {
    spec.validate_new(now_ms)?;
    let invalid = |field: &'static str, message: String| JobValidationError {
        job_id: spec.id.clone(),
        field,
        message,
    };
    if let Some(handlers) = handlers {
        if handlers.get(&spec.handler).is_none() {
            return Err(invalid(
                "handler",
                format!(
                    "no handler {:?} is registered; registered: {}",
                    spec.handler,
                    handlers.names().join(", ")
                ),
            ));
        }
        handlers
            .validate(&spec.handler, &spec.args)
            .map_err(|m| invalid("args", m))?;
    }
    if let Some(limit) = max_misfire_grace {
        if spec.misfire_grace >= limit {
            return Err(invalid(
                "misfire_grace",
                format!(
                    "{:?} must be shorter than the workers' claim_retention ({limit:?})",
                    spec.misfire_grace
                ),
            ));
        }
    }
    Ok(())
}

fn not_found(coord: &dyn Coordinator, id: &str) -> Error {
    Error::NotFound {
        job_id: id.to_owned(),
        namespace: coord.namespace().to_owned(),
    }
}

/// Writes `spec` (already checked: see [`check_job`]) if the stored job
/// meets `precondition`, in the store's atomic write. [`Precondition::Any`]
/// and [`Precondition::Exists`] read the current version first and write
/// against it, so [`Written::created`] is exact; a lost race is retried
/// from a fresh read, up to [`RMW_ATTEMPTS`] times ([`Error::Busy`]).
pub async fn put_job(
    coord: &dyn Coordinator,
    spec: &JobSpec,
    precondition: Precondition,
) -> Result<Written> {
    let conflict = |current: u64| Error::Conflict {
        job_id: spec.id.clone(),
        expected: precondition,
        current,
    };
    let expected = match precondition {
        Precondition::Absent => Some(0),
        Precondition::Version(v) => Some(v),
        Precondition::Any | Precondition::Exists => None,
    };
    if let Some(expected) = expected {
        return match coord.put_job(spec, Some(expected)).await {
            Ok(job) => Ok(Written {
                job,
                created: expected == 0,
            }),
            Err(CoordError::VersionConflict { current, .. }) => Err(conflict(current)),
            Err(e) => Err(e.into()),
        };
    }
    for _ in 0..RMW_ATTEMPTS {
        let current = coord.get_job(&spec.id).await?.map_or(0, |j| j.version);
        if current == 0 && precondition == Precondition::Exists {
            return Err(conflict(0));
        }
        match coord.put_job(spec, Some(current)).await {
            Ok(job) => {
                return Ok(Written {
                    job,
                    created: current == 0,
                })
            }
            Err(CoordError::VersionConflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Busy {
        job_id: spec.id.clone(),
        attempts: RMW_ATTEMPTS,
    })
}

/// Pauses (`paused`) or resumes a job by a version-guarded
/// read-modify-write, so it never undoes a concurrent write of another
/// field; a lost race is retried from a fresh read, up to [`RMW_ATTEMPTS`]
/// times. With `expected_version`, the job must be at that version
/// ([`Error::Conflict`] otherwise, no retry). A job already in the wanted
/// state is returned as is, without a write. Returns the job as stored.
pub async fn set_paused(
    coord: &dyn Coordinator,
    id: &str,
    paused: bool,
    expected_version: Option<u64>,
) -> Result<StoredJob> {
    for _ in 0..RMW_ATTEMPTS {
        let current = coord
            .get_job(id)
            .await?
            .ok_or_else(|| not_found(coord, id))?;
        if let Some(v) = expected_version {
            if v != current.version {
                return Err(Error::Conflict {
                    job_id: id.to_owned(),
                    expected: Precondition::Version(v),
                    current: current.version,
                });
            }
        }
        if current.spec.paused == paused {
            return Ok(current);
        }
        let mut spec = current.spec.clone();
        spec.paused = paused;
        match coord.put_job(&spec, Some(current.version)).await {
            Ok(job) => return Ok(job),
            Err(CoordError::VersionConflict {
                current, expected, ..
            }) => {
                if expected_version.is_some() {
                    return Err(Error::Conflict {
                        job_id: id.to_owned(),
                        expected: Precondition::Version(expected),
                        current,
                    });
                }
                tracing::debug!(job = %id, "version conflict while pausing/resuming; retrying");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Busy {
        job_id: id.to_owned(),
        attempts: RMW_ATTEMPTS,
    })
}

/// Removes a job (at `expected_version`, if given). No fire of it scheduled
/// after the removal is acknowledged starts. [`Error::NotFound`] if there
/// was no such job.
pub async fn remove_job(
    coord: &dyn Coordinator,
    id: &str,
    expected_version: Option<u64>,
) -> Result<()> {
    match coord.delete_job(id, expected_version).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(not_found(coord, id)),
        Err(CoordError::VersionConflict {
            expected, current, ..
        }) => Err(Error::Conflict {
            job_id: id.to_owned(),
            expected: Precondition::Version(expected),
            current,
        }),
        Err(e) => Err(e.into()),
    }
}

/// Queues one extra fire of a job now, with a fire id of its own (two
/// triggers never share one); the shard's owner claims and runs it like a
/// scheduled fire. [`Error::NotFound`] if there is no such job;
/// [`Error::InvalidJob`] naming `placement` for a `broadcast` job, whose
/// fires no one claims (every member runs them on its own schedule).
pub async fn trigger_job(coord: &dyn Coordinator, id: &str) -> Result<FireId> {
    if let Some(job) = coord.get_job(id).await? {
        if job.spec.placement == Placement::Broadcast {
            return Err(Error::InvalidJob(JobValidationError {
                job_id: id.to_owned(),
                field: "placement",
                message: "a broadcast job cannot be triggered: every member runs its fires on its own schedule, and a trigger is claimed by one node".to_owned(),
            }));
        }
    }
    match coord.trigger_job(id).await? {
        Some(ms) => Ok(FireId::new(id, ms)),
        None => Err(not_found(coord, id)),
    }
}

/// Every job id starting with `prefix`, in order, through all pages.
pub async fn all_job_ids(coord: &dyn Coordinator, prefix: &str) -> Result<Vec<String>> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = coord.list_jobs(prefix, after.as_deref(), LIST_PAGE).await?;
        let empty = page.ids.is_empty();
        ids.extend(page.ids);
        match page.next {
            Some(next) if !empty => after = Some(next),
            _ => return Ok(ids),
        }
    }
}

/// A client for the jobs of one namespace: cheap to clone, safe to share
/// (hand it to your HTTP handlers).
///
/// Writes are checked before anything is written ([`check_job`]): every
/// field, and, for the client of a [`crate::SchedulerHandle`], that this
/// node has the job's handler and that the handler accepts the arguments.
#[derive(Clone)]
pub struct Jobs {
    coord: Arc<dyn Coordinator>,
    handlers: Option<HandlerRegistry>,
    max_misfire_grace: Option<Duration>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("namespace", &self.coord.namespace())
            .field(
                "handlers",
                &self.handlers.as_ref().map(HandlerRegistry::names),
            )
            .finish()
    }
}

impl Jobs {
    /// A client that manages jobs without running a worker (an admin
    /// service, a deploy step): opens the store `url` names, in
    /// `namespace`, with the default ring settings. Handler names are not
    /// checked, since the handlers live in the workers. For a fleet with
    /// other ring settings (refused here as [`Error::Config`]), open the
    /// store with [`crate::store::open_store`] and those settings, then
    /// call [`Jobs::new`].
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let coord = shardcron_store::open_store(url, namespace, Default::default()).await?;
        Ok(Self::new(coord))
    }

    /// A client on an open store.
    pub fn new(coord: Arc<dyn Coordinator>) -> Self {
        Self {
            coord,
            handlers: None,
            max_misfire_grace: None,
        }
    }

    /// Also checks that a written job's handler is in `handlers` and
    /// accepts its arguments.
    pub fn with_handlers(mut self, handlers: HandlerRegistry) -> Self {
        self.handlers = Some(handlers);
        self
    }

    /// Also checks that a written job's misfire grace is shorter than
    /// `limit` (the workers' `claim_retention`).
    pub fn with_max_misfire_grace(mut self, limit: Duration) -> Self {
        self.max_misfire_grace = Some(limit);
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.coord.namespace()
    }

    /// The store this client writes to.
    pub fn coordinator(&self) -> &Arc<dyn Coordinator> {
        &self.coord
    }

    /// Checks `job` as a write would, without writing it.
    pub fn check(&self, job: &JobSpec) -> Result<(), JobValidationError> {
        check_job(
            job,
            self.handlers.as_ref(),
            self.max_misfire_grace,
            now_ms(),
        )
    }

    /// Writes `job` if the stored one meets `precondition`.
    pub async fn put(
        &self,
        job: impl Into<JobSpec>,
        precondition: Precondition,
    ) -> Result<Written> {
        let spec = job.into();
        self.check(&spec)?;
        put_job(self.coord.as_ref(), &spec, precondition).await
    }

    /// Adds a new job; [`Error::Conflict`] if one with this id exists.
    pub async fn add(&self, job: impl Into<JobSpec>) -> Result<StoredJob> {
        Ok(self.put(job, Precondition::Absent).await?.job)
    }

    /// Replaces an existing job; [`Error::NotFound`] if there is none. An
    /// edit keeps the job's place in time: fires missed before it are
    /// still caught up under the new definition's misfire policy.
    pub async fn replace(&self, job: impl Into<JobSpec>) -> Result<StoredJob> {
        match self.put(job, Precondition::Exists).await {
            Err(Error::Conflict {
                job_id, current: 0, ..
            }) => Err(Error::NotFound {
                job_id,
                namespace: self.namespace().to_owned(),
            }),
            other => Ok(other?.job),
        }
    }

    /// Adds or replaces a job.
    pub async fn upsert(&self, job: impl Into<JobSpec>) -> Result<Written> {
        self.put(job, Precondition::Any).await
    }

    /// Writes `job` unless it is stored exactly so already (then returns
    /// the stored one, `created: false`): what a program does with its
    /// static jobs at every start, so restarts do not bump versions.
    pub async fn ensure(&self, job: impl Into<JobSpec>) -> Result<Written> {
        let spec = job.into();
        self.check(&spec)?;
        match self.coord.get_job(&spec.id).await? {
            Some(stored) if stored.spec == spec => Ok(Written {
                job: stored,
                created: false,
            }),
            _ => put_job(self.coord.as_ref(), &spec, Precondition::Any).await,
        }
    }

    /// Reads one job; `None` if there is none.
    pub async fn get(&self, id: &str) -> Result<Option<StoredJob>> {
        Ok(self.coord.get_job(id).await?)
    }

    /// Every job whose id starts with `prefix`, in id order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<StoredJob>> {
        let mut jobs = Vec::new();
        for id in all_job_ids(self.coord.as_ref(), prefix).await? {
            // A job removed between listing and reading is left out.
            if let Some(job) = self.coord.get_job(&id).await? {
                jobs.push(job);
            }
        }
        Ok(jobs)
    }

    /// Removes a job; [`Error::NotFound`] if there is none.
    pub async fn remove(&self, id: &str) -> Result<()> {
        remove_job(self.coord.as_ref(), id, None).await
    }

    /// Pauses a job: it keeps its definition but does not fire.
    pub async fn pause(&self, id: &str) -> Result<StoredJob> {
        set_paused(self.coord.as_ref(), id, true, None).await
    }

    /// Resumes a paused job. Fires that came due while it was paused are
    /// not run.
    pub async fn resume(&self, id: &str) -> Result<StoredJob> {
        set_paused(self.coord.as_ref(), id, false, None).await
    }

    /// Queues one extra fire of a job now; returns its fire id.
    pub async fn trigger(&self, id: &str) -> Result<FireId> {
        trigger_job(self.coord.as_ref(), id).await
    }
}

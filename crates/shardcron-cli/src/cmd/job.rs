//! `shardcron job ...`: put, get, rm, pause, resume, trigger, ls.
//!
//! Jobs are validated in full before connecting to Redis, so a bad definition
//! is reported (exit 3) the same way whether or not Redis is up, and nothing
//! is written unless every job of a file is valid. Removing, pausing,
//! resuming and triggering go through the library's job operations
//! (`shardcron::jobs`), which the admin API and embedding programs use too:
//! pause and resume are a read-modify-write guarded by the job's version so
//! that they never undo a concurrent `job put`; on a conflict they re-read
//! and try again.

use futures::{StreamExt, TryStreamExt};
use shardcron_coord::{Coordinator, StoredJob};
use shardcron_handlers::HttpArgs;

use crate::args::{JobCommand, JobLsArgs, JobPutArgs};
use crate::connect::Target;
use crate::exit::CliError;
use crate::jobs_input::{
    builtin_registry, load_jobs_file, validate_all, validate_parsed, JobInput, JobInputError,
    Origin,
};
use crate::output::{json, print, table};

/// Jobs fetched concurrently by `job ls`.
const LS_CONCURRENCY: usize = 32;

/// Runs a `job` subcommand.
pub async fn run(target: &Target, command: JobCommand) -> Result<(), CliError> {
    match command {
        JobCommand::Put(args) => put(target, *args).await,
        JobCommand::Get(a) => {
            let coord = target.connect().await?;
            let job = get_existing(coord.as_ref(), &a.id).await?;
            print(&json(&job)?)
        }
        JobCommand::Rm(a) => {
            let coord = target.connect().await?;
            shardcron::jobs::remove_job(coord.as_ref(), &a.id, None).await?;
            print(&format!("removed job {:?}", a.id))
        }
        JobCommand::Pause(a) => {
            let coord = target.connect().await?;
            let job = set_paused(coord.as_ref(), &a.id, true).await?;
            print(&json(&job)?)
        }
        JobCommand::Resume(a) => {
            let coord = target.connect().await?;
            let job = set_paused(coord.as_ref(), &a.id, false).await?;
            print(&json(&job)?)
        }
        JobCommand::Trigger(a) => {
            let coord = target.connect().await?;
            let fire = shardcron::jobs::trigger_job(coord.as_ref(), &a.id).await?;
            print(&fire.to_string())
        }
        JobCommand::Ls(a) => ls(target, a).await,
    }
}

fn not_found(coord: &dyn Coordinator, id: &str) -> CliError {
    CliError::not_found(format!(
        "job {id:?} not found in namespace {:?}",
        coord.namespace()
    ))
}

async fn get_existing(coord: &dyn Coordinator, id: &str) -> Result<StoredJob, CliError> {
    coord.get_job(id).await?.ok_or_else(|| not_found(coord, id))
}

/// Builds a job input from `job put` flags.
pub fn input_from_flags(args: &JobPutArgs) -> Result<JobInput, JobInputError> {
    let id = args.id.clone().unwrap_or_default();
    let http = match &args.http {
        None => None,
        Some(url) => {
            let mut http = HttpArgs::new(url.clone());
            http.method = args.method.clone();
            http.body = args.body.clone();
            for header in &args.header {
                let Some((name, value)) = header.split_once(':') else {
                    return Err(JobInputError {
                        origin: Origin::Flags,
                        id: Some(id),
                        field: Some("header".to_owned()),
                        message: format!("{header:?} is not of the form NAME:VALUE"),
                    });
                };
                http.headers
                    .insert(name.trim().to_owned(), value.trim().to_owned());
            }
            Some(http)
        }
    };
    Ok(JobInput {
        id,
        schedule: args.schedule.clone().unwrap_or_default(),
        exec: args.exec.clone(),
        http,
        tz: args.tz.clone(),
        timeout: args.timeout.clone(),
        retries: args.retries,
        misfire: args.misfire.map(|m| m.as_str().to_owned()),
        overlap: args.overlap.map(|o| o.as_str().to_owned()),
        misfire_grace: None,
        paused: args.paused,
        delivery: args.delivery.map(|d| d.as_str().to_owned()),
        placement: args.placement.map(|p| p.as_str().to_owned()),
        cost: args.cost,
        metrics_label: args.metrics_label.clone(),
    })
}

async fn put(target: &Target, args: JobPutArgs) -> Result<(), CliError> {
    let registry = builtin_registry();
    match &args.file {
        Some(path) => {
            let parsed = load_jobs_file(path)?;
            let specs = validate_parsed(&parsed, None, &registry)
                .map_err(|e| CliError::from(e).context(format!("jobs file {}", path.display())))?;
            let coord = target.connect().await?;
            let mut stored = Vec::with_capacity(specs.len());
            for spec in &specs {
                let job = coord.put_job(spec, None).await.map_err(|e| {
                    CliError::from(e).context(format!(
                        "after storing {} of {} jobs",
                        stored.len(),
                        specs.len()
                    ))
                })?;
                stored.push(job);
            }
            print(&json(&stored)?)
        }
        None => {
            let input = input_from_flags(&args).map_err(|e| CliError::config(e.to_string()))?;
            let specs = validate_all(&[(Origin::Flags, input)], None, &registry)?;
            let coord = target.connect().await?;
            let mut stored = Vec::with_capacity(1);
            for spec in &specs {
                stored.push(coord.put_job(spec, None).await?);
            }
            match stored.first() {
                Some(job) => print(&json(job)?),
                None => Err(CliError::failure("no job to store")),
            }
        }
    }
}

/// Sets `paused` with a version-guarded read-modify-write, retrying on
/// conflicts ([`shardcron::jobs::set_paused`]); returns the job as stored.
pub async fn set_paused(
    coord: &dyn Coordinator,
    id: &str,
    paused: bool,
) -> Result<StoredJob, CliError> {
    Ok(shardcron::jobs::set_paused(coord, id, paused, None).await?)
}

/// Every job id with `prefix`, in order, through all pages.
pub async fn all_ids(coord: &dyn Coordinator, prefix: &str) -> Result<Vec<String>, CliError> {
    Ok(shardcron::jobs::all_job_ids(coord, prefix).await?)
}

async fn ls(target: &Target, args: JobLsArgs) -> Result<(), CliError> {
    let coord = target.connect().await?;
    let ids = all_ids(coord.as_ref(), &args.prefix).await?;
    let coord_ref: &dyn Coordinator = coord.as_ref();
    let jobs: Vec<Option<StoredJob>> = futures::stream::iter(ids)
        .map(|id| async move { coord_ref.get_job(&id).await })
        .buffered(LS_CONCURRENCY)
        .try_collect()
        .await?;
    // A job removed between listing and reading is simply not shown.
    let jobs: Vec<StoredJob> = jobs.into_iter().flatten().collect();
    if args.json {
        return print(&json(&jobs)?);
    }
    print(&render_ls(&jobs))
}

/// The text form of `job ls`: one row per job, with its placement and
/// delivery.
pub fn render_ls(jobs: &[StoredJob]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.spec.id.clone(),
                j.spec.schedule.clone(),
                j.spec.tz.clone(),
                j.spec.handler.clone(),
                j.spec.cost().to_string(),
                j.spec.placement.as_str().to_owned(),
                j.spec.delivery.as_str().to_owned(),
                j.spec.paused.to_string(),
                j.version.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "SCHEDULE",
            "TZ",
            "HANDLER",
            "COST",
            "PLACEMENT",
            "DELIVERY",
            "PAUSED",
            "VERSION",
        ],
        &rows,
    )
}

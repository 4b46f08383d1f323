//! The facade's contract on the in-memory store: what the builder refuses
//! before anything is written, and what each job operation answers.

use std::sync::Arc;
use std::time::Duration;

use shardcron::store::{MemoryStore, RingConfig};
use shardcron::{Error, Job, Jobs, Precondition, RunOutput, Scheduler, WorkerSettings};

const RING: RingConfig = RingConfig::new(16, 40);

fn builder(store: &MemoryStore) -> shardcron::SchedulerBuilder {
    Scheduler::builder()
        .coordinator(Arc::new(store.coordinator("t", RING).expect("coordinator")))
        .settings(WorkerSettings::fast())
        .handler("h", |_ctx| async move { Ok(RunOutput::default()) })
}

#[tokio::test]
async fn the_builder_refuses_bad_input_before_writing_anything() {
    let store = MemoryStore::new();
    let err = builder(&store)
        .job(Job::cron("ok", "@every 5s").handler("h"))
        .job(Job::cron("bad", "0 0 31 2 *").handler("h"))
        .start()
        .await
        .expect_err("a schedule that never fires");
    assert!(
        matches!(&err, Error::InvalidJob(e) if e.field == "schedule" && e.job_id == "bad"),
        "{err}"
    );
    let err = builder(&store)
        .job(Job::cron("a", "@every 5s").handler("nobody"))
        .start()
        .await
        .expect_err("unknown handler");
    assert!(
        matches!(&err, Error::InvalidJob(e) if e.field == "handler"),
        "{err}"
    );
    let err = builder(&store)
        .job(Job::cron("a", "@every 5s").handler("h"))
        .job(Job::cron("a", "@every 6s").handler("h"))
        .start()
        .await
        .expect_err("duplicate ids");
    assert!(
        matches!(&err, Error::InvalidJob(e) if e.field == "id"),
        "{err}"
    );
    let jobs = Jobs::new(Arc::new(store.coordinator("t", RING).expect("coordinator")));
    assert!(
        jobs.list("").await.expect("list").is_empty(),
        "nothing was written"
    );

    let err = Scheduler::builder().start().await.expect_err("no store");
    assert!(matches!(err, Error::Config(_)), "{err}");
    let err = Scheduler::builder()
        .store("memcached://u:secret@127.0.0.1:1")
        .start()
        .await
        .expect_err("unsupported scheme");
    assert!(
        matches!(&err, Error::Config(m) if m.contains("redis://") && !m.contains("secret")),
        "{err}"
    );
    assert!(!err.is_retryable());
    let mut settings = WorkerSettings::fast();
    settings.concurrency = 0;
    let err = builder(&store)
        .settings(settings)
        .start()
        .await
        .expect_err("bad settings");
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[tokio::test]
async fn job_operations_answer_as_documented() {
    let store = MemoryStore::new();
    let handle = builder(&store)
        .job(Job::cron("static", "@every 5s").handler("h"))
        .start()
        .await
        .expect("start");
    let stored = handle
        .get_job("static")
        .await
        .expect("read")
        .expect("static job");
    // A restart with the same static job does not bump its version.
    let again = handle
        .jobs()
        .ensure(Job::cron("static", "@every 5s").handler("h"))
        .await
        .expect("ensure");
    assert_eq!(again.job.version, stored.version);
    assert!(!again.created);

    let added = handle
        .add_job(Job::cron("j", "@every 5s").handler("h"))
        .await
        .expect("add");
    let err = handle
        .add_job(Job::cron("j", "@every 7s").handler("h"))
        .await
        .expect_err("exists");
    assert!(
        matches!(&err, Error::Conflict { expected: Precondition::Absent, current, .. } if *current == added.version),
        "{err}"
    );
    let err = handle
        .replace_job(Job::cron("nope", "@every 5s").handler("h"))
        .await
        .expect_err("absent");
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let replaced = handle
        .replace_job(Job::cron("j", "@every 7s").handler("h").retries(2))
        .await
        .expect("replace");
    assert_eq!(replaced.spec.retry.max_retries, 2);
    let written = handle
        .upsert_job(Job::cron("k", "@every 5s").handler("h"))
        .await
        .expect("upsert");
    assert!(written.created);
    let err = handle
        .jobs()
        .put(
            Job::cron("k", "@every 9s").handler("h"),
            Precondition::Version(written.job.version + 100),
        )
        .await
        .expect_err("stale version");
    assert!(matches!(err, Error::Conflict { .. }), "{err}");

    let paused = handle.pause_job("j").await.expect("pause");
    assert!(paused.spec.paused);
    assert_eq!(paused.spec.retry.max_retries, 2, "a pause keeps the rest");
    let twice = handle.pause_job("j").await.expect("pause twice");
    assert_eq!(
        twice.version, paused.version,
        "no write when nothing changes"
    );
    assert!(!handle.resume_job("j").await.expect("resume").spec.paused);

    let fire = handle.trigger_job("j").await.expect("trigger");
    assert_eq!(fire.job_id, "j");
    for err in [
        handle.trigger_job("nope").await.expect_err("absent"),
        handle.pause_job("nope").await.expect_err("absent"),
        handle.remove_job("nope").await.expect_err("absent"),
    ] {
        assert!(
            matches!(&err, Error::NotFound { job_id, .. } if job_id == "nope"),
            "{err}"
        );
    }
    handle.remove_job("j").await.expect("remove");
    assert!(handle.get_job("j").await.expect("read").is_none());
    let ids: Vec<String> = handle
        .jobs()
        .list("")
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.spec.id)
        .collect();
    assert_eq!(ids, ["k", "static"]);

    tokio::time::timeout(Duration::from_secs(10), handle.ready())
        .await
        .expect("ready");
    assert!(!handle.is_stopped());
    handle.shutdown().await.expect("graceful shutdown");
}

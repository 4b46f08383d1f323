//! `GET /v1/jobs` pages through 10,000 jobs: every id exactly once, in
//! lexicographic order, with `limit`/`cursor`, the default page size and a
//! prefix filter.

mod api_support;

use std::collections::BTreeSet;

use api_support::*;
use futures::{StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use shardcron_coord::Coordinator;
use shardcron_core::JobSpec;

const JOBS: usize = 10_000;

async fn page_through(api: &TestApi, query: &str) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/jobs?{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", c.replace('/', "%2F")));
        }
        let r = api.call(Method::GET, &path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        pages += 1;
        let page = api_support::ids(&r.json);
        ids.extend(page);
        match r.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (ids, pages),
        }
        assert!(pages <= JOBS, "pagination does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_page_in_order_exactly_once() {
    let api = TestApi::start().await;
    let coord: &dyn Coordinator = api.coord.as_ref();
    let mut expected: Vec<String> = (0..JOBS)
        .map(|i| {
            if i % 2 == 0 {
                format!("even/{i:05}")
            } else {
                format!("odd-{i:05}")
            }
        })
        .collect();
    // Many writes in flight over the multiplexed connection.
    futures::stream::iter(expected.clone())
        .map(|id| async move {
            let mut spec = JobSpec::new(id, "@hourly", "exec");
            spec.args = serde_json::json!({"command": "true"});
            coord.put_job(&spec, None).await
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .expect("store jobs");
    expected.sort();

    let (ids, pages) = page_through(&api, "limit=1000").await;
    assert_eq!(ids.len(), JOBS);
    assert_eq!(ids, expected, "all ids, in order");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        JOBS,
        "no duplicates"
    );
    assert!((10..=11).contains(&pages), "{pages} pages of 1000");

    let first = api.call(Method::GET, "/v1/jobs").await;
    assert_eq!(
        first.json["jobs"].as_array().map(Vec::len),
        Some(100),
        "default limit"
    );

    let (evens, _) = page_through(&api, "prefix=even%2F&limit=999").await;
    let expected_evens: Vec<String> = expected
        .iter()
        .filter(|id| id.starts_with("even/"))
        .cloned()
        .collect();
    assert_eq!(evens, expected_evens);
    println!(
        "paged {} ids in {pages} pages; {} with prefix even/",
        ids.len(),
        evens.len()
    );
}

//! Embedded schema migrations, applied on connect.
//!
//! Many workers start at once, so the migration runs in one transaction
//! holding a transaction-scoped advisory lock keyed by the schema: the
//! first applies what is missing, the others wait and then find nothing
//! to do. `schema_migrations` records each applied version. A schema whose
//! version is newer than this binary knows is refused with a typed error
//! ([`CoordError::ConfigMismatch`] on the field `schema_version`) and
//! nothing is changed: an older binary must not write into tables whose
//! meaning it does not know.

use deadpool_postgres::Object;
use shardcron_coord::CoordError;

use crate::error::map_pg;
use crate::schema::NamespaceSchema;

/// Migrations in order: version, SQL template.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("sql/0001_tables.sql")),
    (2, include_str!("sql/0002_functions.sql")),
    (3, include_str!("sql/0003_placement.sql")),
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i32 = 3;

/// Creates or migrates the namespace's schema.
pub(crate) async fn migrate(
    client: &mut Object,
    url: &str,
    namespace: &str,
    schema: &NamespaceSchema,
) -> Result<(), CoordError> {
    let op = "migrate schema";
    let err = |e: tokio_postgres::Error| map_pg(url, op, &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema.lock_key()])
        .await
        .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {s};
         CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
             version integer PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT clock_timestamp());",
        s = schema.quoted()
    ))
    .await
    .map_err(err)?;
    let row = tx
        .query_one(
            &format!(
                "SELECT coalesce(max(version), 0) FROM {}",
                schema.object("schema_migrations")
            ),
            &[],
        )
        .await
        .map_err(err)?;
    let current: i32 = row.try_get(0).map_err(err)?;
    if current > SCHEMA_VERSION {
        // Dropping the transaction rolls it back: nothing changed.
        return Err(CoordError::ConfigMismatch {
            namespace: namespace.to_owned(),
            field: "schema_version".to_owned(),
            stored: current.to_string(),
            given: SCHEMA_VERSION.to_string(),
        });
    }
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(&schema.render(sql)).await.map_err(err)?;
        tx.execute(
            &format!(
                "INSERT INTO {} (version) VALUES ($1)",
                schema.object("schema_migrations")
            ),
            &[&version],
        )
        .await
        .map_err(err)?;
    }
    tx.commit().await.map_err(err)
}

//! The schema a namespace's tables live in.
//!
//! Several namespaces share one database, each in a schema of its own, so
//! no statement of one can touch another's rows. A namespace is free text;
//! a schema name must be a short identifier, so the name is derived: a
//! plain namespace (lower-case letters, digits, `_`, at most 40) keeps its
//! name after the `shardcron_` prefix, any other gets a sanitised prefix
//! and a hash of the whole namespace, so two namespaces never share one.
//! The same name is the `LISTEN`/`NOTIFY` channel of the namespace's events.

use xxhash_rust::xxh3::xxh3_64;

/// Longest namespace kept as it is in the schema name.
const PLAIN_MAX: usize = 40;

/// Schema (and event channel) of one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceSchema {
    name: String,
}

impl NamespaceSchema {
    /// The schema of `namespace`.
    pub fn new(namespace: &str) -> Self {
        let plain = !namespace.is_empty()
            && namespace.len() <= PLAIN_MAX
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        let name = if plain {
            format!("shardcron_{namespace}")
        } else {
            let cleaned: String = namespace
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .take(24)
                .collect();
            format!("shardcron_{cleaned}_{:016x}", xxh3_64(namespace.as_bytes()))
        };
        Self { name }
    }

    /// The bare name (`[a-z0-9_]`, at most 63 bytes): also the channel.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name quoted as an SQL identifier.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.name)
    }

    /// `schema.object`, quoted, for statements.
    pub fn object(&self, object: &str) -> String {
        format!("\"{}\".{object}", self.name)
    }

    /// A statement template with `__SCHEMA__` and `__CHANNEL__` filled in.
    pub fn render(&self, sql: &str) -> String {
        sql.replace("__SCHEMA__", &self.quoted())
            .replace("__CHANNEL__", &self.name)
    }

    /// Key of the advisory lock migrations of this schema take.
    pub fn lock_key(&self) -> i64 {
        i64::from_ne_bytes(
            xxh3_64(format!("shardcron-migrate:{}", self.name).as_bytes()).to_ne_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_namespaces_keep_their_name_and_others_are_hashed() {
        assert_eq!(NamespaceSchema::new("prod_1").name(), "shardcron_prod_1");
        let odd = NamespaceSchema::new("Prod-1\"; DROP");
        assert!(
            odd.name().starts_with("shardcron_prod_1___drop_"),
            "{}",
            odd.name()
        );
        assert!(odd
            .name()
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        assert_ne!(
            NamespaceSchema::new("a-b").name(),
            NamespaceSchema::new("a.b").name()
        );
        let long = NamespaceSchema::new(&"x".repeat(500));
        assert!(long.name().len() <= 63);
    }
}

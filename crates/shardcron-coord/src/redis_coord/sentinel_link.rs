//! The connection to the master of a Redis Sentinel group, followed across
//! failovers.
//!
//! A Sentinel group is one master and its replicas, watched by sentinels
//! that promote a replica when the master is down. Clients are not told:
//! they must ask a sentinel who the master is (`SENTINEL
//! get-master-addr-by-name`) and ask again when the master they know stops
//! answering, or answers `READONLY` (it was turned into a replica). A
//! connection that reconnects by itself to a fixed address would be wrong
//! here twice over: it would keep dialling a dead master, and a master
//! restarted without its data comes back as a master, empty, until the
//! sentinels turn it into a replica — writes sent there in that window are
//! lost. So the link connects only to the address the sentinels name (and
//! that answers `ROLE` as master), never reconnects on its own, and asks
//! the sentinels again, in the background and at most every
//! [`REDISCOVER_EVERY`], whenever a request fails as unreachable or is
//! refused as read-only.
//!
//! A request that failed this way is an error to its caller, never resent:
//! a claim's reply that was lost may or may not have been applied, and the
//! runtime already treats such a claim as one of unknown fate.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::events::NextClient;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, IntoConnectionInfo, RedisError, ServerErrorKind,
    Value,
};

/// URL scheme of a store reached through Redis Sentinel.
pub const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// Least time between two lookups of the master after failed requests.
const REDISCOVER_EVERY: Duration = Duration::from_millis(250);

/// What a `redis+sentinel://` URL names.
#[derive(Clone, Debug)]
pub(crate) struct SentinelTarget {
    /// `redis://host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the master under.
    pub master_name: String,
    /// User and password of the master (and its replicas), if any.
    pub auth: (Option<String>, Option<String>),
    /// User and password of the sentinels themselves (URL options
    /// `sentinel_user`, `sentinel_password`), if any: a sentinel with
    /// `requirepass` or an ACL user refuses a client that does not
    /// authenticate, and its password is usually not the master's.
    pub sentinel_auth: (Option<String>, Option<String>),
}

/// Reads the part of a `redis+sentinel://` URL after the scheme (and after
/// shardcron's own query options were taken out):
/// `[user:password@]host:port[,host:port…]/<master-name>[?sentinel_user=…&sentinel_password=…]`.
/// Returns why it is unusable.
pub(crate) fn parse_sentinel_url(rest: &str) -> Result<SentinelTarget, String> {
    let (auth, rest) = match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    };
    let Some((hosts, path)) = rest.split_once('/') else {
        return Err(
            "a sentinel URL names no master (redis+sentinel://host:port[,host:port...]/<master-name>)"
                .into(),
        );
    };
    let (path, sentinel_auth) = match path.split_once('?') {
        Some((path, query)) => (path, sentinel_options(query)?),
        None => (path, (None, None)),
    };
    let master_name = path.trim_end_matches('/');
    if master_name.is_empty() {
        return Err(
            "a sentinel URL names no master after its hosts (…/<master-name>, as in `sentinel monitor <master-name> …`)"
                .into(),
        );
    }
    if master_name.contains('/') {
        return Err(format!(
            "a sentinel URL's path is the master name alone, found {master_name:?}"
        ));
    }
    let mut sentinels = Vec::new();
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        let port_ok = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !port_ok {
            return Err(format!(
                "bad sentinel address {host:?}: expected host:port with a port from 1 to 65535"
            ));
        }
        let url = format!("redis://{host}");
        url.as_str()
            .into_connection_info()
            .map_err(|e| format!("bad sentinel address {host:?}: {e}"))?;
        sentinels.push(url);
    }
    if sentinels.is_empty() {
        return Err(
            "a sentinel URL names no sentinel (redis+sentinel://host:port[,host:port...]/<master-name>)"
                .into(),
        );
    }
    let auth = match auth {
        None => (None, None),
        Some(auth) => {
            let (user, password) = match auth.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (auth, None),
            };
            let decode =
                |s: &str| percent_decode(s).ok_or_else(|| format!("bad percent-encoding in {s:?}"));
            let user = (!user.is_empty()).then(|| decode(user)).transpose()?;
            let password = password.filter(|p| !p.is_empty()).map(decode).transpose()?;
            (user, password)
        }
    };
    Ok(SentinelTarget {
        sentinels,
        master_name: master_name.to_owned(),
        auth,
        sentinel_auth,
    })
}

/// Reads the query of a sentinel URL (after shardcron's own options were
/// taken out): `sentinel_user` and `sentinel_password`, percent-decoded.
fn sentinel_options(query: &str) -> Result<(Option<String>, Option<String>), String> {
    let (mut user, mut password) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value =
            percent_decode(value).ok_or_else(|| format!("bad percent-encoding in {key}"))?;
        let slot = match key {
            "sentinel_user" => &mut user,
            "sentinel_password" => &mut password,
            _ => {
                return Err(format!(
                    "a sentinel URL takes no options but sentinel_user, sentinel_password, min_replicas and replica_wait_ms, found {key:?}"
                ))
            }
        };
        if value.is_empty() {
            return Err(format!("{key} is empty"));
        }
        *slot = Some(value);
    }
    if user.is_some() && password.is_none() {
        return Err("sentinel_user needs a sentinel_password".into());
    }
    Ok((user, password))
}

/// How to reach each sentinel of `target`, with the sentinels' login.
fn sentinel_infos(target: &SentinelTarget) -> Result<Vec<redis::ConnectionInfo>, RedisError> {
    target
        .sentinels
        .iter()
        .map(|url| {
            url.as_str()
                .into_connection_info()
                .map(|info| info.set_redis_settings(with_auth(&target.sentinel_auth)))
        })
        .collect()
}

/// `RedisConnectionInfo` with the user and password of `auth`, if any.
fn with_auth(auth: &(Option<String>, Option<String>)) -> redis::RedisConnectionInfo {
    let mut info = redis::RedisConnectionInfo::default();
    if let Some(user) = &auth.0 {
        info = info.set_username(user);
    }
    if let Some(password) = &auth.1 {
        info = info.set_password(password);
    }
    info
}

/// `%XX` sequences decoded (as in the user and password of a `redis://`
/// URL); `None` if one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The connection to a Sentinel group's current master; cheap to clone.
#[derive(Clone)]
pub(crate) struct SentinelLink {
    inner: Arc<Inner>,
}

struct Inner {
    /// Asks the sentinels; its calls take `&mut`.
    sentinels: tokio::sync::Mutex<SentinelClient>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    state: Mutex<State>,
}

struct State {
    conn: MultiplexedConnection,
    /// A client of the same master (for the first subscription).
    client: Client,
    /// `host:port` of the master `conn` reaches.
    master: String,
    last_lookup: Instant,
    looking: bool,
}

impl SentinelLink {
    /// Asks the sentinels of `target` for the master and connects to it.
    pub async fn connect(
        target: &SentinelTarget,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, RedisError> {
        let node_info = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(with_auth(&target.auth));
        let client = SentinelClient::build(
            sentinel_infos(target)?,
            target.master_name.clone(),
            Some(node_info),
            SentinelServerType::Master,
        )?;
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(Some(response_timeout))
            .set_connection_timeout(Some(connect_timeout));
        let sentinels = tokio::sync::Mutex::new(client);
        let (master, client, conn) = match lookup(&sentinels, &config).await {
            Ok(found) => found,
            Err(e) if is_login_refused(&e) => return Err(whose_login(target, &config, e).await),
            Err(e) => return Err(e),
        };
        tracing::debug!(%master, "connected to the master named by the sentinels");
        Ok(Self {
            inner: Arc::new(Inner {
                sentinels,
                config,
                connect_timeout,
                state: Mutex::new(State {
                    conn,
                    client,
                    master,
                    last_lookup: Instant::now(),
                    looking: false,
                }),
            }),
        })
    }

    /// The connection to send the next request on.
    pub fn current(&self) -> MultiplexedConnection {
        self.lock().conn.clone()
    }

    /// A client of the master the sentinels name now (for the pub/sub
    /// listener, which subscribes anew after each lost subscription).
    pub async fn master_client(&self) -> Result<Client, RedisError> {
        let mut sentinels = self.inner.sentinels.lock().await;
        sentinels.async_get_client().await
    }

    /// Where the pub/sub listener subscribes: first the master the link
    /// is connected to (no second lookup, so the listener is subscribed
    /// about as soon as on a single server), then, after each lost or
    /// failed subscription, the master the sentinels name at that time.
    pub fn subscriptions(&self) -> NextClient {
        let link = self.clone();
        let mut first = true;
        Box::new(move || {
            let link = link.clone();
            let known = std::mem::take(&mut first).then(|| link.lock().client.clone());
            Box::pin(async move {
                match known {
                    Some(client) => Ok(client),
                    None => link.master_client().await,
                }
            })
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks at a request's outcome: an error that says the master was not
    /// reached, or a `READONLY` refusal (it is a replica now), starts a
    /// lookup of the master (unless one ran within [`REDISCOVER_EVERY`]).
    pub fn note<T: AsValues>(&self, outcome: &Result<T, RedisError>) {
        let lost = match outcome {
            Err(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                    || is_read_only(e)
            }
            Ok(values) => values.values().iter().any(|v| match v {
                Value::ServerError(e) => is_read_only(&RedisError::from(e.clone())),
                _ => false,
            }),
        };
        if lost {
            self.rediscover();
        }
    }

    fn rediscover(&self) {
        {
            let mut state = self.lock();
            if state.looking || state.last_lookup.elapsed() < REDISCOVER_EVERY {
                return;
            }
            state.looking = true;
        }
        let link = self.clone();
        tokio::spawn(async move {
            let inner = &link.inner;
            let found = tokio::time::timeout(
                inner.connect_timeout * 2,
                lookup(&inner.sentinels, &inner.config),
            )
            .await;
            let mut state = link.lock();
            state.looking = false;
            state.last_lookup = Instant::now();
            match found {
                Ok(Ok((master, client, conn))) => {
                    if master != state.master {
                        tracing::info!(from = %state.master, to = %master, "following the master the sentinels promoted");
                    }
                    state.master = master;
                    state.client = client;
                    state.conn = conn;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "master lookup through the sentinels failed")
                }
                Err(_) => tracing::debug!("master lookup through the sentinels timed out"),
            }
        });
    }
}

/// Asks the sentinels for the master (the client checks that it answers
/// `ROLE` as master) and connects to it: its `host:port`, a client of it
/// and the connection.
async fn lookup(
    sentinels: &tokio::sync::Mutex<SentinelClient>,
    config: &AsyncConnectionConfig,
) -> Result<(String, Client, MultiplexedConnection), RedisError> {
    let client = sentinels.lock().await.async_get_client().await?;
    let master = client.get_connection_info().addr().to_string();
    let conn = client
        .get_multiplexed_async_connection_with_config(config)
        .await?;
    Ok((master, client, conn))
}

/// Whether `e` is a refused login (`NOAUTH`, `WRONGPASS`, or the client's
/// own authentication failure).
fn is_login_refused(e: &RedisError) -> bool {
    let text = e.to_string();
    e.kind() == ErrorKind::AuthenticationFailed
        || text.contains("NOAUTH")
        || text.contains("WRONGPASS")
}

/// The error of a lookup that a login refused, saying whose: the lookup
/// logs in to the sentinels and then to the master they name, and the
/// client's error does not tell which. One sentinel that takes the
/// sentinel login (a `PING` answered) means the master refused.
async fn whose_login(
    target: &SentinelTarget,
    config: &AsyncConnectionConfig,
    refused: RedisError,
) -> RedisError {
    let mut sentinel_took_login = false;
    for info in sentinel_infos(target).unwrap_or_default() {
        let Ok(client) = Client::open(info) else {
            continue;
        };
        if let Ok(mut conn) = client
            .get_multiplexed_async_connection_with_config(config)
            .await
        {
            if redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok()
            {
                sentinel_took_login = true;
                break;
            }
        }
    }
    let whose = if sentinel_took_login {
        "the master the sentinels named refused the login (the URL's user and password)"
    } else {
        "the sentinels refused the login (options sentinel_user and sentinel_password)"
    };
    RedisError::from((ErrorKind::AuthenticationFailed, whose, refused.to_string()))
}

/// Whether a reply says the server is a replica now (`READONLY`, also as
/// the error of a script's write).
fn is_read_only(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly) || e.to_string().contains("READONLY")
}

/// The replies of a request, to look for a `READONLY` among them.
pub(crate) trait AsValues {
    /// Every reply (one for a command, several for a pipeline).
    fn values(&self) -> &[Value];
}

impl AsValues for Value {
    fn values(&self) -> &[Value] {
        std::slice::from_ref(self)
    }
}

impl AsValues for Vec<Value> {
    fn values(&self) -> &[Value] {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_sentinels_and_a_master() {
        let t = parse_sentinel_url("u:p%40ss@h1:26379,h2:26380/mymaster").unwrap();
        assert_eq!(t.sentinels, ["redis://h1:26379", "redis://h2:26380"]);
        assert_eq!(t.master_name, "mymaster");
        assert_eq!(t.auth, (Some("u".into()), Some("p@ss".into())));
        let t = parse_sentinel_url(":secret@h:1/m/").unwrap();
        assert_eq!(t.auth, (None, Some("secret".into())));
        assert_eq!(t.master_name, "m");
        assert_eq!(t.sentinel_auth, (None, None));
        let t = parse_sentinel_url("h:1/m?sentinel_user=s&sentinel_password=p%26w").unwrap();
        assert_eq!(t.sentinel_auth, (Some("s".into()), Some("p&w".into())));
        assert_eq!(t.master_name, "m");
        let t = parse_sentinel_url("h:1/m?sentinel_password=pw").unwrap();
        assert_eq!(t.sentinel_auth, (None, Some("pw".into())));
    }

    #[test]
    fn store_urls_carry_shardcrons_options_to_a_sentinel_target() {
        let t = super::super::conn::parse_target(
            "redis+sentinel://h:1,h:2/m?min_replicas=0&replica_wait_ms=50",
        )
        .unwrap();
        assert!(t.nodes.is_empty() && !t.cluster);
        assert_eq!((t.min_replicas, t.replica_wait_ms), (Some(0), Some(50)));
        assert_eq!(t.sentinel.map(|s| s.master_name).as_deref(), Some("m"));
        assert!(super::super::conn::check_redis_url("redis+sentinel://h:1").is_err());
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong() {
        let cases = [
            ("h:26379", "names no master"),
            ("h:26379/", "names no master"),
            ("/m", "names no sentinel"),
            ("h:notaport/m", "bad sentinel address \"h:notaport\""),
            ("h:70000/m", "bad sentinel address \"h:70000\""),
            ("h/m", "bad sentinel address \"h\""),
            ("h:1/m/0", "master name alone"),
            ("h:1/m?db=2", "takes no options"),
            ("h:1/m?sentinel_user=u", "needs a sentinel_password"),
            ("h:1/m?sentinel_password=", "sentinel_password is empty"),
            (
                "h:1/m?sentinel_password=%zz",
                "bad percent-encoding in sentinel_password",
            ),
        ];
        for (url, expected) in cases {
            let err = parse_sentinel_url(url).err().unwrap_or_default();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}

//! The Redfish sessions racklift keeps open between reconciles: one per BMC and user, so a
//! provisioning that looks at its BMC N times reads the service root, detects the vendor and
//! logs in once, not N times.
//!
//! - **Key**: the BMC's URL and the user name. Never the password: it is not in the key, in a
//!   log line or in `Debug`. The entry holds the [`BmcEndpoint`] it was opened with, and a
//!   session is handed out only for the very same endpoint (password, CA, TLS verification,
//!   timeout): when the configuration gives that BMC and user another password (racklift's
//!   configuration is read once at start, so this is another device whose OOB IP is now this
//!   BMC's, or a racklift restarted with a new file, whose cache starts empty anyway), the old
//!   session is deleted and racklift logs in with the new one. A login made with one
//!   password never stands in for another: the configured credentials are proven on the BMC.
//! - **Idle time**: [`IDLE`], five minutes. Shorter than every common BMC's own idle session
//!   timeout (iLO 5 and iDRAC 9 default to 30 minutes, XCC and Supermicro likewise or longer),
//!   so racklift deletes its sessions before the BMC expires them rather than finding them
//!   dead; and far longer than a provisioning's polls (`bmc.poll_interval`, 5 s) and retries
//!   (`reconciler.backoff_max`), so a device's reconciles share one login. A session the BMC
//!   expires anyway (configured shorter, the BMC rebooted, another client deleted it) answers
//!   401; racklift logs in again once and sends the request again (in the session,
//!   `client.rs`); a second 401 or a refused login is the device's error, as before.
//! - **Closing**: a stage that is done with a BMC ([`Sessions::close`]) deletes the session at
//!   once and awaits it (BMCs cap their sessions: iDRAC has a handful). An entry that idles
//!   out, or is replaced, leaves the cache through moka's eviction listener, which only drops
//!   it: the last holder's drop spawns the DELETE (bounded by the request timeout), so a
//!   session evicted while a reconcile still uses it is deleted when that reconcile is done,
//!   not under it. Expiry runs when the cache is used and on [`Sessions::expire_idle`]'s tick.
//!   At shutdown [`Sessions::close_all`] deletes what is left; a killed racklift leaves its
//!   sessions to the BMC's timeout.
//! - **Concurrency**: two reconciles of one device never run at once (the controller's queue).
//!   Two devices share an entry only if NetBox gives them the same BMC address and user. If two
//!   reconciles did use one session at once, each request carries the current token; a 401
//!   makes one of them log in again while the other waits and uses the new token; a session
//!   one of them closes is logged into again by the other's next request (and deleted when the
//!   other drops it). Two reconciles missing the cache at once each open a session; the one
//!   inserted last stays, the other is deleted when its reconcile ends.

use std::sync::Arc;
use std::time::Duration;

use super::{BmcEndpoint, RedfishError, Session};

/// How long a session stays open unused (see the module's documentation).
pub const IDLE: Duration = Duration::from_secs(5 * 60);

/// How often idle sessions are looked for when nothing else touches the cache.
const EXPIRY_TICK: Duration = Duration::from_secs(30);

/// At most this many BMCs' sessions are kept; past it the least used are closed.
const CAPACITY: u64 = 10_000;

/// Which BMC, as whom: the cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    url: url::Url,
    username: String,
}

impl Key {
    fn of(endpoint: &BmcEndpoint) -> Self {
        Self {
            url: endpoint.url.clone(),
            username: endpoint.username.clone(),
        }
    }
}

/// The open Redfish sessions, one per BMC and user, shared by every reconcile.
#[derive(Clone)]
pub struct Sessions {
    cache: moka::sync::Cache<Key, Arc<Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.cache.entry_count())
            .finish()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
        Self::with_idle(IDLE)
    }

    /// Sessions unused for `idle` are closed.
    pub fn with_idle(idle: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(CAPACITY)
            .time_to_idle(idle)
            .eviction_listener(|key: Arc<Key>, session: Arc<Session>, cause| {
                tracing::debug!(bmc = %key.url, user = %key.username, ?cause, "Redfish session leaves the cache");
                // The last holder's drop deletes it on the BMC (`Session`'s `Drop` spawns the
                // DELETE): now, if no reconcile uses it; else when that reconcile is done.
                drop(session);
            })
            .build();
        Self { cache }
    }

    /// An open session on the endpoint's BMC: the one kept from an earlier reconcile if it was
    /// opened for exactly this endpoint, else a new one (kept for the next reconciles).
    pub async fn session(&self, endpoint: &BmcEndpoint) -> Result<Arc<Session>, RedfishError> {
        let key = Key::of(endpoint);
        if let Some(session) = self.cache.get(&key) {
            if session.endpoint() == endpoint {
                return Ok(session);
            }
            // Opened with another password (or CA, or timeout) for this BMC and user.
            tracing::info!(bmc = %key.url, user = %key.username, "the BMC's settings differ from those its open session was made with: logging out and in again");
            self.close(&session).await;
        }
        let session = Arc::new(Session::open(endpoint).await?);
        self.cache.insert(key, session.clone());
        Ok(session)
    }

    /// Done with this BMC for now: the session leaves the cache and is deleted on the BMC
    /// before this returns.
    pub async fn close(&self, session: &Arc<Session>) {
        let key = Key::of(session.endpoint());
        if self
            .cache
            .get(&key)
            .is_some_and(|cached| Arc::ptr_eq(&cached, session))
        {
            self.cache.invalidate(&key);
        }
        session.close().await;
    }

    /// Deletes every open session (at shutdown), concurrently; each is bounded by its BMC's
    /// request timeout.
    pub async fn close_all(&self) {
        let open: Vec<Arc<Session>> = self.cache.iter().map(|(_, session)| session).collect();
        self.cache.invalidate_all();
        let mut closing = tokio::task::JoinSet::new();
        for session in open {
            closing.spawn(async move { session.close().await });
        }
        while closing.join_next().await.is_some() {}
    }

    /// Closes idle sessions every few seconds, for as long as it runs: moka evicts only when
    /// the cache is used, and a quiet racklift must still let go of its BMC sessions.
    pub async fn expire_idle(&self) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.cache.run_pending_tasks();
        }
    }

    /// Sessions kept now (expired ones may count until the next expiry run).
    pub fn open(&self) -> u64 {
        self.cache.entry_count()
    }

    #[cfg(test)]
    fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::redfish::fake::FakeBmc;

    fn endpoint(bmc: &FakeBmc, username: &str, password: &str) -> BmcEndpoint {
        BmcEndpoint {
            url: bmc.url(),
            username: username.into(),
            password: Secret::new(password),
            tls_verify: true,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    /// Polls `done` (running moka's pending work first) until it holds, for at most 10 s.
    async fn until(sessions: &Sessions, what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            sessions.run_pending_tasks();
            if done() {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_bmc_is_logged_into_once_across_reconciles() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::new();
        let ep = endpoint(&bmc, "admin", "pw");
        let first = sessions.session(&ep).await.expect("open");
        for _ in 0..3 {
            let again = sessions.session(&ep).await.expect("cached");
            assert!(Arc::ptr_eq(&first, &again));
            again.get("/redfish/v1/Systems").await.expect("get");
        }
        assert_eq!(bmc.logins(), 1);
        assert_eq!(bmc.service_root_reads(), 1, "vendor detected once");
        assert_eq!(bmc.open_sessions(), 1);
        assert!(
            !format!("{sessions:?}").contains("pw"),
            "no password in Debug"
        );
    }

    #[tokio::test]
    async fn another_user_is_another_session_and_another_password_replaces_the_login() {
        let bmc = FakeBmc::start(&[("admin", "pw"), ("other", "pw2")]).await;
        let sessions = Sessions::new();
        let admin = sessions
            .session(&endpoint(&bmc, "admin", "pw"))
            .await
            .expect("admin");
        let other = sessions
            .session(&endpoint(&bmc, "other", "pw2"))
            .await
            .expect("other");
        assert!(!Arc::ptr_eq(&admin, &other));
        assert_eq!(bmc.logins(), 2);

        // The configuration now gives admin another password (the BMC's was rotated): the
        // session made with the old one is deleted, and the new password logs in.
        bmc.set_password("admin", "rotated");
        let rotated = sessions
            .session(&endpoint(&bmc, "admin", "rotated"))
            .await
            .expect("new login");
        assert!(!Arc::ptr_eq(&admin, &rotated));
        assert_eq!(bmc.logins(), 3);
        assert_eq!(bmc.deletes(), 1, "the old login is deleted at once");
        assert_eq!(bmc.open_sessions(), 2);

        // A wrong password in the configuration is refused even though a session is open.
        let err = sessions
            .session(&endpoint(&bmc, "admin", "wrong"))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, RedfishError::Credentials { status: 401, .. }),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_session_the_bmc_expired_is_logged_into_again_once() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::new();
        let ep = endpoint(&bmc, "admin", "pw");
        let session = sessions.session(&ep).await.expect("open");
        bmc.expire_sessions();
        session
            .get("/redfish/v1/Systems")
            .await
            .expect("logged in again");
        assert_eq!(bmc.logins(), 2);
        assert_eq!(bmc.service_root_reads(), 1);
        // The next reconcile uses the renewed session.
        sessions
            .session(&ep)
            .await
            .expect("cached")
            .get("/redfish/v1/Systems")
            .await
            .expect("get");
        assert_eq!(bmc.logins(), 2);

        // Expired, and the password changed on the BMC: one login attempt, then the error.
        bmc.expire_sessions();
        bmc.set_password("admin", "changed");
        let err = session.get("/redfish/v1/Systems").await.expect_err("401");
        assert!(
            matches!(err, RedfishError::Credentials { status: 401, .. }),
            "{err}"
        );
        assert_eq!(bmc.login_attempts(), 3, "exactly one login again, no loop");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_meeting_an_expired_session_together_log_in_once() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::new();
        let session = sessions
            .session(&endpoint(&bmc, "admin", "pw"))
            .await
            .expect("open");
        bmc.expire_sessions();
        let (a, b, c) = tokio::join!(
            session.get("/redfish/v1/Systems"),
            session.get("/redfish/v1/Systems"),
            session.get("/redfish/v1/Systems"),
        );
        a.expect("a");
        b.expect("b");
        c.expect("c");
        assert_eq!(bmc.logins(), 2, "one login again for all three");
    }

    #[tokio::test]
    async fn closing_deletes_the_session_and_the_next_reconcile_logs_in_anew() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::new();
        let ep = endpoint(&bmc, "admin", "pw");
        let session = sessions.session(&ep).await.expect("open");
        sessions.close(&session).await;
        assert_eq!(bmc.deletes(), 1, "deleted before close returns");
        assert_eq!(bmc.open_sessions(), 0);
        drop(session);
        let again = sessions.session(&ep).await.expect("open again");
        again.get("/redfish/v1/Systems").await.expect("get");
        assert_eq!(bmc.logins(), 2);
        drop(again);
        sessions.close_all().await;
        assert_eq!(bmc.open_sessions(), 0, "closed at shutdown");
        assert_eq!(sessions.open(), 0);
    }

    #[tokio::test]
    async fn a_closed_session_still_in_use_logs_in_again_and_is_deleted_when_dropped() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::new();
        let session = sessions
            .session(&endpoint(&bmc, "admin", "pw"))
            .await
            .expect("open");
        let other_user = session.clone();
        sessions.close(&session).await;
        other_user
            .get("/redfish/v1/Systems")
            .await
            .expect("logged in again");
        assert_eq!(bmc.logins(), 2);
        drop(session);
        drop(other_user);
        until(&sessions, "the second session deleted", || {
            bmc.open_sessions() == 0
        })
        .await;
    }

    #[tokio::test]
    async fn an_idle_session_is_deleted_on_the_bmc() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::with_idle(Duration::from_millis(100));
        drop(
            sessions
                .session(&endpoint(&bmc, "admin", "pw"))
                .await
                .expect("open"),
        );
        until(&sessions, "the idle session deleted", || bmc.deletes() == 1).await;
        assert_eq!(bmc.open_sessions(), 0);
        assert_eq!(sessions.open(), 0);
    }

    #[tokio::test]
    async fn a_session_evicted_while_in_use_is_deleted_when_its_user_is_done() {
        let bmc = FakeBmc::start(&[("admin", "pw")]).await;
        let sessions = Sessions::with_idle(Duration::from_millis(100));
        let session = sessions
            .session(&endpoint(&bmc, "admin", "pw"))
            .await
            .expect("open");
        until(&sessions, "the idle session evicted", || {
            sessions.open() == 0
        })
        .await;
        assert_eq!(bmc.deletes(), 0, "not deleted under its user");
        session
            .get("/redfish/v1/Systems")
            .await
            .expect("still works");
        drop(session);
        until(&sessions, "deleted once its user is done", || {
            bmc.deletes() == 1
        })
        .await;
        assert_eq!(bmc.logins(), 1);
    }
}

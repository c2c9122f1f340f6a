//! The controller against an in-memory store: what it writes, in which order, and how it
//! classifies failures. The real-NetBox behaviour is covered by tests/lifecycle.rs.

use std::sync::Mutex;

use super::*;
use crate::config::ReconcilerConfig;
use crate::lifecycle::JournalKind;

#[derive(Debug, Default)]
struct FakeStore {
    devices: Mutex<HashMap<DeviceId, Device>>,
    calls: Mutex<Vec<String>>,
    /// Answer the next update with this error.
    fail_update: Mutex<Option<NetBoxError>>,
    /// Panic (a bug) the next time this device is read.
    panic_on: Mutex<Option<DeviceId>>,
    unreachable: std::sync::atomic::AtomicBool,
}

impl FakeStore {
    fn with(device: Device) -> Self {
        let store = Self::default();
        store
            .devices
            .lock()
            .expect("lock")
            .insert(device.id, device);
        store
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }
}

fn unreachable() -> NetBoxError {
    NetBoxError::Server {
        status: 502,
        method: "GET",
        path: "dcim/devices/1/".into(),
        body: String::new(),
    }
}

impl DeviceStore for FakeStore {
    async fn device(&self, id: DeviceId) -> Result<Option<Device>, NetBoxError> {
        if self.unreachable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(unreachable());
        }
        self.calls.lock().expect("lock").push(format!("get {id}"));
        let panics = self.panic_on.lock().expect("lock").take_if(|p| *p == id);
        assert!(panics.is_none(), "a bug while reconciling device {id}");
        Ok(self.devices.lock().expect("lock").get(&id).cloned())
    }

    async fn update_device(
        &self,
        device: &Device,
        update: &DeviceUpdate,
    ) -> Result<String, NetBoxError> {
        self.calls.lock().expect("lock").push(format!(
            "update {} {}",
            device.id,
            update.lifecycle().map_or("(stamp only)", Lifecycle::as_str)
        ));
        if let Some(e) = self.fail_update.lock().expect("lock").take() {
            return Err(e);
        }
        // As NetBox does: the device now reads as written, with a new ETag.
        let etag = format!("{}+", device.etag);
        if let Some(stored) = self.devices.lock().expect("lock").get_mut(&device.id) {
            if let Some(state) = update.lifecycle() {
                stored.lifecycle = Some(Ok(state));
            }
            if let Some(stamp) = &update.stamp {
                stored.stamp = Some(stamp.clone());
            }
            stored.etag.clone_from(&etag);
        }
        Ok(etag)
    }

    async fn journal(
        &self,
        id: DeviceId,
        kind: JournalKind,
        text: &str,
    ) -> Result<(), NetBoxError> {
        self.calls
            .lock()
            .expect("lock")
            .push(format!("journal {id} {}: {text}", kind.as_str()));
        Ok(())
    }

    async fn devices_in(&self, _: &[Lifecycle], _: &Scope) -> Result<Vec<DeviceId>, NetBoxError> {
        Ok(self.devices.lock().expect("lock").keys().copied().collect())
    }
}

fn device(id: u64, state: Option<&str>, site: &str) -> Device {
    Device {
        id: DeviceId(id),
        name: format!("srv{id}"),
        site: Some(site.to_owned()),
        lifecycle: state.map(str::parse),
        etag: "W/\"1\"".into(),
        ..Device::default()
    }
}

fn controller(store: FakeStore, sites: &[&str]) -> Controller<FakeStore> {
    let scope = Scope {
        instance: "t".into(),
        sites: sites.iter().map(|s| (*s).to_owned()).collect(),
        ..Scope::default()
    };
    let config = ReconcilerConfig {
        stage_retries: 2,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        ..ReconcilerConfig::default()
    };
    Controller::new(store, config, &scope, BmcConfig::default())
}

#[tokio::test]
async fn a_claim_journals_first_then_writes_the_state() {
    let c = controller(FakeStore::with(device(1, Some("discovered"), "a")), &[]);
    let outcome = c.reconcile(DeviceId(1)).await.expect("reconciled");
    assert!(
        matches!(outcome, Outcome::Moved(ref t) if t.to == Lifecycle::Provisioning),
        "{outcome:?}"
    );
    assert_eq!(
        c.store.calls(),
        vec![
            "get 1".to_owned(),
            "journal 1 info: racklift: discovered → provisioning: claimed for provisioning".into(),
            "update 1 provisioning".into(),
        ]
    );
}

#[tokio::test]
async fn a_refused_write_is_journaled_and_read_again_at_once() {
    let store = FakeStore::with(device(1, Some("validated"), "a"));
    *store.fail_update.lock().expect("lock") = Some(NetBoxError::Changed {
        path: "dcim/devices/1/".into(),
    });
    let c = controller(store, &[]);
    let err = c.reconcile(DeviceId(1)).await.expect_err("412");
    assert_eq!(err.retry(), Retry::Now);
    let calls = c.store.calls();
    assert!(
        calls
            .last()
            .expect("calls")
            .starts_with("journal 1 warning: racklift: not applied (validated → hardening)"),
        "{calls:?}"
    );
}

#[tokio::test]
async fn nothing_is_written_for_missing_unmanaged_or_out_of_scope_devices() {
    let store = FakeStore::with(device(1, None, "a"));
    store
        .devices
        .lock()
        .expect("lock")
        .insert(DeviceId(2), device(2, Some("discovered"), "other"));
    store
        .devices
        .lock()
        .expect("lock")
        .insert(DeviceId(3), device(3, Some("installing"), "a"));
    let c = controller(store, &["a"]);
    assert_eq!(
        c.reconcile(DeviceId(1)).await.expect("ok"),
        Outcome::Unmanaged
    );
    assert_eq!(
        c.reconcile(DeviceId(2)).await.expect("ok"),
        Outcome::Unmanaged
    );
    assert_eq!(
        c.reconcile(DeviceId(3)).await.expect("ok"),
        Outcome::Unmanaged
    );
    assert_eq!(c.reconcile(DeviceId(9)).await.expect("ok"), Outcome::Gone);
    assert!(
        c.store.calls().iter().all(|call| call.starts_with("get")),
        "{:?}",
        c.store.calls()
    );
}

#[tokio::test]
async fn validating_found_unstamped_is_stamped_and_rechecked_at_the_deadline() {
    let c = controller(FakeStore::with(device(1, Some("validating"), "a")), &[]);
    let outcome = c.reconcile(DeviceId(1)).await.expect("ok");
    assert_eq!(
        outcome,
        Outcome::Waiting(Lifecycle::Validating, Duration::from_secs(1800))
    );
    assert_eq!(
        c.store.calls(),
        vec!["get 1".to_owned(), "update 1 (stamp only)".into()]
    );
}

#[test]
fn netbox_away_is_retried_while_it_lasts_and_a_rejection_is_bounded() {
    let away = ReconcileError {
        device: DeviceId(1),
        doing: "reading the device",
        source: unreachable(),
    };
    assert_eq!(away.retry(), Retry::WhileItLasts);
    let rejected = ReconcileError {
        device: DeviceId(1),
        doing: "writing the next state",
        source: NetBoxError::Rejected {
            status: 400,
            method: "PATCH",
            path: "dcim/devices/1/".into(),
            body: "{\"__all__\": [\"Invalid value for custom field 'lifecycle'\"]}".into(),
        },
    };
    assert_eq!(rejected.retry(), Retry::Bounded);
    assert!(
        crate::error_chain(&rejected)
            .starts_with("device 1: writing the next state: NetBox rejected PATCH")
    );
}

#[tokio::test(start_paused = true)]
async fn bounded_retries_stop_and_transient_ones_do_not() {
    let store = FakeStore::with(device(1, Some("discovered"), "a"));
    store
        .unreachable
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let c = controller(store, &[]);
    let away = ReconcileError {
        device: DeviceId(1),
        doing: "reading the device",
        source: unreachable(),
    };
    for _ in 0..10 {
        c.error_policy(&away);
    }
    assert_eq!(
        c.lock_failing()[&DeviceId(1)].attempts,
        10,
        "transient failures keep retrying"
    );
    assert_eq!(c.queue.stats().waiting, 1);

    let rejected = ReconcileError {
        device: DeviceId(2),
        doing: "writing the next state",
        source: NetBoxError::Rejected {
            status: 400,
            method: "PATCH",
            path: "x".into(),
            body: String::new(),
        },
    };
    c.error_policy(&rejected);
    c.error_policy(&rejected);
    assert_eq!(c.lock_failing()[&DeviceId(2)].attempts, 2);
    c.error_policy(&rejected);
    assert!(
        !c.lock_failing().contains_key(&DeviceId(2)),
        "gave up after stage_retries"
    );
}

#[tokio::test(start_paused = true)]
async fn a_device_edited_over_and_over_is_reread_at_once_only_a_few_times() {
    let c = controller(FakeStore::default(), &[]);
    let changed = ReconcileError {
        device: DeviceId(4),
        doing: "writing the next state",
        source: NetBoxError::Changed {
            path: "dcim/devices/4/".into(),
        },
    };
    for _ in 0..IMMEDIATE_REREADS {
        c.error_policy(&changed);
        assert_eq!(c.queue.next().await, DeviceId(4));
        c.queue.done(DeviceId(4));
    }
    let start = Instant::now();
    c.error_policy(&changed);
    assert_eq!(c.queue.next().await, DeviceId(4));
    assert!(
        Instant::now() > start,
        "the fourth re-read waits for its backoff"
    );
}

#[tokio::test]
async fn resync_queues_every_listed_device() {
    let store = FakeStore::with(device(1, Some("discovered"), "a"));
    store
        .devices
        .lock()
        .expect("lock")
        .insert(DeviceId(2), device(2, Some("validated"), "a"));
    let c = controller(store, &[]);
    assert_eq!(c.resync().await.expect("listed"), 2);
    assert_eq!(c.queue.stats().waiting, 2);
}

#[tokio::test]
async fn a_panicking_reconcile_neither_kills_its_worker_nor_strands_its_device() {
    let store = FakeStore::with(device(1, Some("discovered"), "a"));
    store
        .devices
        .lock()
        .expect("lock")
        .insert(DeviceId(2), device(2, Some("discovered"), "a"));
    *store.panic_on.lock().expect("lock") = Some(DeviceId(1));
    let config = ReconcilerConfig {
        concurrency: 1,
        resync_interval: Duration::from_secs(3600),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(20),
        ..ReconcilerConfig::default()
    };
    let c = Arc::new(Controller::new(
        store,
        config,
        &Scope::default(),
        BmcConfig::default(),
    ));
    let running = tokio::spawn(c.clone().run());
    let claimed = |id: u64| format!("update {id} provisioning");
    tokio::time::timeout(Duration::from_secs(10), async {
        // The one worker panics on device 1, then claims device 2, then device 1 on its retry.
        while !(c.store.calls().contains(&claimed(1)) && c.store.calls().contains(&claimed(2))) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both devices claimed by the surviving worker");
    assert_eq!(c.queue.stats().running, 0, "nothing left marked running");
    running.abort();
}

#[test]
fn a_retry_count_edited_to_the_largest_value_neither_panics_nor_stalls() {
    let c = controller(FakeStore::default(), &[]);
    let started = std::time::Instant::now();
    assert_eq!(c.stage_backoff(u32::MAX), c.config.backoff_max);
    // backon's jitter adds up to the delay itself again.
    assert!(c.stage_backoff(3) <= 2 * c.config.backoff_max);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no loop over the count"
    );
    let stamp = Stamp {
        attempt: u32::MAX,
        ..Stamp::entered(Lifecycle::Provisioning, Utc::now())
    };
    assert_eq!(stamp.retried().attempt, u32::MAX);
}

#[tokio::test]
async fn a_move_into_a_state_with_work_is_followed_at_once_without_waiting_for_its_webhook() {
    let store = FakeStore::with(device(1, Some("discovered"), "a"));
    store
        .devices
        .lock()
        .expect("lock")
        .insert(DeviceId(2), device(2, Some("validated"), "a"));
    let c = controller(store, &[]);
    c.reconcile_and_schedule(DeviceId(1)).await;
    assert_eq!(
        c.queue.stats().waiting,
        1,
        "provisioning has work: requeued"
    );
    c.reconcile_and_schedule(DeviceId(2)).await;
    assert_eq!(
        c.queue.stats().waiting,
        1,
        "hardening has no stage yet: not requeued"
    );
}

//! racklift served in the test's process: [`racklift::serve::run`] on a Tokio runtime of its
//! own, in a thread of its own, logging to a file of its own.
//!
//! Why a runtime of its own: stopping it ends every task racklift started (the controller's
//! reconciles included), as the end of its process would; and its threads are the ones that
//! log, so each of them gets this racklift's log as its default `tracing` dispatcher — several
//! tests of one binary run at once, each with its racklift, and no log lands in another's.

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::dispatcher::{self, DefaultGuard};

use super::WAIT;

thread_local! {
    /// The log of the racklift whose runtime owns this thread, while it does.
    static LOG: RefCell<Option<DefaultGuard>> = const { RefCell::new(None) };
}

/// An in-process racklift, serving until [`Serving::stop`].
#[derive(Debug)]
pub struct Serving {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<Result<(), String>>,
}

impl Serving {
    /// Starts serving on `listener` with the configuration at `config`, logging to `log`.
    pub fn start(
        listener: std::net::TcpListener,
        config: &Path,
        log: &Path,
        filter: &str,
        name: &str,
    ) -> Self {
        let config = racklift::config::Config::load(config)
            .unwrap_or_else(|e| panic!("{}", racklift::error_chain(&e)));
        let log = std::fs::File::create(log).expect("log file");
        let log = dispatcher::Dispatch::new(racklift::cli::log_subscriber(
            tracing_subscriber::EnvFilter::new(filter),
            Arc::new(log),
            false,
        ));
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("racklift {name}"))
            .spawn(move || serve(listener, config, log, stopped))
            .expect("racklift's thread");
        Self { stop, thread }
    }

    /// racklift stopped (it failed to start, say).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Shuts racklift down (open requests finish) and waits for its runtime to end.
    pub fn stop(self) -> Result<(), String> {
        drop(self.stop);
        let deadline = Instant::now() + WAIT;
        let wait = || {
            while !self.thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        // The test's runtime may be serving what racklift waits on (a proxy): step aside.
        match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(wait),
            _ => wait(),
        }
        if !self.thread.is_finished() {
            return Err(format!("racklift did not stop within {WAIT:?}"));
        }
        self.thread
            .join()
            .unwrap_or_else(|_| Err("racklift's thread panicked".into()))
    }
}

/// racklift's thread: its runtime, serving until `stopped`.
fn serve(
    listener: std::net::TcpListener,
    config: racklift::config::Config,
    log: dispatcher::Dispatch,
    stopped: oneshot::Receiver<()>,
) -> Result<(), String> {
    let _log = dispatcher::set_default(&log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_start(move || LOG.set(Some(dispatcher::set_default(&log))))
        .on_thread_stop(|| drop(LOG.take()))
        .build()
        .map_err(|e| format!("cannot start racklift's runtime: {e}"))?;
    let served = runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("racklift's listener: {e}"))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("racklift's listener: {e}"))?;
        let shutdown = async {
            let _ = stopped.await;
        };
        racklift::serve::run(listener, shutdown, config)
            .await
            .map_err(|e| racklift::error_chain(&e))
    });
    // What racklift started and did not finish ends here, as with its process.
    runtime.shutdown_timeout(Duration::from_secs(5));
    served
}

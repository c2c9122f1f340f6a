//! A TCP proxy on loopback that a test can cut and restore, to make NetBox (or a BMC)
//! unreachable for racklift without stopping the shared service; and that can answer `503` to
//! the requests naming one thing (a MAC), to make NetBox fail for one device only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// What the proxy answers in NetBox's place to a request it refuses.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 31\r\nConnection: close\r\n\r\nrefused by the test's TCP proxy";

#[derive(Debug, Default)]
struct Refusing {
    /// Requests whose bytes hold this are answered `503` (`None`: every request passes).
    pattern: std::sync::Mutex<Option<Vec<u8>>>,
    refused: AtomicUsize,
}

impl Refusing {
    fn matches(&self, request: &[u8]) -> bool {
        let pattern = self.pattern.lock().expect("pattern");
        pattern
            .as_deref()
            .is_some_and(|p| request.windows(p.len()).any(|w| w == p))
    }
}

#[derive(Debug)]
pub struct Proxy {
    ip: String,
    pub port: u16,
    open: Arc<AtomicBool>,
    refusing: Arc<Refusing>,
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards 127.0.0.1:<port> to `target` (host:port).
    pub async fn start(target: String) -> Self {
        Self::start_on("127.0.0.1", target).await
    }

    /// Forwards `<ip>:<port>` to `target` (host:port).
    pub async fn start_on(ip: &str, target: String) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind proxy");
        let ip = ip.to_owned();
        let port = listener.local_addr().expect("addr").port();
        let open = Arc::new(AtomicBool::new(true));
        let refusing = Arc::new(Refusing::default());
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let accept = tokio::spawn({
            let open = open.clone();
            let refusing = refusing.clone();
            let links = links.clone();
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let target = target.clone();
                    let refusing = refusing.clone();
                    links.lock().await.spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&target).await {
                            // No Nagle delay on either side: a write split in two (an answer's
                            // head and body) must not wait for the peer's delayed ACK, or every
                            // call through the proxy takes tens of ms longer than direct.
                            for stream in [&inbound, &outbound] {
                                stream
                                    .set_nodelay(true)
                                    .expect("TCP_NODELAY on a proxy socket");
                            }
                            link(inbound, outbound, &refusing).await;
                        }
                    });
                }
            }
        });
        Self {
            ip,
            port,
            open,
            refusing,
            links,
            accept,
        }
    }

    /// Answers `503` in NetBox's place to every request holding `pattern` (in its request line,
    /// headers or body), from the next request on; the others pass as before.
    pub fn refuse_requests_with(&self, pattern: &str) {
        *self.refusing.pattern.lock().expect("pattern") = Some(pattern.as_bytes().to_vec());
    }

    /// Lets every request pass again.
    pub fn stop_refusing(&self) {
        *self.refusing.pattern.lock().expect("pattern") = None;
    }

    /// How many requests were answered `503`.
    pub fn refused(&self) -> usize {
        self.refusing.refused.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }

    /// Refuses new connections and breaks the open ones.
    pub async fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.links.lock().await.abort_all();
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies both ways until either side closes. A client's request that holds the refusing
/// pattern is answered `503` instead and the connection closed: HTTP/1.1 clients (reqwest) send
/// one request at a time and write its head in one go, so the pattern is seen whole and no
/// answer of NetBox's is in flight.
async fn link(mut inbound: TcpStream, mut outbound: TcpStream, refusing: &Refusing) {
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        tokio::select! {
            read = inbound.read(&mut up) => {
                let Ok(n @ 1..) = read else { return };
                if refusing.matches(&up[..n]) {
                    refusing.refused.fetch_add(1, Ordering::SeqCst);
                    let _ = inbound.write_all(REFUSAL).await;
                    return;
                }
                if outbound.write_all(&up[..n]).await.is_err() {
                    return;
                }
            }
            read = outbound.read(&mut down) => {
                let Ok(n @ 1..) = read else { return };
                if inbound.write_all(&down[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

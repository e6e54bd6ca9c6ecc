//! A fault-injecting TCP proxy in front of a registry. It reads the HTTP/1.1 request
//! heads going through (bodies by Content-Length), logs them, and when one matches a
//! rule it cuts (or stalls, or trickles) the connection part-way through that request's
//! body or its response, as a flaky network (or a hostile registry) would. [`Silent`] is
//! a registry that accepts connections and never answers.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to a request that matches a [`Rule`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Close both connections after forwarding this many bytes of the response
    /// (status line and headers included).
    DropResponse(u64),
    /// Close both connections after forwarding this many bytes of the request body.
    DropRequestBody(u64),
    /// Stop forwarding the response after this many bytes, keeping the connection open.
    StallResponse(u64),
    /// Flip the bits of the request body's byte at this offset (corruption in transit).
    CorruptRequestBody(u64),
    /// Forward the response one byte per this many milliseconds (headers included), so
    /// that no single read ever waits long.
    TrickleResponse(u64),
}

/// Which requests get an [`Action`], and how many of them.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The HTTP method the request must have.
    pub method: &'static str,
    /// A substring of the request target.
    pub target_contains: String,
    /// What to do to it.
    pub action: Action,
    /// How many matching requests to hit; later ones pass untouched.
    pub times: u32,
}

/// A request seen by the proxy.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP method.
    pub method: String,
    /// The request target.
    pub target: String,
    /// Its `Range` header (a resumed download).
    pub range: Option<String>,
    /// Its `Content-Range` header (an upload chunk).
    pub content_range: Option<String>,
    /// The action applied to it, if a rule matched.
    pub action: Option<Action>,
}

struct Shared {
    upstream: u16,
    rules: Mutex<Vec<Rule>>,
    seen: Mutex<Vec<Seen>>,
    stop: AtomicBool,
}

/// A fault-injecting proxy on a loopback port; see the [module docs](self). It stops
/// accepting when dropped.
///
/// Its life in a test: start it in front of a registry, add [`rule`](Proxy::rule)s,
/// point the client at [`host`](Proxy::host), then check [`hits`](Proxy::hits) and
/// [`seen`](Proxy::seen):
///
/// ```no_run
/// use strata_registry::{Client, Options};
/// use strata_registry_testkit::proxy::{Action, Proxy};
/// use strata_registry_testkit::Registry;
/// let registry = Registry::start();
/// let proxy = Proxy::start(registry.port);
/// // The first blob download is cut after 100 bytes of its response.
/// proxy.rule("GET", "/blobs/", Action::DropResponse(100), 1);
/// let client = Client::new(proxy.host(), Options::default()).unwrap();
/// // ... pull a blob through `client`: the retry resumes with a `Range` request ...
/// assert_eq!(proxy.hits(), 1);
/// assert!(proxy.seen().iter().any(|s| s.range.is_some()));
/// ```
pub struct Proxy {
    /// The loopback port it listens on.
    pub port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(client, s));
            }
        });
        Proxy { port, shared }
    }

    /// Applies `action` to the next `times` requests with `method` whose target
    /// contains `target_contains`.
    pub fn rule(&self, method: &'static str, target_contains: &str, action: Action, times: u32) {
        self.shared.rules.lock().unwrap().push(Rule {
            method,
            target_contains: target_contains.to_string(),
            action,
            times,
        });
    }

    /// Every request that went through, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// How many requests a rule was applied to.
    pub fn hits(&self) -> usize {
        self.seen().iter().filter(|s| s.action.is_some()).count()
    }

    /// The proxy as a registry host, for a client.
    pub fn host(&self) -> strata_registry::RegistryHost {
        strata_registry::RegistryHost::parse(&format!("127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Per connection: what the response now being forwarded may still pass.
#[derive(Default)]
struct Conn {
    response_action: Option<Action>,
    response_bytes: u64,
    closed: bool,
}

fn serve(client: TcpStream, shared: Arc<Shared>) {
    let Ok(upstream) = TcpStream::connect(("127.0.0.1", shared.upstream)) else {
        return;
    };
    let conn = Arc::new(Mutex::new(Conn::default()));
    let (c2, u2, k2) = (
        client.try_clone().unwrap(),
        upstream.try_clone().unwrap(),
        conn.clone(),
    );
    let back = std::thread::spawn(move || responses(u2, c2, k2));
    requests(client, upstream, &shared, &conn);
    let _ = back.join();
}

fn cut(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

/// Client to registry: request heads parsed, bodies forwarded (or cut).
fn requests(mut client: TcpStream, mut upstream: TcpStream, shared: &Shared, conn: &Mutex<Conn>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let Some(head) = crate::http::read_head(&mut client, &mut buf) else {
            conn.lock().unwrap().closed = true;
            cut(&client, &upstream);
            return;
        };
        let length = head.content_length();
        let chunked = head
            .header("transfer-encoding")
            .is_some_and(|v| v.contains("chunked"));
        let (method, target) = (head.method.clone(), head.target.clone());
        let range = head.header("range").map(str::to_string);
        let content_range = head.header("content-range").map(str::to_string);
        let action = {
            let mut rules = shared.rules.lock().unwrap();
            rules
                .iter_mut()
                .find(|r| r.times > 0 && r.method == method && target.contains(&r.target_contains))
                .map(|r| {
                    r.times -= 1;
                    r.action
                })
        };
        shared.seen.lock().unwrap().push(Seen {
            method,
            target,
            range,
            content_range,
            action,
        });
        {
            let mut c = conn.lock().unwrap();
            c.response_bytes = 0;
            c.response_action = action.filter(|a| {
                matches!(
                    a,
                    Action::DropResponse(_) | Action::StallResponse(_) | Action::TrickleResponse(_)
                )
            });
        }
        if upstream.write_all(&head.raw).is_err() {
            cut(&client, &upstream);
            return;
        }
        if chunked {
            // Not needed by the client under test: pass the rest through untouched.
            let _ = upstream.write_all(&buf);
            let _ = std::io::copy(&mut client, &mut upstream);
            cut(&client, &upstream);
            return;
        }
        let limit = match action {
            Some(Action::DropRequestBody(n)) => Some(n.min(length)),
            _ => None,
        };
        let corrupt_at = match action {
            Some(Action::CorruptRequestBody(at)) => Some(at),
            _ => None,
        };
        let mut left = limit.unwrap_or(length);
        let mut offset = 0u64;
        while left > 0 {
            if buf.is_empty() {
                match client.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        cut(&client, &upstream);
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let take = (buf.len() as u64).min(left) as usize;
            if let Some(at) = corrupt_at.filter(|&at| at >= offset && at < offset + take as u64) {
                buf[(at - offset) as usize] ^= 0xff;
            }
            offset += take as u64;
            if upstream.write_all(&buf[..take]).is_err() {
                cut(&client, &upstream);
                return;
            }
            buf.drain(..take);
            left -= take as u64;
        }
        if limit.is_some() {
            // Give the registry a moment to take what it got, as a real cut would.
            std::thread::sleep(Duration::from_millis(100));
            cut(&client, &upstream);
            return;
        }
    }
}

/// Registry to client: forwarded, unless the current request's action says stop.
fn responses(mut upstream: TcpStream, mut client: TcpStream, conn: Arc<Mutex<Conn>>) {
    let mut chunk = vec![0u8; 256 << 10];
    loop {
        let n = match upstream.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = client.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let trickle = match conn.lock().unwrap().response_action {
            Some(Action::TrickleResponse(ms)) => Some(Duration::from_millis(ms)),
            _ => None,
        };
        if let Some(every) = trickle {
            for byte in &chunk[..n] {
                std::thread::sleep(every);
                if conn.lock().unwrap().closed || client.write_all(&[*byte]).is_err() {
                    cut(&client, &upstream);
                    return;
                }
            }
            continue;
        }
        let (pass, action) = {
            let mut c = conn.lock().unwrap();
            let limit = match c.response_action {
                Some(Action::DropResponse(l)) | Some(Action::StallResponse(l)) => Some(l),
                _ => None,
            };
            let pass = match limit {
                Some(l) => (l.saturating_sub(c.response_bytes)).min(n as u64) as usize,
                None => n,
            };
            c.response_bytes += pass as u64;
            let done = limit.is_some_and(|l| c.response_bytes >= l);
            (pass, if done { c.response_action } else { None })
        };
        if client.write_all(&chunk[..pass]).is_err() {
            cut(&client, &upstream);
            return;
        }
        match action {
            Some(Action::DropResponse(_)) => {
                cut(&client, &upstream);
                return;
            }
            Some(Action::StallResponse(_)) => {
                // Hold the connection open, sending nothing, until the client gives up.
                while !conn.lock().unwrap().closed {
                    std::thread::sleep(Duration::from_millis(20));
                }
                cut(&client, &upstream);
                return;
            }
            _ => {}
        }
    }
}

/// A registry that accepts connections, reads what is sent, and never answers.
pub struct Silent {
    /// The loopback port it listens on.
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    /// Listens on a free loopback port.
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                std::thread::spawn(move || {
                    let mut sink = [0u8; 4096];
                    while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        Silent { port, stop }
    }

    /// It as a registry host, for a client.
    pub fn host(&self) -> strata_registry::RegistryHost {
        strata_registry::RegistryHost::parse(&format!("127.0.0.1:{}", self.port)).unwrap()
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

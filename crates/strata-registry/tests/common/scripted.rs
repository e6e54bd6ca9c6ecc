//! A tiny HTTP server answering from a script, for the answers a healthy registry never
//! gives on demand (schema 1 manifests, 503 storms, 429 with Retry-After). Everything
//! else is tested against the real registry.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A request as the server saw it.
pub type Asked = super::http::Head;

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (a dropped connection).
    pub cut_after: Option<usize>,
}

impl Answer {
    pub fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_after: None,
        }
    }

    pub fn cut_after(mut self, n: usize) -> Answer {
        self.cut_after = Some(n);
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Answer {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Answer {
        self.body = b.into();
        self
    }
}

type Script = dyn Fn(&Asked, usize) -> Answer + Send + Sync;

pub struct Scripted {
    pub port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl Scripted {
    /// Serves `script(request, index of the request)` to every request.
    pub fn start(script: impl Fn(&Asked, usize) -> Answer + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let a = asked.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (a, script) = (a.clone(), script.clone());
                std::thread::spawn(move || serve(conn, &a, &*script));
            }
        });
        Scripted { port, asked }
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    pub fn host(&self) -> strata_registry::RegistryHost {
        strata_registry::RegistryHost::parse(&format!("127.0.0.1:{}", self.port)).unwrap()
    }
}

fn serve(mut conn: TcpStream, asked: &Mutex<Vec<Asked>>, script: &Script) {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let Some(req) = super::http::read_head(&mut conn, &mut buf) else {
            return;
        };
        let length = req.content_length() as usize;
        if !super::http::fill(&mut conn, &mut buf, length) {
            return;
        }
        buf.drain(..length);
        let index = {
            let mut a = asked.lock().unwrap();
            a.push(req.clone());
            a.len() - 1
        };
        let answer = script(&req, index);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            answer.status,
            answer.body.len()
        );
        for (k, v) in &answer.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        if conn.write_all(out.as_bytes()).is_err() {
            return;
        }
        if req.method == "HEAD" {
            continue;
        }
        let end = answer
            .cut_after
            .unwrap_or(answer.body.len())
            .min(answer.body.len());
        if conn.write_all(&answer.body[..end]).is_err() || answer.cut_after.is_some() {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

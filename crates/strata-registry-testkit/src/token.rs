//! A small token server for the registry's `auth: token:` mode (distribution's JWT
//! bearer tokens): `GET /token?service=&scope=` with Basic credentials, and the OAuth2
//! refresh-token `POST`. Tokens are ES256 JWTs with the signing certificate in `x5c`;
//! the registry trusts that self-signed certificate through `rootcertbundle`.
//! Distribution 2.8 checks `iss`, `aud` (the service), `exp`/`nbf` (60 s leeway) and
//! grants what the `access` claim lists.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::registry::Auth;

/// The service name tokens are issued for.
pub const SERVICE: &str = "strata-test-registry";
/// The issuer named in the tokens.
pub const ISSUER: &str = "strata-test-issuer";

/// Whom the token server grants what.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Accounts and their passwords (Basic credentials).
    pub users: Vec<(String, String)>,
    /// The refresh token accepted by the OAuth2 `POST` (an "identity token").
    pub refresh_token: Option<String>,
    /// The tokens' lifetime in seconds.
    pub expires_in: u64,
    /// Whether anonymous requests get pull access.
    pub anonymous_pull: bool,
    /// Whether users get push access.
    pub push: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            users: vec![("alice".into(), "wonderland".into())],
            refresh_token: None,
            expires_in: 300,
            anonymous_pull: false,
            push: true,
        }
    }
}

/// A token request as the server saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The HTTP method (`GET`, or `POST` for a refresh token).
    pub method: String,
    /// The authenticated account, `None` for anonymous; `Some("!bad")` for refused.
    pub account: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The service asked for.
    pub service: Option<String>,
}

struct Shared {
    key: EcdsaKeyPair,
    x5c: String,
    policy: Mutex<Policy>,
    seen: Mutex<Vec<Seen>>,
}

/// A running token server on a loopback port.
pub struct TokenServer {
    /// The loopback port it listens on.
    pub port: u16,
    /// The PEM certificate it signs with.
    pub bundle: PathBuf,
    shared: Arc<Shared>,
}

impl TokenServer {
    /// Generates a self-signed signing certificate in `dir` and serves tokens.
    pub fn start(dir: &Path, policy: Policy) -> TokenServer {
        let ck = rcgen::generate_simple_self_signed(vec!["strata-test-token-issuer".to_string()])
            .unwrap();
        let bundle = dir.join("token-signer.pem");
        std::fs::write(&bundle, ck.cert.pem()).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ck.signing_key.serialize_der(),
            &SystemRandom::new(),
        )
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            key,
            x5c: STANDARD.encode(ck.cert.der()),
            policy: Mutex::new(policy),
            seen: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || handle(conn, &s));
            }
        });
        TokenServer {
            port,
            bundle,
            shared,
        }
    }

    /// The registry config that trusts this server.
    pub fn auth(&self) -> Auth {
        Auth::Token {
            realm: format!("http://127.0.0.1:{}/token", self.port),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            bundle: self.bundle.clone(),
        }
    }

    /// Every token request, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// Changes the policy for later requests.
    pub fn set_policy(&self, f: impl FnOnce(&mut Policy)) {
        f(&mut self.shared.policy.lock().unwrap())
    }
}

fn handle(mut conn: TcpStream, s: &Shared) {
    let mut body = Vec::new();
    let Some(head) = crate::http::read_head(&mut conn, &mut body) else {
        return;
    };
    let length = head.content_length() as usize;
    if !crate::http::fill(&mut conn, &mut body, length) {
        return;
    }
    let (method, target) = (head.method.clone(), head.target.clone());
    let authorization = head.header("authorization").map(str::to_string);
    let query = target
        .split_once('?')
        .map(|(_, q)| q.to_string())
        .unwrap_or_default();
    let mut params = parse_form(&query);
    if method == "POST" {
        params.extend(parse_form(&String::from_utf8_lossy(&body)));
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .collect();
    let policy = s.policy.lock().unwrap().clone();

    // Who is asking?
    let account: Result<Option<String>, ()> = if method == "POST" {
        match (
            get("grant_type").as_deref(),
            get("refresh_token"),
            &policy.refresh_token,
        ) {
            (Some("refresh_token"), Some(t), Some(want)) if t == *want => {
                Ok(Some("refresh-user".into()))
            }
            _ => Err(()),
        }
    } else {
        match authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
        {
            None => Ok(None),
            Some(b64) => {
                let decoded = STANDARD.decode(b64.trim()).unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded).to_string();
                match text.split_once(':') {
                    Some((u, p)) if policy.users.iter().any(|(uu, pp)| uu == u && pp == p) => {
                        Ok(Some(u.to_string()))
                    }
                    _ => Err(()),
                }
            }
        }
    };
    s.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        account: match &account {
            Ok(a) => a.clone(),
            Err(()) => Some("!bad".into()),
        },
        scopes: scopes.clone(),
        service: get("service"),
    });
    let Ok(account) = account else {
        respond(
            &mut conn,
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#,
        );
        return;
    };

    // Grant what the policy allows of what was asked.
    let mut access = Vec::new();
    for scope in &scopes {
        let mut parts = scope.splitn(3, ':');
        let (Some("repository"), Some(name), Some(actions)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| match (*a, &account) {
                ("pull", None) => policy.anonymous_pull,
                ("pull", Some(_)) => true,
                ("push", Some(_)) => policy.push,
                _ => false,
            })
            .collect();
        access.push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [s.x5c]});
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": account.clone().unwrap_or_default(),
        "aud": SERVICE,
        "exp": now + policy.expires_in,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", s.seen.lock().unwrap().len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = s
        .key
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .unwrap();
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let body = if method == "POST" {
        serde_json::json!({"access_token": jwt, "expires_in": policy.expires_in, "scope": scopes.join(" ")})
    } else {
        serde_json::json!({"token": jwt, "expires_in": policy.expires_in})
    };
    respond(&mut conn, 200, &body.to_string());
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) {
    let reason = if status == 200 { "OK" } else { "Unauthorized" };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

//! The client for one registry: TLS or plain HTTP, the `/v2/` ping, authentication
//! (Basic, or Bearer tokens per scope, cached until they expire), retries, and the
//! request hook. Repositories ([`crate::Repository`]) send their requests through it.

use std::collections::HashMap;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::http::{Response, StatusCode};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use crate::auth::{parse_challenge, Challenge};
use crate::error::{status_is_retryable, RegistryErrors, TransportError};
use crate::{Credentials, Error, RegistryHost, RepositoryName, RetryPolicy, UploadPolicy};

/// What one HTTP exchange looked like, for [`Options::on_request`]: tests use it to
/// prove what went over the wire, tools to log it.
#[derive(Debug)]
pub struct Exchange<'a> {
    /// `GET`, `HEAD`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: &'a str,
    /// The full URL (credentials never appear in URLs; tokens travel in headers).
    pub url: &'a str,
    /// The response status, or `None` when the exchange failed in transport.
    pub status: Option<u16>,
    /// Request body bytes read into the request (for a failed upload: as far as it got).
    pub sent: u64,
    /// The transport error, when there was one.
    pub error: Option<String>,
}

/// Called after every HTTP exchange (pings, token requests and redirects' final answers
/// included), from the thread that made it.
pub type RequestHook = Arc<dyn Fn(&Exchange<'_>) + Send + Sync>;

/// How to reach and authenticate to a registry. `Options::default()` is anonymous, TLS
/// verified, with the system's CA bundle and `certs.d` CAs, 5 attempts per operation.
#[derive(Clone)]
pub struct Options {
    /// Who we are ([`Credentials::lookup`] finds the user's).
    pub credentials: Credentials,
    /// `false` skips TLS certificate checks and allows falling back to plain HTTP (as
    /// `--tls-verify=false` does for podman and skopeo). Loopback registries may use
    /// plain HTTP either way.
    pub tls_verify: bool,
    /// Extra CA certificates (PEM files) to trust, besides the system bundle.
    pub ca_certs: Vec<PathBuf>,
    /// Directories holding `HOST[:PORT]/*.crt` CA files for a registry, as podman and
    /// docker read them; default `/etc/containers/certs.d` and `/etc/docker/certs.d`.
    pub certs_dirs: Vec<PathBuf>,
    /// How transient faults are retried.
    pub retry: RetryPolicy,
    /// When blobs go in one `PUT` and how large `PATCH` chunks are.
    pub upload: UploadPolicy,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long one read or write on a connection may stall before it counts as
    /// dropped (and is retried).
    pub io_timeout: Duration,
    /// How long a registry may keep us waiting: for the response headers of one request
    /// (however slowly they trickle in), and, retries and their pauses included, for an
    /// operation that makes no progress before it fails. A registry that accepts
    /// connections and never answers is an error after this long, not after every
    /// attempt's worth of it.
    pub timeout: Duration,
    /// The `User-Agent` sent (default `strata/VERSION`).
    pub user_agent: String,
    /// Called after every HTTP exchange ([`Exchange`]).
    pub on_request: Option<RequestHook>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            credentials: Credentials::Anonymous,
            tls_verify: true,
            ca_certs: Vec::new(),
            certs_dirs: vec![
                PathBuf::from("/etc/containers/certs.d"),
                PathBuf::from("/etc/docker/certs.d"),
            ],
            retry: RetryPolicy::default(),
            upload: UploadPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            user_agent: concat!("strata/", env!("CARGO_PKG_VERSION")).to_string(),
            on_request: None,
        }
    }
}

/// A blocking client for one registry; cheap to clone and safe to share between
/// threads (connections are pooled, tokens cached, both shared by clones).
///
/// The first request pings `GET /v2/` to learn the scheme (HTTPS; plain HTTP only for
/// loopback hosts or with `tls_verify: false`, after HTTPS failed) and how the
/// registry authenticates. See the crate documentation for a whole push and pull.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    host: RegistryHost,
    agent: Agent,
    credentials: Credentials,
    tls_verify: bool,
    retry: RetryPolicy,
    upload: UploadPolicy,
    timeout: Duration,
    hook: Option<RequestHook>,
    endpoint: Mutex<Option<Arc<Endpoint>>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

/// Where and how to talk to the registry, learnt from the ping.
#[derive(Debug)]
struct Endpoint {
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    challenge: Option<Challenge>,
}

struct CachedToken {
    header: String,
    usable_until: Instant,
}

/// The resources a request acts on, as token scopes (`repository:NAME:pull,push`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope(Vec<String>);

impl Scope {
    pub(crate) fn pull(repo: &RepositoryName) -> Scope {
        Scope(vec![format!("repository:{repo}:pull")])
    }

    pub(crate) fn push(repo: &RepositoryName) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }

    /// Listing the registry's repositories (`GET /v2/_catalog`).
    pub(crate) fn catalog() -> Scope {
        Scope(vec!["registry:catalog:*".into()])
    }

    /// Deleting from a repository.
    pub(crate) fn delete(repo: &RepositoryName) -> Scope {
        Scope(vec![format!("repository:{repo}:delete")])
    }

    /// This scope plus pulling from `other` (for a cross-repository mount).
    pub(crate) fn and_pull(mut self, other: &RepositoryName) -> Scope {
        let extra = format!("repository:{other}:pull");
        if !self.0.contains(&extra) {
            self.0.push(extra);
        }
        self
    }

    fn key(&self) -> String {
        self.0.join(" ")
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("the registry")
        } else {
            f.write_str(&self.0.join(" and "))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    fn sends_body(self) -> bool {
        matches!(self, Method::Post | Method::Put | Method::Patch)
    }
}

/// A request body.
pub(crate) enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Exactly `len` bytes from `reader`; not replayable.
    Stream {
        reader: &'a mut dyn Read,
        len: u64,
    },
}

/// One request to make, authenticated for `scope` when it goes to the registry itself.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub scope: &'a Scope,
    pub headers: Vec<(&'static str, String)>,
    pub payload: Payload<'a>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: Method, url: String, scope: &'a Scope) -> Request<'a> {
        Request {
            method,
            url,
            scope,
            headers: Vec::new(),
            payload: Payload::Empty,
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub(crate) fn payload(mut self, payload: Payload<'a>) -> Self {
        self.payload = payload;
        self
    }
}

/// An error-body read limit: registries' error documents are small.
const ERROR_BODY_LIMIT: u64 = 64 << 10;
/// A token-response read limit.
const TOKEN_BODY_LIMIT: u64 = 1 << 20;

impl Client {
    /// A client for `host`; nothing is sent until the first request. Fails only when a
    /// CA certificate named in the options cannot be read.
    pub fn new(host: RegistryHost, options: Options) -> Result<Client, Error> {
        let roots = root_certs(&host, &options)?;
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .disable_verification(!options.tls_verify)
            .build();
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(options.user_agent.as_str())
            .timeout_connect(Some(options.connect_timeout.min(options.timeout)))
            .timeout_send_request(Some(options.timeout))
            .timeout_recv_response(Some(options.timeout))
            .timeout_per_read(Some(options.io_timeout))
            .timeout_per_write(Some(options.io_timeout))
            .max_idle_connections_per_host(16)
            .input_buffer_size(256 << 10)
            .output_buffer_size(256 << 10)
            .build();
        Ok(Client {
            inner: Arc::new(Inner {
                host,
                agent: Agent::new_with_config(config),
                credentials: options.credentials,
                tls_verify: options.tls_verify,
                retry: options.retry,
                upload: options.upload,
                timeout: options.timeout,
                hook: options.on_request,
                endpoint: Mutex::new(None),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry this client talks to.
    pub fn host(&self) -> &RegistryHost {
        &self.inner.host
    }

    /// A handle on one repository of this registry.
    pub fn repository(&self, name: RepositoryName) -> crate::Repository {
        crate::Repository::new(self.clone(), name)
    }

    /// Pings `GET /v2/` (once per client; later calls answer from memory) and returns the
    /// base URL chosen, `https://HOST` or `http://HOST`.
    pub fn ping(&self) -> Result<String, Error> {
        Ok(self.endpoint()?.base.clone())
    }

    pub(crate) fn retry_policy(&self) -> &RetryPolicy {
        &self.inner.retry
    }

    pub(crate) fn upload_policy(&self) -> &UploadPolicy {
        &self.inner.upload
    }

    /// `BASE/v2/PATH` for the registry.
    pub(crate) fn url(&self, path: &str) -> Result<String, Error> {
        Ok(format!("{}/v2/{path}", self.endpoint()?.base))
    }

    /// An absolute URL for a `Location` the registry sent (absolute or host-relative).
    pub(crate) fn resolve(&self, location: &str) -> Result<String, Error> {
        if location.starts_with("https://") || location.starts_with("http://") {
            Ok(location.to_string())
        } else if location.starts_with('/') {
            Ok(format!("{}{location}", self.endpoint()?.base))
        } else {
            Err(Error::Protocol {
                method: "POST",
                url: self.endpoint()?.base.clone(),
                reason: format!("the Location `{location}` is neither absolute nor host-relative"),
            })
        }
    }

    /// Runs `op` until it succeeds, fails permanently, or the retry budget is spent
    /// ([`retry_pause`](Self::retry_pause)), waiting with backoff in between.
    pub(crate) fn retrying<T>(&self, mut op: impl FnMut() -> Result<T, Error>) -> Result<T, Error> {
        let started = Instant::now();
        let mut failures = 0;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() => {
                    failures += 1;
                    match self.retry_pause(failures, started, &e) {
                        Some(pause) => std::thread::sleep(pause),
                        None => return Err(exhausted(failures, e)),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The pause before trying again after `failures` retryable failures in a row
    /// without progress, the first of them begun at `since`; `None` when the budget is
    /// spent: [`RetryPolicy::max_attempts`] tries, or [`Options::timeout`] of waiting
    /// (the pause included), whichever comes first.
    pub(crate) fn retry_pause(&self, failures: u32, since: Instant, e: &Error) -> Option<Duration> {
        if failures >= self.inner.retry.max_attempts {
            return None;
        }
        let pause = self.inner.retry.backoff(failures, e.retry_after());
        (since.elapsed() + pause < self.inner.timeout).then_some(pause)
    }

    /// Sends one request, answering auth challenges: a 401 that brings a new challenge,
    /// or refuses a cached token, is answered once more with fresh credentials (or, for
    /// a streamed body that cannot be replayed, becomes a retryable
    /// [`Error::TokenRefused`]). Any other status is returned for the caller to judge.
    pub(crate) fn send(&self, mut req: Request<'_>) -> Result<Response<Body>, Error> {
        let mut endpoint = self.endpoint()?;
        let to_registry = authority(&req.url) == authority(&endpoint.base);
        let mut answered_again = false;
        loop {
            let (auth, cached) = if to_registry {
                self.authorization(&endpoint, req.scope)?
            } else {
                (None, false)
            };
            let resp = self.exchange(&mut req, auth.as_deref())?;
            if resp.status() != StatusCode::UNAUTHORIZED || !to_registry || answered_again {
                return Ok(resp);
            }
            let challenge = self.challenge_of(&resp)?;
            let new_challenge = challenge.is_some() && challenge != endpoint.challenge;
            if new_challenge {
                let updated = Arc::new(Endpoint {
                    base: endpoint.base.clone(),
                    challenge,
                });
                *lock(&self.inner.endpoint) = Some(updated.clone());
                endpoint = updated;
            } else if cached {
                lock(&self.inner.tokens).remove(&req.scope.key());
            } else {
                return Ok(resp);
            }
            if matches!(req.payload, Payload::Stream { .. }) {
                return Err(Error::TokenRefused {
                    registry: self.inner.host.to_string(),
                    scope: req.scope.to_string(),
                });
            }
            answered_again = true;
        }
    }

    /// One HTTP exchange, reported to the hook.
    fn exchange(&self, req: &mut Request<'_>, auth: Option<&str>) -> Result<Response<Body>, Error> {
        let method = req.method.as_str();
        let mut builder = ureq::http::Request::builder().method(method).uri(&req.url);
        for (k, v) in &req.headers {
            builder = builder.header(*k, v.as_str());
        }
        if let Some(a) = auth {
            builder = builder.header("authorization", a);
        }
        let bad_url = |e: ureq::http::Error| Error::Protocol {
            method,
            url: req.url.clone(),
            reason: format!("cannot make a request of it: {e}"),
        };
        let mut counted = 0u64;
        let result = match &mut req.payload {
            Payload::Empty if !req.method.sends_body() => {
                let r = builder.body(()).map_err(bad_url)?;
                self.run(r, req.method)
            }
            Payload::Empty => {
                let r = builder.body(&[][..]).map_err(bad_url)?;
                self.run(r, req.method)
            }
            Payload::Bytes(b) => {
                counted = b.len() as u64;
                let r = builder.body(*b).map_err(bad_url)?;
                self.run(r, req.method)
            }
            Payload::Stream { reader, len } => {
                let mut counting = Counting {
                    inner: &mut **reader,
                    count: &mut counted,
                };
                let r = builder
                    .header("content-length", len.to_string())
                    .body(SendBody::from_reader(&mut counting))
                    .map_err(bad_url)?;
                self.run(r, req.method)
            }
        };
        if let Some(hook) = &self.inner.hook {
            hook(&Exchange {
                method,
                url: &req.url,
                status: result.as_ref().ok().map(|r| r.status().as_u16()),
                sent: counted,
                error: result.as_ref().err().map(|e| e.to_string()),
            });
        }
        result.map_err(|error| Error::Transport {
            method,
            url: req.url.clone(),
            error: TransportError::new(error),
        })
    }

    fn run<B: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<B>,
        method: Method,
    ) -> Result<Response<Body>, ureq::Error> {
        let agent = &self.inner.agent;
        // Every body but a blob's is small (JSON, a token, an error): one that trickles
        // in is cut off after the timeout. A blob's may take long; its reads may not stall.
        let path = request.uri().path();
        let is_blob = path.contains("/blobs/") && !path.contains("/blobs/uploads/");
        let mut config = agent.configure_request(request);
        if !is_blob {
            config = config.timeout_recv_body(Some(self.inner.timeout));
        }
        if !matches!(method, Method::Get | Method::Head) {
            // Uploads are never redirected: a streamed body cannot be sent twice.
            config = config.max_redirects(0);
        }
        agent.run(config.build())
    }

    /// The `Authorization` header for `scope`, and whether it came from the token cache.
    fn authorization(
        &self,
        endpoint: &Endpoint,
        scope: &Scope,
    ) -> Result<(Option<String>, bool), Error> {
        match (&endpoint.challenge, &self.inner.credentials) {
            (None, _) => Ok((None, false)),
            (Some(Challenge::Basic), Credentials::Basic { username, password }) => {
                Ok((Some(Credentials::basic_header(username, password)), false))
            }
            (Some(Challenge::Basic), _) => Ok((None, false)),
            (Some(Challenge::Bearer { realm, service }), _) => {
                let key = scope.key();
                if let Some(t) = lock(&self.inner.tokens).get(&key) {
                    if Instant::now() < t.usable_until {
                        return Ok((Some(t.header.clone()), true));
                    }
                }
                let token = self.fetch_token(realm, service.as_deref(), scope)?;
                let header = token.header.clone();
                lock(&self.inner.tokens).insert(key, token);
                Ok((Some(header), false))
            }
        }
    }

    /// Asks the token server for a token for `scope`: `GET realm?service=&scope=` with
    /// Basic credentials (or none), or the OAuth2 refresh-token `POST` for an identity
    /// token.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<CachedToken, Error> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let none = Scope(Vec::new());
        let resp = match &self.inner.credentials {
            Credentials::IdentityToken(refresh) => {
                let joined = scope.0.join(" ");
                query.push(("scope", &joined));
                query.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", "strata"),
                ]);
                let form = encode_form(&query);
                let mut req = Request::new(Method::Post, realm.to_string(), &none)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .payload(Payload::Bytes(form.as_bytes()));
                self.exchange(&mut req, None)?
            }
            creds => {
                for s in &scope.0 {
                    query.push(("scope", s));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", encode_form(&query));
                let auth = match creds {
                    Credentials::Basic { username, password } => {
                        Some(Credentials::basic_header(username, password))
                    }
                    _ => None,
                };
                self.exchange(&mut Request::new(Method::Get, url, &none), auth.as_deref())?
            }
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(TOKEN_BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| Error::Token {
                realm: realm.to_string(),
                reason: format!("reading the answer: {e}"),
            })?;
        match status {
            200 => {}
            401 | 403 => {
                return Err(Error::Unauthorized {
                    registry: format!("{} (token server {realm})", self.inner.host),
                    scope: scope.to_string(),
                    anonymous: self.inner.credentials == Credentials::Anonymous,
                    errors: RegistryErrors::decode(&bytes),
                })
            }
            s => {
                return Err(Error::Status {
                    method: "GET",
                    url: realm.to_string(),
                    status: s,
                    errors: RegistryErrors::decode(&bytes),
                    retry_after: None,
                })
            }
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = serde_json::from_slice(&bytes).map_err(|e| Error::Token {
            realm: realm.to_string(),
            reason: format!("the answer is not a token document: {e}"),
        })?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| Error::Token {
                realm: realm.to_string(),
                reason: "the answer holds neither `token` nor `access_token`".to_string(),
            })?;
        // The token spec's default lifetime is 60 s; renew a little before the end.
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60));
        let margin = (lifetime / 5).min(Duration::from_secs(30));
        Ok(CachedToken {
            header: format!("Bearer {token}"),
            usable_until: Instant::now() + (lifetime - margin),
        })
    }

    fn endpoint(&self) -> Result<Arc<Endpoint>, Error> {
        if let Some(e) = lock(&self.inner.endpoint).as_ref() {
            return Ok(e.clone());
        }
        let found = Arc::new(self.retrying(|| self.discover())?);
        let mut slot = lock(&self.inner.endpoint);
        Ok(slot.get_or_insert(found).clone())
    }

    /// HTTPS first; plain HTTP when that failed in transport and plain HTTP is allowed.
    fn discover(&self) -> Result<Endpoint, Error> {
        let authority = self.inner.host.api_authority();
        let https = format!("https://{authority}");
        let plain_allowed = !self.inner.tls_verify || self.inner.host.is_loopback();
        let tls_error = match self.ping_at(&https) {
            Ok(challenge) => {
                return Ok(Endpoint {
                    base: https,
                    challenge,
                })
            }
            // A timeout means something took the connection and kept quiet: asking it
            // again in plain text would only double the wait.
            Err(e) if matches!(&e, Error::Transport { error, .. } if error.is_timeout()) => {
                return Err(e)
            }
            Err(e @ Error::Transport { .. }) if plain_allowed => e,
            Err(e) => return Err(e),
        };
        let http = format!("http://{authority}");
        match self.ping_at(&http) {
            Ok(challenge) => Ok(Endpoint {
                base: http,
                challenge,
            }),
            // Something answered plain HTTP, but not as a registry: an HTTPS server
            // rejecting plain text. The TLS failure is the one worth reporting.
            Err(Error::NotARegistry { .. }) => Err(tls_error),
            Err(e) => Err(e),
        }
    }

    fn ping_at(&self, base: &str) -> Result<Option<Challenge>, Error> {
        let none = Scope(Vec::new());
        let url = format!("{base}/v2/");
        let resp = self.exchange(&mut Request::new(Method::Get, url.clone(), &none), None)?;
        match resp.status().as_u16() {
            200..=299 => {
                // Read the (tiny) body so that the connection is kept for what follows.
                let _ = resp
                    .into_body()
                    .with_config()
                    .limit(ERROR_BODY_LIMIT)
                    .read_to_vec();
                Ok(None)
            }
            401 => self.challenge_of(&resp),
            s if status_is_retryable(s) => Err(status_error(Method::Get, &url, resp)),
            s => Err(Error::NotARegistry { url, status: s }),
        }
    }

    /// The challenge a 401 answer offers.
    fn challenge_of(&self, resp: &Response<Body>) -> Result<Option<Challenge>, Error> {
        let offered: Vec<&str> = resp
            .headers()
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        parse_challenge(&offered).map_err(|reason| Error::BadChallenge {
            registry: self.inner.host.to_string(),
            reason,
        })
    }

    /// Maps a 401 or 403 to the auth errors, for callers that know the scope.
    pub(crate) fn auth_error(&self, scope: &Scope, resp: Response<Body>) -> Error {
        let status = resp.status().as_u16();
        let errors = read_errors(resp);
        let registry = self.inner.host.to_string();
        let scope = scope.to_string();
        if status == 403 {
            Error::Denied {
                registry,
                scope,
                errors,
            }
        } else {
            Error::Unauthorized {
                registry,
                scope,
                anonymous: self.inner.credentials == Credentials::Anonymous,
                errors,
            }
        }
    }

    pub(crate) fn host_name(&self) -> String {
        self.inner.host.to_string()
    }
}

/// The `host[:port]` of an absolute URL.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// Reads (at most 64 KiB of) an error body and decodes it.
pub(crate) fn read_errors(resp: Response<Body>) -> RegistryErrors {
    let mut body = resp.into_body();
    match body.with_config().limit(ERROR_BODY_LIMIT).read_to_vec() {
        Ok(bytes) => RegistryErrors::decode(&bytes),
        Err(_) => RegistryErrors::default(),
    }
}

/// A generic [`Error::Status`] for an unexpected answer.
pub(crate) fn status_error(method: Method, url: &str, resp: Response<Body>) -> Error {
    let status = resp.status().as_u16();
    let retry_after = header(&resp, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Error::Status {
        method: method.as_str(),
        url: url.to_string(),
        status,
        errors: read_errors(resp),
        retry_after,
    }
}

/// A header's value as text, if present and readable.
pub(crate) fn header<'r>(resp: &'r Response<Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn exhausted(attempts: u32, last: Error) -> Error {
    Error::RetriesExhausted {
        attempts,
        last: Box::new(last),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `k=v&k=v`, percent-encoding all but the unreserved characters.
pub(crate) fn encode_form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Counts the bytes read through it.
struct Counting<'a, 'c> {
    inner: &'a mut dyn Read,
    count: &'c mut u64,
}

impl Read for Counting<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        *self.count += n as u64;
        Ok(n)
    }
}

/// The CA roots: the system bundle plus the extra files and the registry's `certs.d`
/// CAs; Mozilla's roots (built in) when there are none of these.
fn root_certs(host: &RegistryHost, options: &Options) -> Result<RootCerts, Error> {
    let mut files: Vec<PathBuf> = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            [
                "/etc/ssl/certs/ca-certificates.crt",
                "/etc/pki/tls/certs/ca-bundle.crt",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file());
    files.extend(system);
    files.extend(options.ca_certs.iter().cloned());
    for dir in &options.certs_dirs {
        let Ok(entries) = std::fs::read_dir(dir.join(host.as_str())) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        return Ok(RootCerts::WebPki);
    }
    let mut certs = Vec::new();
    for path in files {
        let pem = std::fs::read(&path).map_err(|e| Error::CaCertificate {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let before = certs.len();
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::CaCertificate {
                        path,
                        reason: e.to_string(),
                    })
                }
            }
        }
        if certs.len() == before {
            return Err(Error::CaCertificate {
                path,
                reason: "holds no PEM certificate".to_string(),
            });
        }
    }
    Ok(RootCerts::new_with_certs(&certs as &[Certificate<'static>]))
}

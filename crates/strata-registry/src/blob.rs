//! Blobs: `HEAD` to ask whether the registry has one, a streaming [`BlobReader`] that
//! verifies the digest and resumes with `Range` after a dropped connection, and
//! [`Repository::push_blob`]: skip what exists, mount across repositories, upload in
//! one `PUT` or in `PATCH` chunks that resume from the offset the registry reports.

use std::io::{self, Read, Seek, SeekFrom, Write};

use strata_layer::digest::{Digest, Hasher};
use ureq::http::Response;
use ureq::Body;

use crate::client::{
    encode_component, exhausted, header, read_errors, status_error, Method, Payload, Request, Scope,
};
use crate::{Error, Repository, RepositoryName, TransportError};

/// The most faults one blob transfer survives, however much progress came between
/// them (faults without progress are bounded by [`crate::RetryPolicy::max_attempts`]).
const MAX_TRANSFER_FAULTS: u32 = 64;

/// What [`Repository::push_blob`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// The repository had the blob already (`HEAD` said so); nothing was sent.
    AlreadyPresent,
    /// The registry linked the blob from the other repository; nothing was sent.
    Mounted,
    /// The bytes were uploaded.
    Uploaded,
}

/// Options for [`Repository::push_blob`].
#[derive(Default)]
pub struct PushOptions<'a> {
    /// Another repository of the same registry believed to hold the blob: the registry
    /// is asked to mount it from there (`POST ?mount=&from=`) before anything is sent.
    pub mount_from: Option<&'a RepositoryName>,
    /// Called with the number of bytes sent so far (it goes back when an upload has to
    /// restart, and jumps to the size when the blob needed no upload).
    pub progress: Option<&'a mut dyn FnMut(u64)>,
    /// The caller asked (`HEAD`) a moment ago and the repository lacked the blob: the
    /// upload starts without asking again, a round trip saved per new blob.
    pub known_absent: bool,
}

impl Repository {
    /// `HEAD`: the blob's size if the repository has it, `None` if not.
    pub fn stat_blob(&self, digest: &Digest) -> Result<Option<u64>, Error> {
        self.stat_blob_for(digest, &Scope::pull(self.name()))
    }

    fn stat_blob_for(&self, digest: &Digest, scope: &Scope) -> Result<Option<u64>, Error> {
        let url = self
            .client()
            .url(&format!("{}/blobs/{digest}", self.name()))?;
        self.client().retrying(|| {
            let resp = self
                .client()
                .send(Request::new(Method::Head, url.clone(), scope))?;
            match resp.status().as_u16() {
                200 => {
                    if let Some(said) = header(&resp, "docker-content-digest")
                        .and_then(|d| Digest::parse(d).ok())
                        .filter(|d| d != digest)
                    {
                        return Err(Error::Protocol {
                            method: "HEAD",
                            url: url.clone(),
                            reason: format!("the registry answered for another blob, {said}"),
                        });
                    }
                    let len = header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok());
                    len.map(Some).ok_or_else(|| Error::Protocol {
                        method: "HEAD",
                        url: url.clone(),
                        reason: "the answer has no Content-Length".to_string(),
                    })
                }
                404 => Ok(None),
                401 | 403 => Err(self.client().auth_error(scope, resp)),
                _ => Err(status_error(Method::Head, &url, resp)),
            }
        })
    }

    /// Opens a blob for reading. `size` (from the descriptor) is checked against the
    /// registry's length up front and against the bytes at the end; the digest is
    /// checked when the reader reaches the end, so a reader that returned `Ok(0)` has
    /// delivered exactly the blob. A dropped connection is resumed with `Range` (bounded
    /// retries with backoff); errors come out of `read` as `io::Error`s holding an
    /// [`Error`] ([`Error::from_io`]), `InvalidData` for wrong bytes.
    pub fn get_blob(&self, digest: &Digest, size: Option<u64>) -> Result<BlobReader, Error> {
        let mut reader = BlobReader {
            repo: self.clone(),
            url: self
                .client()
                .url(&format!("{}/blobs/{digest}", self.name()))?,
            scope: Scope::pull(self.name()),
            digest: *digest,
            expected: size,
            body: None,
            skip: 0,
            hasher: Hasher::default(),
            received: 0,
            failures: 0,
            faults: 0,
            progress: None,
            state: State::Streaming,
        };
        self.client().retrying(|| reader.open())?;
        Ok(reader)
    }

    /// Uploads a blob of `size` bytes read from `source` (from its start), unless the
    /// repository has it or can mount it from `options.mount_from`. Blobs up to
    /// [`crate::UploadPolicy::monolithic_max`] go in one `PUT`; larger ones in `PATCH`
    /// chunks, each checked against the `Range` the registry reports. After a dropped
    /// connection the upload resumes from the registry's reported offset (`GET` on the
    /// upload), or restarts in a new session when the registry cannot say; a final
    /// `PUT` whose answer was lost is settled with a `HEAD`. The source is hashed as it
    /// is sent: a source that does not hash to `digest` fails before the upload is
    /// committed.
    pub fn push_blob<R: Read + Seek>(
        &self,
        digest: &Digest,
        size: u64,
        source: R,
        options: PushOptions<'_>,
    ) -> Result<Pushed, Error> {
        let PushOptions {
            mount_from,
            mut progress,
            known_absent,
        } = options;
        let mount_from = mount_from.filter(|from| *from != self.name());
        let scope = match mount_from {
            Some(from) => Scope::push(self.name()).and_pull(from),
            None => Scope::push(self.name()),
        };
        let mut report = |n: u64| {
            if let Some(p) = progress.as_mut() {
                p(n)
            }
        };
        let have = match known_absent {
            true => None,
            false => self.stat_blob_for(digest, &scope)?,
        };
        if let Some(have) = have {
            if have != size {
                return Err(Error::SizeMismatch {
                    what: format!("blob {digest} (the size the registry has for it)"),
                    expected: size,
                    actual: have,
                });
            }
            report(size);
            return Ok(Pushed::AlreadyPresent);
        }
        let mut session = None;
        if let Some(from) = mount_from {
            match self.post_upload(&scope, Some((digest, from)))? {
                Started::Mounted => {
                    report(size);
                    return Ok(Pushed::Mounted);
                }
                Started::Session(s) => session = Some(s),
            }
        }
        let mut upload = Upload {
            repo: self,
            digest: *digest,
            size,
            scope,
            source,
            hasher: Hasher::default(),
            pos: 0,
            source_error: None,
            progress: &mut report,
            failures: 0,
            faults: 0,
        };
        upload.run(session)?;
        Ok(Pushed::Uploaded)
    }

    /// `POST /blobs/uploads/`: a new upload session.
    fn start_upload(&self, scope: &Scope) -> Result<Session, Error> {
        match self.post_upload(scope, None)? {
            Started::Session(s) => Ok(s),
            Started::Mounted => Err(Error::Protocol {
                method: "POST",
                url: self
                    .client()
                    .url(&format!("{}/blobs/uploads/", self.name()))?,
                reason: "the registry says it mounted a blob we did not ask it to mount".into(),
            }),
        }
    }

    /// `POST /blobs/uploads/` (with `?mount=&from=` to mount): a session, or mounted.
    fn post_upload(
        &self,
        scope: &Scope,
        mount: Option<(&Digest, &RepositoryName)>,
    ) -> Result<Started, Error> {
        let mut path = format!("{}/blobs/uploads/", self.name());
        if let Some((digest, from)) = mount {
            path.push_str(&format!(
                "?mount={}&from={}",
                encode_component(&digest.to_string()),
                encode_component(from.as_str())
            ));
        }
        let url = self.client().url(&path)?;
        self.client().retrying(|| {
            let resp = self
                .client()
                .send(Request::new(Method::Post, url.clone(), scope).payload(Payload::Empty))?;
            match resp.status().as_u16() {
                201 if mount.is_some() => Ok(Started::Mounted),
                202 => Ok(Started::Session(self.session_of(
                    Method::Post,
                    &url,
                    &resp,
                )?)),
                401 | 403 => Err(self.client().auth_error(scope, resp)),
                404 => Err(Error::RepositoryUnknown {
                    registry: self.client().host_name(),
                    repository: self.name().to_string(),
                    errors: read_errors(resp),
                }),
                _ => Err(status_error(Method::Post, &url, resp)),
            }
        })
    }

    /// The upload session a response points at (its `Location`).
    fn session_of(
        &self,
        method: Method,
        url: &str,
        resp: &Response<Body>,
    ) -> Result<Session, Error> {
        let location = header(resp, "location").ok_or_else(|| Error::Protocol {
            method: method.as_str(),
            url: url.to_string(),
            reason: "the answer has no Location for the upload".to_string(),
        })?;
        Ok(Session {
            location: self.client().resolve(location)?,
            min_chunk: header(resp, "oci-chunk-min-length").and_then(|v| v.parse().ok()),
        })
    }
}

enum Started {
    Mounted,
    Session(Session),
}

/// An open upload: where to send the next request.
struct Session {
    location: String,
    min_chunk: Option<u64>,
}

/// Why one step of an upload failed: a transient fault worth another try, or the end.
enum Fault {
    /// Retry (resuming when the registry can say how far it got, else in a new session).
    Again(Error),
    Fatal(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        if e.is_retryable() {
            Fault::Again(e)
        } else {
            Fault::Fatal(e)
        }
    }
}

/// The state of one `push_blob` upload: the source, how far it has been read (and
/// hashed), and the failure budget.
struct Upload<'r, 'p, R> {
    repo: &'r Repository,
    digest: Digest,
    size: u64,
    scope: Scope,
    source: R,
    /// The sha256 of `source[..pos]`.
    hasher: Hasher,
    pos: u64,
    source_error: Option<io::Error>,
    progress: &'p mut dyn FnMut(u64),
    /// Consecutive transient faults without progress.
    failures: u32,
    /// All transient faults.
    faults: u32,
}

impl<R: Read + Seek> Upload<'_, '_, R> {
    fn run(&mut self, mut session: Option<Session>) -> Result<(), Error> {
        loop {
            let s = match session.take() {
                Some(s) => s,
                None => self.repo.start_upload(&self.scope)?,
            };
            let monolithic = self.size <= self.repo.client().upload_policy().monolithic_max;
            let (result, location) = if monolithic {
                let loc = s.location.clone();
                (self.monolithic(&s), loc)
            } else {
                self.chunked(s)
            };
            match result {
                Ok(()) => return Ok(()),
                Err(Fault::Fatal(e)) => {
                    self.cancel(&location);
                    return Err(e);
                }
                Err(Fault::Again(e)) => {
                    if let Err(e) = self.fail(e) {
                        self.cancel(&location);
                        return Err(e);
                    }
                    // The answer to a final PUT may be what got lost.
                    if self.repo.stat_blob_for(&self.digest, &self.scope)? == Some(self.size) {
                        return Ok(());
                    }
                    self.cancel(&location);
                }
            }
        }
    }

    /// Counts a transient fault and waits, or gives up when the budget is spent.
    fn fail(&mut self, e: Error) -> Result<(), Error> {
        let policy = self.repo.client().retry_policy();
        self.failures += 1;
        self.faults += 1;
        if self.failures >= policy.max_attempts || self.faults > MAX_TRANSFER_FAULTS {
            return Err(exhausted(self.faults, e));
        }
        std::thread::sleep(policy.backoff(self.failures, e.retry_after()));
        Ok(())
    }

    fn monolithic(&mut self, s: &Session) -> Result<(), Fault> {
        self.rewind_to(0)?;
        let url = with_digest(&s.location, &self.digest);
        let len = self.size;
        let resp = self.send_bytes(Method::Put, url.clone(), len, None)?;
        self.check_complete(&url, resp)
    }

    /// Sends the chunks, then the closing `PUT`; returns the last session URL with the
    /// result, so a failed session can be cancelled.
    fn chunked(&mut self, mut s: Session) -> (Result<(), Fault>, String) {
        let result = self.chunks(&mut s);
        (result, s.location)
    }

    fn chunks(&mut self, s: &mut Session) -> Result<(), Fault> {
        let policy = self.repo.client().upload_policy();
        let chunk = policy.chunk_size.max(s.min_chunk.unwrap_or(0)).max(1);
        // `offset` is what the registry holds; the source is read from there.
        let mut offset = 0;
        while offset < self.size {
            self.rewind_to(offset)?;
            let len = chunk.min(self.size - offset);
            let range = format!("{offset}-{}", offset + len - 1);
            match self.send_bytes(Method::Patch, s.location.clone(), len, Some(range)) {
                Ok(resp) => match resp.status().as_u16() {
                    202 | 204 => {
                        let end = match header(&resp, "range") {
                            // After a PATCH the registry holds at least one byte.
                            Some(r) => parse_range_last(r).map(|n| n + 1).ok_or_else(|| {
                                self.protocol(
                                    Method::Patch,
                                    &s.location,
                                    format!("unreadable Range `{r}`"),
                                )
                            })?,
                            None => offset + len,
                        };
                        if end > offset + len {
                            return Err(Fault::Fatal(self.protocol(
                                Method::Patch,
                                &s.location,
                                format!(
                                    "the registry claims {end} bytes after we sent {}",
                                    offset + len
                                ),
                            )));
                        }
                        if let Some(loc) = header(&resp, "location") {
                            s.location = self.repo.client().resolve(loc)?;
                        }
                        if end == offset + len {
                            self.failures = 0;
                        } else {
                            // The registry kept less than we sent: send the rest again.
                            self.fail(self.protocol(
                                Method::Patch,
                                &s.location,
                                format!("the registry kept {end} of {} bytes", offset + len),
                            ))?;
                        }
                        offset = end;
                    }
                    404 => {
                        return Err(Fault::Again(self.session_lost(
                            Method::Patch,
                            &s.location,
                            resp,
                        )))
                    }
                    416 => {
                        let e = self.protocol(
                            Method::Patch,
                            &s.location,
                            "the registry refused the range".to_string(),
                        );
                        self.fail(e)?;
                        offset = self.resume_point(s)?;
                    }
                    401 | 403 => {
                        return Err(Fault::Fatal(
                            self.repo.client().auth_error(&self.scope, resp),
                        ))
                    }
                    _ => {
                        let e = status_error(Method::Patch, &s.location, resp);
                        if !e.is_retryable() {
                            return Err(Fault::Fatal(e));
                        }
                        self.fail(e)?;
                        offset = self.resume_point(s)?;
                    }
                },
                Err(Fault::Again(e)) => {
                    self.fail(e)?;
                    offset = self.resume_point(s)?;
                }
                Err(fatal) => return Err(fatal),
            }
        }
        self.rewind_to(self.size)?;
        self.check_local_digest()?;
        let url = with_digest(&s.location, &self.digest);
        let resp = self
            .repo
            .client()
            .send(Request::new(Method::Put, url.clone(), &self.scope).payload(Payload::Empty))?;
        self.check_complete(&url, resp)
    }

    /// `GET` on the upload: how many bytes the registry holds (and the session URL
    /// to go on with). A registry that has lost or invalidated the session makes the
    /// upload start over.
    fn resume_point(&mut self, s: &mut Session) -> Result<u64, Fault> {
        let client = self.repo.client();
        let resp = client
            .retrying(|| client.send(Request::new(Method::Get, s.location.clone(), &self.scope)))?;
        match resp.status().as_u16() {
            204 | 200 => {
                let have = match header(&resp, "range") {
                    Some(r) => held_by_status(r).ok_or_else(|| {
                        self.protocol(Method::Get, &s.location, format!("unreadable Range `{r}`"))
                    })?,
                    None => 0,
                };
                if have > self.size {
                    return Err(Fault::Fatal(self.protocol(
                        Method::Get,
                        &s.location,
                        format!(
                            "the registry holds {have} bytes of a {}-byte blob",
                            self.size
                        ),
                    )));
                }
                if let Some(loc) = header(&resp, "location") {
                    s.location = client.resolve(loc)?;
                }
                (self.progress)(have);
                Ok(have)
            }
            401 | 403 => Err(Fault::Fatal(client.auth_error(&self.scope, resp))),
            _ => Err(Fault::Again(self.session_lost(
                Method::Get,
                &s.location,
                resp,
            ))),
        }
    }

    /// A retryable error for a session the registry no longer accepts.
    fn session_lost(&self, method: Method, url: &str, resp: Response<Body>) -> Error {
        let status = resp.status().as_u16();
        Error::Status {
            method: method.as_str(),
            url: url.to_string(),
            // Reported as a server fault so that it is retried in a new session.
            status: if status >= 500 { status } else { 503 },
            errors: read_errors(resp),
            retry_after: None,
        }
    }

    fn protocol(&self, method: Method, url: &str, reason: String) -> Error {
        Error::Protocol {
            method: method.as_str(),
            url: url.to_string(),
            reason,
        }
    }

    /// Sends `len` bytes of the source from `pos` as the body of one request.
    fn send_bytes(
        &mut self,
        method: Method,
        url: String,
        len: u64,
        content_range: Option<String>,
    ) -> Result<Response<Body>, Fault> {
        let client = self.repo.client().clone();
        let scope = self.scope.clone();
        let mut feed = Feed {
            upload: &mut *self,
            remaining: len,
        };
        let mut req =
            Request::new(method, url, &scope).header("content-type", "application/octet-stream");
        if let Some(r) = content_range {
            req = req.header("content-range", r);
        }
        let result = client.send(req.payload(Payload::Stream {
            reader: &mut feed,
            len,
        }));
        if let Some(error) = self.source_error.take() {
            return Err(Fault::Fatal(Error::Source {
                digest: self.digest,
                error,
            }));
        }
        Ok(result?)
    }

    /// The answer to the closing `PUT` (`?digest=`).
    fn check_complete(&mut self, url: &str, resp: Response<Body>) -> Result<(), Fault> {
        match resp.status().as_u16() {
            201 | 204 => {
                if let Some(said) = header(&resp, "docker-content-digest")
                    .and_then(|d| Digest::parse(d).ok())
                    .filter(|d| *d != self.digest)
                {
                    return Err(Fault::Fatal(Error::DigestMismatch {
                        what: format!("blob stored in {}", self.repo.name()),
                        expected: self.digest,
                        actual: said,
                    }));
                }
                self.check_local_digest()
            }
            400 => {
                let errors = read_errors(resp);
                // Our own copy is the likelier culprit, and the clearer error.
                self.check_local_digest()?;
                Err(Fault::Fatal(
                    if errors.has("DIGEST_INVALID") || errors.has("SIZE_INVALID") {
                        Error::DigestInvalid {
                            repository: self.repo.name().to_string(),
                            digest: self.digest,
                            errors,
                        }
                    } else {
                        Error::Status {
                            method: "PUT",
                            url: url.to_string(),
                            status: 400,
                            errors,
                            retry_after: None,
                        }
                    },
                ))
            }
            404 => Err(Fault::Again(self.session_lost(Method::Put, url, resp))),
            401 | 403 => Err(Fault::Fatal(
                self.repo.client().auth_error(&self.scope, resp),
            )),
            _ => Err(status_error(Method::Put, url, resp).into()),
        }
    }

    /// When the whole source has been read: does it hash to the digest?
    fn check_local_digest(&self) -> Result<(), Fault> {
        if self.pos != self.size {
            return Ok(());
        }
        let actual = self.hasher.digest();
        if actual != self.digest {
            return Err(Fault::Fatal(Error::DigestMismatch {
                what: "the local copy of the blob to upload".to_string(),
                expected: self.digest,
                actual,
            }));
        }
        Ok(())
    }

    /// Positions the source at `target`, re-reading (and hashing) from the start when
    /// going back.
    fn rewind_to(&mut self, target: u64) -> Result<(), Fault> {
        let source_err = |digest, error| Fault::Fatal(Error::Source { digest, error });
        if target < self.pos {
            self.source
                .seek(SeekFrom::Start(0))
                .map_err(|e| source_err(self.digest, e))?;
            self.pos = 0;
            self.hasher = Hasher::default();
        }
        if self.pos == target {
            return Ok(());
        }
        let mut buf = vec![0u8; (target - self.pos).min(1 << 20) as usize];
        let mut hashed = self.hasher.writer(io::sink());
        while self.pos < target {
            let want = (target - self.pos).min(buf.len() as u64) as usize;
            let n = match self.source.read(&mut buf[..want]) {
                Ok(0) => return Err(source_err(self.digest, short_source(self.pos, self.size))),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(source_err(self.digest, e)),
            };
            let _ = hashed.write_all(&buf[..n]);
            self.pos += n as u64;
        }
        Ok(())
    }

    /// Best-effort `DELETE` of an abandoned session, so the registry frees its space.
    fn cancel(&self, location: &str) {
        let _ = self.repo.client().send(Request::new(
            Method::Delete,
            location.to_string(),
            &self.scope,
        ));
    }
}

fn short_source(pos: u64, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("it ends at byte {pos}, but the blob is {size} bytes"),
    )
}

/// The request body of one upload request: the next `remaining` bytes of the source,
/// hashed as they go. A source failure is kept aside so it is not mistaken for a
/// network fault.
struct Feed<'u, 'r, 'p, R> {
    upload: &'u mut Upload<'r, 'p, R>,
    remaining: u64,
}

impl<R: Read> Read for Feed<'_, '_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = (buf.len() as u64).min(self.remaining) as usize;
        let u = &mut *self.upload;
        let n = loop {
            match u.source.read(&mut buf[..want]) {
                Ok(0) => {
                    let e = short_source(u.pos, u.size);
                    u.source_error = Some(short_source(u.pos, u.size));
                    return Err(e);
                }
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    u.source_error = Some(e);
                    return Err(copy);
                }
            }
        };
        let _ = u.hasher.writer(io::sink()).write_all(&buf[..n]);
        u.pos += n as u64;
        self.remaining -= n as u64;
        (u.progress)(u.pos);
        Ok(n)
    }
}

/// `LOCATION?digest=D` (or `&digest=D`).
fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{sep}digest={}",
        encode_component(&digest.to_string())
    )
}

/// The last byte `N` of a `Range: 0-N` (or `bytes=0-N`) header: the registry holds
/// `N + 1` bytes, except that distribution also writes `0-0` for an empty upload.
fn parse_range_last(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("bytes=").unwrap_or(v);
    let (start, end) = v.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    end.trim().parse::<u64>().ok()
}

/// What a `Range` in answer to an upload-status `GET` says the registry holds; `0-0`
/// is read as nothing (resending a byte is harmless, skipping one is not).
fn held_by_status(v: &str) -> Option<u64> {
    parse_range_last(v).map(|n| if n == 0 { 0 } else { n + 1 })
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Streaming,
    Done,
    Failed,
}

/// A blob being downloaded: a [`Read`] of its bytes that checks size and digest at the
/// end and reconnects with `Range` when the connection drops.
pub struct BlobReader {
    repo: Repository,
    url: String,
    scope: Scope,
    digest: Digest,
    expected: Option<u64>,
    body: Option<ureq::BodyReader<'static>>,
    /// Bytes of the current response to drop first (a registry that ignored `Range`).
    skip: u64,
    hasher: Hasher,
    received: u64,
    /// Consecutive failures without new bytes.
    failures: u32,
    /// All failures.
    faults: u32,
    progress: Option<Box<dyn FnMut(u64) + Send>>,
    state: State,
}

impl BlobReader {
    /// Calls `f` with the number of bytes delivered so far, after every read.
    pub fn with_progress(mut self, f: impl FnMut(u64) + Send + 'static) -> BlobReader {
        self.progress = Some(Box::new(f));
        self
    }

    /// The digest the bytes are checked against.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The blob's size, once known (given, or from the registry's answer).
    pub fn size(&self) -> Option<u64> {
        self.expected
    }

    /// Bytes delivered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Reads (and drops) whatever the consumer left unread, then answers whether the
    /// blob was right: its size and digest. A consumer that stops early (a tar
    /// reader at its end-of-archive blocks, before the compressed stream ends) calls
    /// this so the digest is still checked. Returns the blob's size.
    pub fn finish(mut self) -> Result<u64, Error> {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match self.read(&mut buf) {
                Ok(0) => return Ok(self.received),
                Ok(_) => {}
                // Every error of `read` holds one of ours, except a read after a
                // failure, which `finish` (taking the reader) cannot meet.
                Err(e) => {
                    return Err(
                        match e.into_inner().map(|inner| inner.downcast::<Error>()) {
                            Some(Ok(mine)) => *mine,
                            _ => self.already_failed(),
                        },
                    )
                }
            }
        }
    }

    fn already_failed(&self) -> Error {
        Error::Protocol {
            method: "GET",
            url: self.url.clone(),
            reason: "read again after the download had failed".to_string(),
        }
    }

    fn what(&self) -> String {
        format!("blob {} from {}", self.digest, self.repo.name())
    }

    /// Requests the blob from `received` on.
    fn open(&mut self) -> Result<(), Error> {
        let mut req = Request::new(Method::Get, self.url.clone(), &self.scope);
        if self.received > 0 {
            req = req.header("range", format!("bytes={}-", self.received));
        }
        let resp = self.repo.client().send(req)?;
        let total = match resp.status().as_u16() {
            200 => {
                self.skip = self.received;
                header(&resp, "content-length").and_then(|v| v.parse::<u64>().ok())
            }
            206 => {
                let range = header(&resp, "content-range").unwrap_or("");
                let parsed = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(start, rest)| {
                        Some((start.parse::<u64>().ok()?, rest.split_once('/')?.1))
                    });
                match parsed {
                    Some((start, total)) if start == self.received => total.parse::<u64>().ok(),
                    _ => {
                        return Err(Error::Protocol {
                            method: "GET",
                            url: self.url.clone(),
                            reason: format!(
                                "asked for bytes from {}, got Content-Range `{range}`",
                                self.received
                            ),
                        })
                    }
                }
            }
            404 => {
                return Err(Error::BlobUnknown {
                    repository: self.repo.name().to_string(),
                    digest: self.digest,
                })
            }
            401 | 403 => return Err(self.repo.client().auth_error(&self.scope, resp)),
            _ => return Err(status_error(Method::Get, &self.url, resp)),
        };
        if let Some(total) = total {
            match self.expected {
                Some(exp) if exp != total => {
                    return Err(Error::SizeMismatch {
                        what: format!("{} (the length the registry sends)", self.what()),
                        expected: exp,
                        actual: total,
                    })
                }
                _ => self.expected = Some(total),
            }
        }
        self.body = Some(resp.into_body().into_reader());
        Ok(())
    }

    /// A failed read or reconnection: wait and go on, or give up.
    fn recover(&mut self, e: Error) -> io::Result<()> {
        self.body = None;
        let policy = self.repo.client().retry_policy();
        if !e.is_retryable() {
            self.state = State::Failed;
            return Err(e.into_io());
        }
        self.failures += 1;
        self.faults += 1;
        if self.failures >= policy.max_attempts || self.faults > MAX_TRANSFER_FAULTS {
            self.state = State::Failed;
            return Err(exhausted(self.faults, e).into_io());
        }
        std::thread::sleep(policy.backoff(self.failures, e.retry_after()));
        Ok(())
    }

    fn fail(&mut self, e: Error) -> io::Error {
        self.body = None;
        self.state = State::Failed;
        e.into_io()
    }

    fn transport(&self, e: io::Error) -> Error {
        Error::Transport {
            method: "GET",
            url: self.url.clone(),
            error: TransportError::new(ureq::Error::Io(e)),
        }
    }

    /// The end of the bytes: check the length and the digest.
    fn at_end(&mut self) -> io::Result<usize> {
        self.body = None;
        if let Some(exp) = self.expected.filter(|&e| e != self.received) {
            return Err(self.fail(Error::SizeMismatch {
                what: self.what(),
                expected: exp,
                actual: self.received,
            }));
        }
        let actual = self.hasher.digest();
        if actual != self.digest {
            return Err(self.fail(Error::DigestMismatch {
                what: self.what(),
                expected: self.digest,
                actual,
            }));
        }
        self.state = State::Done;
        Ok(0)
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Failed => return Err(self.already_failed().into_io()),
                State::Streaming => {}
            }
            if buf.is_empty() {
                return Ok(0);
            }
            let Some(body) = self.body.as_mut() else {
                if let Err(e) = self.open() {
                    self.recover(e)?;
                }
                continue;
            };
            if self.skip > 0 {
                let mut scratch = [0u8; 64 << 10];
                let want = self.skip.min(scratch.len() as u64) as usize;
                match body.read(&mut scratch[..want]) {
                    Ok(0) => {
                        let e = self.transport(io::ErrorKind::UnexpectedEof.into());
                        self.recover(e)?
                    }
                    Ok(n) => self.skip -= n as u64,
                    Err(e) => {
                        let e = self.transport(e);
                        self.recover(e)?
                    }
                }
                continue;
            }
            match body.read(buf) {
                Ok(0) => return self.at_end(),
                Ok(n) => {
                    if let Some(exp) = self.expected.filter(|&e| self.received + n as u64 > e) {
                        return Err(self.fail(Error::SizeMismatch {
                            what: self.what(),
                            expected: exp,
                            actual: self.received + n as u64,
                        }));
                    }
                    let _ = self.hasher.writer(io::sink()).write_all(&buf[..n]);
                    self.received += n as u64;
                    self.failures = 0;
                    if let Some(p) = self.progress.as_mut() {
                        p(self.received);
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let e = self.transport(e);
                    self.recover(e)?
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_and_clients_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send::<BlobReader>();
        send_sync::<Repository>();
    }

    #[test]
    fn ranges_and_digest_queries() {
        assert_eq!(parse_range_last("0-99"), Some(99));
        assert_eq!(parse_range_last("bytes=0-0"), Some(0));
        assert_eq!(parse_range_last("5-9"), None);
        assert_eq!(parse_range_last("0-"), None);
        assert_eq!(held_by_status("0-0"), Some(0));
        assert_eq!(held_by_status("0-4194303"), Some(4 << 20));
        let d = Digest([0; 32]);
        assert_eq!(
            with_digest("http://h/v2/r/blobs/uploads/u?_state=x", &d),
            format!(
                "http://h/v2/r/blobs/uploads/u?_state=x&digest=sha256%3A{}",
                "0".repeat(64)
            )
        );
        assert!(with_digest("/u", &d).starts_with("/u?digest="));
    }
}

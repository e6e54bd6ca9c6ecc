//! Listing and housekeeping: a repository's tags (every page), the registry's catalog,
//! and deleting a manifest.
//!
//! Lists come in pages: the registry answers with at most `n` names and a
//! `Link: <URL>; rel="next"` header while more are left (distribution spec, "Listing
//! Tags"); every page is fetched, so the caller gets the whole list.

use serde::Deserialize;

use crate::client::{header, read_errors, status_error, Method, Request, Scope};
use crate::{Client, Digest, Error, Repository, TransportError};

/// Names asked for per page.
const PAGE: usize = 1000;
/// A page of names is small; more than this is not a list.
const PAGE_LIMIT: u64 = 16 << 20;
/// Pages followed at most (a registry whose `Link` never ends).
const MAX_PAGES: usize = 10_000;

#[derive(Deserialize)]
struct TagPage {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct CatalogPage {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// The URL of the `rel="next"` page in a `Link` header, if any.
fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then_some(url)
    })
}

impl Client {
    /// Every page of a list at `first`: the names each page's `pick` finds.
    fn pages<T: for<'de> Deserialize<'de>>(
        &self,
        first: String,
        scope: &Scope,
        pick: impl Fn(T) -> Vec<String>,
        not_found: impl Fn() -> Error,
    ) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        let mut url = first;
        for _ in 0..MAX_PAGES {
            let (page, next) = self.retrying(|| {
                let resp = self.send(Request::new(Method::Get, url.clone(), scope))?;
                match resp.status().as_u16() {
                    200 => {}
                    404 => return Err(not_found()),
                    401 | 403 => return Err(self.auth_error(scope, resp)),
                    _ => return Err(status_error(Method::Get, &url, resp)),
                }
                let next = header(&resp, "link")
                    .and_then(next_link)
                    .map(str::to_string);
                let bytes = resp
                    .into_body()
                    .with_config()
                    .limit(PAGE_LIMIT)
                    .read_to_vec()
                    .map_err(|error| Error::Transport {
                        method: "GET",
                        url: url.clone(),
                        error: TransportError::new(error),
                    })?;
                let page: T = serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
                    method: "GET",
                    url: url.clone(),
                    reason: format!("the list is not valid JSON ({e})"),
                })?;
                Ok((page, next))
            })?;
            names.extend(pick(page));
            match next {
                Some(n) => url = self.resolve(&n)?,
                None => return Ok(names),
            }
        }
        Err(Error::Protocol {
            method: "GET",
            url,
            reason: format!("the list goes on for more than {MAX_PAGES} pages"),
        })
    }

    /// Every repository of the registry (`GET /v2/_catalog`, every page).
    pub fn catalog(&self) -> Result<Vec<String>, Error> {
        self.catalog_paged(PAGE)
    }

    /// [`catalog`](Self::catalog), asking for `n` names per page.
    pub fn catalog_paged(&self, n: usize) -> Result<Vec<String>, Error> {
        let first = self.url(&format!("_catalog?n={}", n.max(1)))?;
        let host = self.host_name();
        self.pages(
            first,
            &Scope::catalog(),
            |p: CatalogPage| p.repositories.unwrap_or_default(),
            || Error::Protocol {
                method: "GET",
                url: format!("{host}/v2/_catalog"),
                reason: "the registry does not offer a catalog".into(),
            },
        )
    }
}

impl Repository {
    /// Every tag of the repository, in the registry's order (every page).
    pub fn tags(&self) -> Result<Vec<String>, Error> {
        self.tags_paged(PAGE)
    }

    /// [`tags`](Self::tags), asking for `n` tags per page.
    pub fn tags_paged(&self, n: usize) -> Result<Vec<String>, Error> {
        let first = self
            .client()
            .url(&format!("{}/tags/list?n={}", self.name(), n.max(1)))?;
        let (host, name) = (self.client().host_name(), self.name().to_string());
        self.client().pages(
            first,
            &Scope::pull(self.name()),
            |p: TagPage| p.tags.unwrap_or_default(),
            || Error::RepositoryUnknown {
                registry: host.clone(),
                repository: name.clone(),
                errors: Default::default(),
            },
        )
    }

    /// Deletes the manifest `digest` (and so every tag that names it). Registries may
    /// refuse (deletes are off by default in distribution): that is an error.
    pub fn delete_manifest(&self, digest: &Digest) -> Result<(), Error> {
        let scope = Scope::delete(self.name());
        let url = self
            .client()
            .url(&format!("{}/manifests/{digest}", self.name()))?;
        self.client().retrying(|| {
            let resp = self
                .client()
                .send(Request::new(Method::Delete, url.clone(), &scope))?;
            match resp.status().as_u16() {
                200..=202 => Ok(()),
                404 => {
                    drop(read_errors(resp));
                    Err(Error::ManifestUnknown {
                        repository: self.name().to_string(),
                        reference: digest.to_string(),
                    })
                }
                401 | 403 => Err(self.client().auth_error(&scope, resp)),
                _ => Err(status_error(Method::Delete, &url, resp)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_page_is_the_link_with_rel_next() {
        assert_eq!(
            next_link(r#"</v2/a/tags/list?last=x&n=2>; rel="next""#),
            Some("/v2/a/tags/list?last=x&n=2")
        );
        assert_eq!(
            next_link(r#"<https://r/prev>; rel="prev", <https://r/next>; rel="next""#),
            Some("https://r/next")
        );
        assert_eq!(next_link(r#"<https://r/prev>; rel="prev""#), None);
    }
}

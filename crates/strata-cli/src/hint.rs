//! What to do next after an error a user can cause: one line under the error, where
//! there is something to do (a flag, a command that lists what exists, a permission).
//! The libraries' errors say what went wrong; this says which option changes it.

use std::io;

/// The hint for an error, from the first error in its chain that has one.
pub fn hint(e: &anyhow::Error) -> Option<String> {
    let top = e.to_string();
    for cause in e.chain() {
        if let Some(h) = hint_for(cause, &top) {
            return Some(h);
        }
    }
    None
}

fn hint_for(e: &(dyn std::error::Error + 'static), top: &str) -> Option<String> {
    if let Some(e) = e.downcast_ref::<strata_store::Error>() {
        return store_hint(e, top);
    }
    if let Some(e) = e.downcast_ref::<strata_image::Error>() {
        return match e {
            strata_image::Error::Registry { error, .. } => registry_hint(error),
            strata_image::Error::Selection { reason, .. } if reason.starts_with("no image `") => {
                Some("`strata images` lists the store's images".into())
            }
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<strata_registry::Error>() {
        return registry_hint(e);
    }
    if let Some(e) = e.downcast_ref::<io::Error>() {
        return io_hint(e, top);
    }
    None
}

fn store_hint(e: &strata_store::Error, top: &str) -> Option<String> {
    use strata_store::Error as E;
    match e {
        E::NotFound(_) => Some("`strata layer ls --all` lists the store's layers".into()),
        E::Driver {
            driver: "overlay", ..
        } => Some(
            "--driver vfs (or STRATA_DRIVER=vfs) makes a new store that needs no overlayfs \
             (it copies instead), at another --root"
                .into(),
        ),
        E::DriverMismatch { store, .. } => Some(format!(
            "drop --driver (and STRATA_DRIVER) to use the store as it is, or --driver {store}"
        )),
        E::LockTimeout { .. } => Some(
            "let that process finish, or give a longer --lock-timeout (STRATA_LOCK_TIMEOUT)".into(),
        ),
        E::DiskFull { .. } => Some(
            "free space on that file system, or use a store on another one (--root DIR)".into(),
        ),
        E::Io { error, .. } => io_hint(error, top),
        _ => None,
    }
}

fn registry_hint(e: &strata_registry::Error) -> Option<String> {
    use strata_registry::Error as E;
    match e {
        E::RetriesExhausted { last, .. } => registry_hint(last),
        E::Transport { error, .. } if error.is_timeout() => Some(
            "a slow registry or link needs a longer --registry-timeout (e.g. 2m; \
                 STRATA_REGISTRY_TIMEOUT)"
                .into(),
        ),
        E::Transport { error, .. } if error.is_tls() => Some(
            "for a registry without a certificate we can verify: --tls-verify=false \
                 (pull, push; --src-tls-verify=false or --dest-tls-verify=false for copy), \
                 or put its CA in /etc/containers/certs.d/HOST/ca.crt"
                .into(),
        ),
        E::Denied { .. } => Some(
            "check the repository name, or log in as a user allowed to use it (podman login, \
             docker login, or --creds)"
                .into(),
        ),
        _ => None,
    }
}

fn io_hint(e: &io::Error, top: &str) -> Option<String> {
    if e.kind() != io::ErrorKind::PermissionDenied {
        return None;
    }
    if top.contains("the store") {
        Some(
            "the store needs write access: run as root, or use a store you can write with \
             --root DIR (STRATA_ROOT)"
                .into(),
        )
    } else {
        Some("run as root, or work in a directory you own".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_missing_layer_points_to_layer_ls() {
        let id = strata_store::LayerId::new("nosuch").unwrap();
        let e = anyhow::Error::new(strata_store::Error::NotFound(id))
            .context("cannot mount layer nosuch");
        assert_eq!(
            hint(&e).as_deref(),
            Some("`strata layer ls --all` lists the store's layers")
        );
    }

    #[test]
    fn permission_on_the_store_points_to_root_or_root_dir() {
        let e: anyhow::Result<()> = Err(io::Error::from(io::ErrorKind::PermissionDenied))
            .context("cannot open the store at /var/lib/strata");
        let h = hint(&e.unwrap_err()).unwrap();
        assert!(h.contains("--root DIR (STRATA_ROOT)"), "{h}");
    }

    #[test]
    fn other_errors_get_no_hint() {
        let e: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::NotFound)).context("cannot open app.tar");
        assert_eq!(hint(&e.unwrap_err()), None);
    }
}

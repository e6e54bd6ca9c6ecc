//! Credential helpers named by docker's config.json (`credHelpers`, `credsStore`),
//! run as `docker-credential-NAME get`, against a registry with htpasswd auth. This
//! binary holds one test because it puts the helper on `PATH` for the process.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{repo_name, tempdir, Auth, Registry, RegistryConfig};
use strata_registry::{AuthFileFormat, AuthFiles, Credentials, Options, Reference, RegistryHost};

#[test]
fn credential_helpers_supply_and_decline_credentials() {
    let reg = Registry::start_with(RegistryConfig {
        auth: Auth::Htpasswd(vec![("alice".into(), "s3cret:x".into())]),
        tls: None,
    });
    let dir = tempdir();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let helper = bin.join("docker-credential-stratatest");
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\n\
         case \"$server\" in\n  127.0.0.1:*) printf '{\"ServerURL\":\"%s\",\"Username\":\"alice\",\"Secret\":\"s3cret:x\"}' \"$server\" ;;\n  \
         *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    std::env::set_var("PATH", path);

    let host = reg.host();
    let alice = Credentials::Basic {
        username: "alice".into(),
        password: "s3cret:x".into(),
    };
    for config in [
        format!(r#"{{"credHelpers":{{"{host}":"stratatest"}}}}"#),
        r#"{"credsStore":"stratatest"}"#.to_string(),
    ] {
        let file = dir.path().join("config.json");
        std::fs::write(&file, &config).unwrap();
        let files = AuthFiles::new([(file, AuthFileFormat::Docker)]);
        assert_eq!(files.lookup(&host, None).unwrap(), alice, "{config}");
        // The store has nothing for another registry: anonymous, not an error.
        let other = RegistryHost::parse("ghcr.io").unwrap();
        assert_eq!(
            files.lookup(&other, None).unwrap(),
            Credentials::Anonymous,
            "{config}"
        );
        // And the credentials work.
        let creds = files.lookup(&host, None).unwrap();
        let repo = reg
            .client(Options {
                credentials: creds,
                ..Options::default()
            })
            .repository(repo_name("strata/helper"));
        let e = repo
            .get_manifest(&Reference::parse("absent").unwrap())
            .unwrap_err();
        assert!(
            matches!(e, strata_registry::Error::ManifestUnknown { .. }),
            "authenticated: {e}"
        );
    }

    // A helper that is missing is an error naming the file.
    let file = dir.path().join("config.json");
    std::fs::write(&file, r#"{"credsStore":"no-such-helper"}"#).unwrap();
    let e = AuthFiles::new([(file, AuthFileFormat::Docker)])
        .lookup(&host, None)
        .unwrap_err();
    assert!(e.to_string().contains("config.json"), "{e}");
}

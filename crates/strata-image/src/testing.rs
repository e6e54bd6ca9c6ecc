//! A tiny OCI layout for examples and tests (not part of the API).

use std::path::Path;

use crate::gojson;
use crate::ids::sha256;
use crate::manifest::{annotation, media_type, Descriptor, Index, Manifest};
use crate::oci::LAYOUT_FILE;
use crate::Error;

/// Writes an OCI layout at `dir` holding one image tagged `tiny`: one empty layer
/// (1024 zero bytes, uncompressed).
pub fn write_tiny_layout(dir: &Path) -> Result<(), Error> {
    let io = |e| Error::io(format!("writing {}", dir.display()), e);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(io)?;
    let put = |bytes: &[u8]| -> Result<Descriptor, Error> {
        let d = sha256(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).map_err(io)?;
        Ok(Descriptor::new("", d, bytes.len() as u64))
    };
    let layer = vec![0u8; 1024];
    let mut layer_desc = put(&layer)?;
    layer_desc.media_type = media_type::OCI_LAYER.into();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        layer_desc.digest
    );
    let mut config_desc = put(config.as_bytes())?;
    config_desc.media_type = media_type::OCI_CONFIG.into();
    let manifest = gojson::marshal(&Manifest::oci(config_desc, vec![layer_desc]))?;
    let mut manifest_desc = put(&manifest)?;
    manifest_desc.media_type = media_type::OCI_MANIFEST.into();
    manifest_desc
        .annotations
        .insert(annotation::REF_NAME.into(), "tiny".into());
    std::fs::write(
        dir.join("index.json"),
        gojson::marshal(&Index::oci(vec![manifest_desc]))?,
    )
    .map_err(io)?;
    std::fs::write(dir.join("oci-layout"), LAYOUT_FILE).map_err(io)?;
    Ok(())
}

//! # strata-wclayer: Windows container layers on Linux
//!
//! Microsoft's Windows layer code (go-winio `backuptar`, hcsshim `wclayer` and
//! `ociwclayer`) runs only on Windows. This crate does the same byte for byte on Linux,
//! after `../shared/specs/windows-layer.md`:
//!
//! | layer | module |
//! | --- | --- |
//! | Win32 backup streams (SD, EA, data, sparse blocks, ADS, reparse) | [`backup`], [`sd`], [`ea`], [`reparse`] |
//! | FILE_BASIC_INFO and FILETIME conversions | [`info`] |
//! | backup stream + basic info ⇄ tar entries (go-winio `backuptar`) | [`backuptar`] |
//! | layer folders: transport format, legacy and base readers/writers (a `strata_layer::LayerReader` and `LayerWriter` too), tombstones, `layerchain.json` | [`folder`] |
//! | OCI tar ⇄ layer folder (`ImportLayerFromTar` / `ExportLayerToTar`) | [`import_layer`], [`export_layer`] |
//! | Linux content → a Windows layer (`from-rootfs`) | [`windowsify`] |
//! | listings and a merged Linux view | [`inspect`], [`extract`] |
//!
//! The life of a layer: a Windows layer tar is imported into a *layer folder* (one per
//! layer, parents named nearest first), where it lives in the transport form Windows
//! uses (`Files\…` as attribute prefix + backup stream, `.$wcidirs$` siblings,
//! `Hives\`, `tombstones.txt`); it is exported back to the same tar bytes.
//!
//! ```
//! use strata_wclayer::{export_layer, import_layer, folder::LayerChain};
//! let tmp = tempfile::tempdir().unwrap();
//! // A base layer with one directory: build it with the folder writer, export it,
//! // import the tar into a second folder and export that: same bytes.
//! let base = tmp.path().join("base");
//! let mut w = strata_wclayer::folder::LayerFolderWriter::create(&base, &[]).unwrap();
//! let info = strata_wclayer::FileBasicInfo { attributes: strata_wclayer::FileAttributes(0x10), ..Default::default() };
//! w.add(&strata_wclayer::WinPath::parse("Files").unwrap(), &info).unwrap();
//! w.finish().unwrap();
//! let mut tar = Vec::new();
//! export_layer(&LayerChain::new(&base, &[]), &mut tar).unwrap();
//! let again = tmp.path().join("again");
//! import_layer(&tar[..], &LayerChain::new(&again, &[])).unwrap();
//! let mut tar2 = Vec::new();
//! export_layer(&LayerChain::new(&again, &[]), &mut tar2).unwrap();
//! assert_eq!(tar, tar2);
//! ```

#![warn(missing_docs)]

pub mod backup;
pub mod backuptar;
pub mod ea;
mod error;
pub mod extract;
pub mod folder;
pub mod info;
pub mod inspect;
mod layer_tar;
mod path;
pub mod reparse;
pub mod sd;
pub mod windowsify;

pub use error::Error;
pub use info::{FileAttributes, FileBasicInfo, FileTime};
pub use layer_tar::{export_layer, import_layer, ExportSummary, ImportSummary};
pub use path::{check_component, WinPath, TOP_LEVEL};

//! Read-write layers without an init layer, for engines that make their own mountpoints
//! (containerd's snapshots, see `snapshots.rs`).

use super::*;

impl Store {
    /// Creates the read-write layer `id` on `parent` (an applied layer) with no init layer
    /// between them: what the engine writes into its mount is all the layer holds.
    pub fn create_bare(&self, id: &LayerId, parent: Option<&LayerId>) -> Result<Layer> {
        let options = CreateOptions {
            writable: true,
            ..CreateOptions::default()
        };
        let (staging, row, _lock) =
            self.stage_layer(id, parent, &options, State::Writable, None)?;
        self.commit_layer(staging, &row, State::Writable)?;
        self.layer(id)
    }
}

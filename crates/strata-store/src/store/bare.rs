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

    /// [`Store::create_bare`] for a caller that names the layer in the transaction that
    /// records it: `name` runs in that transaction (writing rows of its own, say
    /// containerd's snapshot) and returns the layer's ID and what else it made; the
    /// layer is staged under `provisional` (a name for messages only). A failure after
    /// `name` ran takes the layer's row back, not the caller's: the caller drops those.
    pub(crate) fn create_bare_named<T>(
        &self,
        provisional: &LayerId,
        parent: Option<&LayerId>,
        name: impl FnOnce(&Tx<'_>) -> Result<(LayerId, T)>,
    ) -> Result<(LayerId, T)> {
        let options = CreateOptions {
            writable: true,
            ..CreateOptions::default()
        };
        // The provisional name is no layer's: only the parent is checked here, the ID in
        // the transaction.
        let chain = self.read(|tx| self.check_parent(tx, provisional, parent))?;
        let (staging, mut row, _lock) =
            self.stage_dirs(provisional, parent, &options, State::Writable, None, &chain)?;
        self.commit_layer_with(staging, &mut row, State::Writable, |tx, row| {
            let (id, named) = name(tx)?;
            row.id = id.clone();
            Ok((id, named))
        })
    }
}

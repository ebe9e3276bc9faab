//! Reading a session without a session token: from this node, or from its
//! peers when this node lacks it.

use super::Node;
use crate::engine::{Loaded, SessionView};
use crate::{Error, SessionId};

impl Node {
    /// The live session `id`, or `None` when it is unknown, expired,
    /// invalidated or rotated. An id this node has never seen is first asked
    /// of the connected peers (bounded by the fetch timeout). Counts as an
    /// access: when this node's last-access register is older than the
    /// touch interval, it is advanced (one small persisted write).
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the document cannot be read or the touch cannot
    /// be persisted; [`Error::Shutdown`].
    pub async fn load(&self, id: &SessionId) -> Result<Option<SessionView>, Error> {
        self.load_gated(id, &|| true).await
    }

    /// [`load`](Self::load), asking the peers for an id this node lacks
    /// only when `may_fetch()` says so (the HTTP layer's per-client limit).
    #[tracing::instrument(name = "session.load", level = "debug", skip_all, fields(session = %id.doc_key().short()))]
    pub(crate) async fn load_gated(
        &self,
        id: &SessionId,
        may_fetch: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<Option<SessionView>, Error> {
        let key = id.doc_key();
        let (found, pushes) = self.run(|e| e.load(key, None))?;
        self.push(pushes, false).await?;
        match (found, self.replicator()) {
            (Loaded::Live(view) | Loaded::Behind(view), _) => Ok(Some(view)),
            (Loaded::Missing | Loaded::Expired, Some(repl)) if may_fetch() => {
                repl.fetch(key).await;
                let (found, pushes) = self.run(|e| e.load(key, None))?;
                self.push(pushes, false).await?;
                Ok(match found {
                    Loaded::Live(view) | Loaded::Behind(view) => Some(view),
                    _ => None,
                })
            }
            (Loaded::Gone | Loaded::Missing | Loaded::Expired, _) => Ok(None),
        }
    }
}

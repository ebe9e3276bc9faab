//! Transient attributes: values a session keeps on the node that set them
//! only — never written to disk, never replicated, so they may be any Rust
//! value (a connection, a parsed token, a cache). They are gone after a
//! failover to another node, a restart, or when the node needs room (it
//! keeps those of its 100,000 most recently used sessions): read them as a
//! cache that may be empty, never as the only copy of something.

use std::any::Any;
use std::sync::Arc;

use super::Session;
use crate::Error;

impl Session {
    /// Keeps `value` under `name` for this session, on this node only (see
    /// the module docs: it is lost on failover). Starts a session if there
    /// is none, as [`insert`](Self::insert) does; follows the session
    /// through [`cycle_id`](Self::cycle_id) and ends with it.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use sessionmesh::http::Session;
    ///
    /// struct Cart(Vec<u64>); // not serializable: fine
    ///
    /// async fn add(session: Session) -> Result<usize, sessionmesh::Error> {
    ///     let cart = session.transient::<Arc<Cart>>("cart").await?;
    ///     let mut items = cart.map(|c| c.0.clone()).unwrap_or_default();
    ///     items.push(7);
    ///     let n = items.len();
    ///     session.set_transient("cart", Arc::new(Cart(items))).await?;
    ///     Ok(n)
    /// }
    /// ```
    pub async fn set_transient<T: Any + Send + Sync>(
        &self,
        name: &str,
        value: T,
    ) -> Result<(), Error> {
        self.put_transient(name, Some(Arc::new(value))).await
    }

    /// The transient value `name` of this session on this node, if it holds
    /// one of type `T`.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn transient<T: Any + Clone>(&self, name: &str) -> Result<Option<T>, Error> {
        self.ensure_loaded().await?;
        let st = self.state();
        if let Some((_, value)) = st.transients.iter().rev().find(|(n, _)| n == name) {
            return Ok(value.as_ref().and_then(|v| v.downcast_ref::<T>().cloned()));
        }
        let (Some(id), false) = (st.id, st.is_new) else {
            return Ok(None);
        };
        let value = self.inner.node.transients().get(id.doc_key(), name);
        Ok(value.and_then(|v| v.downcast_ref::<T>().cloned()))
    }

    /// Removes the transient value `name` of this session.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the session cannot be read.
    pub async fn remove_transient(&self, name: &str) -> Result<(), Error> {
        self.put_transient(name, None).await
    }

    async fn put_transient(
        &self,
        name: &str,
        value: Option<super::TransientValue>,
    ) -> Result<(), Error> {
        self.ensure_loaded().await?;
        let mut st = self.state();
        if value.is_some() {
            self.begin_write(&mut st);
        }
        match (st.id, st.is_new, st.rotate_to) {
            // The session is stored under this id and stays there: at once.
            (Some(id), false, None) => self.inner.node.transients().set(id.doc_key(), name, value),
            // Until the request's commit says under which id it lives.
            (Some(_), _, _) => st.transients.push((name.to_owned(), value)),
            (None, _, _) => {}
        }
        Ok(())
    }

    /// After a commit: the transient values kept for it go under `id`,
    /// those of the rotated-away id `from` with them.
    pub(super) fn settle_transients(&self, from: Option<crate::SessionId>, id: crate::SessionId) {
        let pending = std::mem::take(&mut self.state().transients);
        let transients = self.inner.node.transients();
        if let Some(from) = from {
            transients.rename(from.doc_key(), id.doc_key());
        }
        for (name, value) in pending {
            transients.set(id.doc_key(), &name, value);
        }
    }

    /// The session ended: its transient values go.
    pub(super) fn end_transients(&self, id: Option<crate::SessionId>) {
        self.state().transients.clear();
        if let Some(id) = id {
            self.inner.node.transients().end(id.doc_key());
        }
    }
}

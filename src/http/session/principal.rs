//! The principal (the user) a session belongs to, for "log out everywhere"
//! ([`Node::invalidate_all_of`](crate::Node::invalidate_all_of)).

use super::Session;
use crate::{Error, PRINCIPAL_ATTRIBUTE};

impl Session {
    /// Records that this session belongs to `principal` (e.g. a user id),
    /// so that [`Node::sessions_of`](crate::Node::sessions_of) finds it and
    /// [`Node::invalidate_all_of`](crate::Node::invalidate_all_of) ends it,
    /// on any node. It is the attribute [`PRINCIPAL_ATTRIBUTE`], replicated
    /// and carried through [`cycle_id`](Self::cycle_id) like any other (and
    /// listed by [`entries`](Self::entries)).
    ///
    /// # Errors
    ///
    /// As [`insert`](Self::insert).
    ///
    /// # Examples
    ///
    /// ```
    /// use sessionmesh::http::Session;
    ///
    /// async fn login(session: Session) -> Result<&'static str, sessionmesh::Error> {
    ///     session.cycle_id().await?;
    ///     session.set_principal("user-42").await?;
    ///     Ok("welcome")
    /// }
    /// ```
    pub async fn set_principal(&self, principal: &str) -> Result<(), Error> {
        self.insert(PRINCIPAL_ATTRIBUTE, principal).await
    }

    /// The principal this session belongs to, if one was set.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn principal(&self) -> Result<Option<String>, Error> {
        self.get(PRINCIPAL_ATTRIBUTE).await
    }
}

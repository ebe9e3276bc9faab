use std::collections::BTreeMap;

use super::{Error, ExpiryMode, SessionDoc, Status};
use crate::clock::Millis;

/// Everything a request needs from a document, read out once after each
/// change, so that serving a session reads no automerge data at all.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Summary {
    /// Every attribute (a counter reads as its total).
    pub attributes: BTreeMap<String, serde_json::Value>,
    /// How the cookie expires.
    pub expiry: ExpiryMode,
    /// Idle timeout in ms (0 = none).
    pub max_idle_ms: u64,
    /// Absolute deadline in ms since the epoch (0 = none).
    pub absolute_expiry_ms: Millis,
    /// The last access any node recorded.
    pub last_access: Option<Millis>,
    /// When the session expires unless accessed again.
    pub deadline: Option<Millis>,
    /// `Invalidated` or `Rotated` once the session has ended for good.
    pub ended: Option<Status>,
}

impl Summary {
    /// Liveness at `now`; the same answer as [`SessionDoc::status`].
    #[must_use]
    pub fn status(&self, now: Millis) -> Status {
        if let Some(ended) = self.ended {
            return ended;
        }
        match self.deadline {
            None => Status::Empty,
            Some(d) if now > d => Status::Expired,
            Some(_) => Status::Live,
        }
    }
}

impl SessionDoc {
    /// Reads the [`Summary`] out of the document.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a foreign attribute value.
    pub fn summary(&self) -> Result<Summary, Error> {
        let ended = match self.status(0) {
            s @ (Status::Invalidated | Status::Rotated(_)) => Some(s),
            _ => None,
        };
        Ok(Summary {
            attributes: self.attributes()?,
            expiry: self.expiry_mode(),
            max_idle_ms: self.max_idle_ms(),
            absolute_expiry_ms: self.absolute_expiry_ms(),
            last_access: self.last_access(),
            deadline: self.deadline(),
            ended,
        })
    }
}

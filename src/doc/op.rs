/// How a session's cookie expires; the server-side timeouts travel next to
/// it in `meta/max_idle` and `meta/absolute_expiry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryMode {
    /// A browser-session cookie (no `Max-Age`).
    SessionEnd,
    /// `Max-Age` = the idle timeout, refreshed whenever the cookie is sent.
    Inactivity,
    /// `Expires` = the absolute deadline.
    AtDateTime,
}

impl ExpiryMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SessionEnd => "session-end",
            Self::Inactivity => "inactivity",
            Self::AtDateTime => "at",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "session-end" => Some(Self::SessionEnd),
            "inactivity" => Some(Self::Inactivity),
            "at" => Some(Self::AtDateTime),
            _ => None,
        }
    }
}

/// One recorded change to a session. A request records operations while the
/// handler runs; at the end they are applied to the *latest* document under
/// its lock and become one automerge commit, so two requests on one session
/// merge instead of overwriting each other.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Set an attribute to a JSON value (already serialized, so the caller
    /// sees a serialization failure at the call site).
    Insert {
        /// The attribute.
        key: String,
        /// JSON text of the value.
        json: String,
    },
    /// Remove an attribute (a plain value or a counter).
    Remove {
        /// The attribute.
        key: String,
    },
    /// Add `by` to a counter attribute, creating it at 0 when missing.
    Increment {
        /// The attribute.
        key: String,
        /// The amount, possibly negative.
        by: i64,
    },
    /// Remove every attribute.
    Clear,
    /// Change the timeouts. `0` means "none".
    SetExpiry {
        /// How the cookie expires.
        mode: ExpiryMode,
        /// Idle timeout in ms.
        max_idle_ms: u64,
        /// Absolute deadline in ms since the epoch.
        absolute_ms: u64,
    },
    /// Kill the session everywhere; wins over every concurrent write.
    Invalidate,
}

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

/// `ops` without the ones a later op in the same list undoes: an insert,
/// removal or increment of a key that is later set or removed, anything
/// before a clear, all but the last expiry. The document ends in the same
/// state, but the commit no longer carries a value per overwrite (a
/// handler setting a large value twenty times would otherwise make one
/// change of twenty values, too large to replicate).
#[must_use]
pub fn coalesce(ops: &[Op]) -> Vec<Op> {
    let mut kept = Vec::with_capacity(ops.len());
    let mut set_later: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let (mut cleared, mut expiry_later) = (false, false);
    for op in ops.iter().rev() {
        let keep = match op {
            Op::Insert { key, .. } | Op::Remove { key } => {
                !cleared && set_later.insert(key.as_str())
            }
            // An earlier value stays: it is what the increment adds to.
            Op::Increment { key, .. } => !cleared && !set_later.contains(key.as_str()),
            Op::Clear => !std::mem::replace(&mut cleared, true),
            Op::SetExpiry { .. } => !std::mem::replace(&mut expiry_later, true),
            Op::Invalidate => true,
        };
        if keep {
            kept.push(op.clone());
        }
    }
    kept.reverse();
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, json: &str) -> Op {
        Op::Insert {
            key: key.into(),
            json: json.into(),
        }
    }

    fn incr(key: &str, by: i64) -> Op {
        Op::Increment {
            key: key.into(),
            by,
        }
    }

    #[test]
    fn overwritten_and_cleared_ops_go_the_rest_stays_in_order() {
        let ops = [
            set("gone", "1"),
            Op::Clear,
            set("a", "1"),
            incr("a", 2),
            set("b", "\"big\""),
            set("b", "\"bigger\""),
            incr("c", 1),
            Op::Remove { key: "c".into() },
            incr("d", 1),
            incr("d", 1),
        ];
        assert_eq!(
            coalesce(&ops),
            vec![
                Op::Clear,
                set("a", "1"),
                incr("a", 2),
                set("b", "\"bigger\""),
                Op::Remove { key: "c".into() },
                incr("d", 1),
                incr("d", 1),
            ]
        );
    }
}

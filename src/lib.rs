//! sessionmesh
pub mod clock;
pub mod doc;
pub mod id;
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use id::{DocKey, NodeId, SessionId};

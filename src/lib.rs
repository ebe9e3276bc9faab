//! sessionmesh
pub mod clock;
pub mod doc;
mod error;
pub mod http;
pub mod id;
mod node;
pub mod store;
pub use clock::{Clock, ManualClock, Millis, SystemClock};
pub use error::Error;
pub use id::{DocKey, NodeId, SessionId};
pub use node::{Config, Node, SessionView, SweepReport};
pub use store::Durability;

//! Test support, behind the `testing` cargo feature: not part of the stable
//! API, and not for production builds. It lets a test open a node whose
//! storage fails on purpose, and exposes the internals the property tests
//! and benchmarks of this repository drive directly (the session document,
//! its summary, the wire codec).

use crate::store::{Faulty, Storage};
pub use crate::store::{StorageFaults, WriteKind};
use crate::{Config, Error, Node};

/// Opens a node like [`Node::open`] whose storage obeys `faults`: a write
/// can be made to fail, or every write after a crash point to be lost while
/// the node keeps running (drop the node afterwards and open the directory
/// again to see what a power loss would have left).
///
/// # Examples
///
/// ```
/// use sessionmesh::testing::{open_with_faults, StorageFaults, WriteKind};
/// use sessionmesh::{doc::Op, Config, SessionId};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), sessionmesh::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let faults = StorageFaults::new();
/// let node = open_with_faults(Config::new(dir.path()), &faults).await?;
/// faults.fail_next(WriteKind::Append);
/// assert!(node.create(&SessionId::random(), &[]).await.is_err());
/// node.shutdown().await
/// # }
/// ```
///
/// # Errors
///
/// As [`Node::open`].
pub async fn open_with_faults(config: Config, faults: &StorageFaults) -> Result<Node, Error> {
    let faults = faults.clone();
    let wrap = Box::new(move |store: Box<dyn Storage>| -> Box<dyn Storage> {
        Box::new(Faulty::new(store, faults))
    });
    Node::open_with(config, Some(wrap)).await
}

/// Every lineage (generation, base, canonical or not, attributes) of the
/// session `id` that `node` holds, as text: for diagnosing a failed test.
///
/// # Errors
///
/// As a load.
pub fn describe(node: &Node, id: &crate::SessionId) -> Result<String, Error> {
    node.engine_for_tests().describe(id.doc_key())
}

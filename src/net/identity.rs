//! This node's libp2p identity (an ed25519 keypair), kept in a file of the
//! data directory so a restarted node keeps its peer id. The file is
//! written once, to a temporary name first and then renamed, and is
//! readable by its owner only.

use std::fs;
use std::io;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::store::write_private_file;

/// The keypair stored at `path`, created on first use.
///
/// # Errors
///
/// The I/O error of reading or writing the file; `InvalidData` when the
/// file holds something else than a keypair.
pub(crate) fn load_or_create_identity(path: &Path) -> io::Result<Keypair> {
    match fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            write_private_file(path, &bytes)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity");
        let first = load_or_create_identity(&path).unwrap();
        let again = load_or_create_identity(&path).unwrap();
        assert_eq!(first.public(), again.public());
        fs::write(&path, b"not a key").unwrap();
        let err = load_or_create_identity(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

//! This node's libp2p identity (an ed25519 keypair), kept in the data
//! directory as `p2p-identity` so a restarted node keeps its peer id. The
//! file is written once, to a temporary name first and then renamed, and is
//! readable by its owner only.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use libp2p::identity::Keypair;

const FILE: &str = "p2p-identity";

/// The keypair stored in `dir`, created on first use.
///
/// # Errors
///
/// The I/O error of reading or writing the file; `InvalidData` when the
/// file holds something else than a keypair.
pub(crate) fn load_or_create_identity(dir: &Path) -> io::Result<Keypair> {
    let path = dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let tmp = dir.join(format!("{FILE}.tmp"));
            let mut file = private_file(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(dir)?.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> io::Result<fs::File> {
    fs::File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_identity(dir.path()).unwrap();
        let again = load_or_create_identity(dir.path()).unwrap();
        assert_eq!(first.public(), again.public());
        fs::write(dir.path().join(FILE), b"not a key").unwrap();
        let err = load_or_create_identity(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}

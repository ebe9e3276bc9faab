//! The principal index: which sessions may belong to a principal (a user),
//! for "log out everywhere". An entry is written before the document that
//! names the principal is persisted, and never in the same batch, so the
//! index is a superset of what the documents say; readers check each
//! session and drop the entries that no longer hold.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use super::db::{Db, PRINCIPALS};
use super::Error;
use crate::id::{DocKey, ID_LEN};

/// The index's name for a principal: a fixed-length hash of it.
pub(crate) type PrincipalKey = [u8; 16];

impl Db {
    pub(super) fn put_principal(&self, principal: &PrincipalKey, key: DocKey) -> Result<(), Error> {
        let mut k = principal.to_vec();
        k.extend_from_slice(key.as_bytes());
        let mut wb = WriteBatch::default();
        wb.put_cf(self.cf(PRINCIPALS)?, k, []);
        self.db.write_opt(wb, &self.write_opts)?;
        Ok(())
    }

    pub(super) fn keys_of(&self, principal: &PrincipalKey) -> Result<Vec<DocKey>, Error> {
        let cf = self.cf(PRINCIPALS)?;
        let mut keys = Vec::new();
        let iter = self
            .db
            .iterator_cf(cf, IteratorMode::From(principal, Direction::Forward));
        for item in iter {
            let (k, _) = item?;
            let Some(rest) = k.strip_prefix(principal.as_slice()) else {
                break;
            };
            let key: [u8; ID_LEN] = rest
                .try_into()
                .map_err(|_| Error::Corrupt("principal index key".into()))?;
            keys.push(DocKey::from_array(key));
        }
        Ok(keys)
    }

    pub(super) fn delete_principal(
        &self,
        principal: &PrincipalKey,
        key: DocKey,
    ) -> Result<(), Error> {
        let mut k = principal.to_vec();
        k.extend_from_slice(key.as_bytes());
        self.db
            .delete_cf_opt(self.cf(PRINCIPALS)?, k, &self.write_opts)?;
        Ok(())
    }
}

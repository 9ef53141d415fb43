//! A consistent copy of a live SQLite database.

use std::path::Path;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::{Store, StoreError};

impl Store {
    /// Writes a consistent copy of the SQLite database to `target` (which must not exist) with
    /// `VACUUM INTO`: SQLite's own online copy, taken in one read transaction, so writers carry
    /// on and the copy is the database as of one moment (not a file copy, which a concurrent
    /// write or the WAL would leave torn). PostgreSQL has its own tools (`docs/deploy.md`).
    pub async fn copy_sqlite_into(&self, target: &Path) -> Result<(), StoreError> {
        if self.backend() != DbBackend::Sqlite {
            return Err(StoreError::FailedPrecondition(
                "backup copies the embedded SQLite database; back PostgreSQL up with pg_dump or \
                 its continuous archiving (docs/deploy.md)"
                    .to_owned(),
            ));
        }
        let target = target.to_str().ok_or_else(|| {
            StoreError::InvalidArgument(format!(
                "backup path {} is not valid UTF-8",
                target.display()
            ))
        })?;
        self.db
            .execute_raw(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "VACUUM INTO ?",
                [target.into()],
            ))
            .await
            .map_err(|error: DbErr| StoreError::Internal(error))?;
        Ok(())
    }
}

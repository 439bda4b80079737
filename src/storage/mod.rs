//! Durable state: the SQLite catalogue and the redb page store (blob stores join them with the
//! file cache). Nothing above `cache/` touches these types' databases directly.

pub mod blob;
pub mod browse;
pub mod bundle;
pub mod catalogue;
pub mod data_dir;
pub mod pages;
pub mod policy_rules;
pub mod records;

pub use catalogue::Catalogue;
pub use pages::PageStore;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("catalogue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("page database: {0}")]
    Redb(#[from] redb::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

// redb reports each operation's failure as its own type; all mean "the page database failed".
macro_rules! redb_error_from {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StorageError {
            fn from(err: $ty) -> Self {
                StorageError::Redb(err.into())
            }
        }
    )*};
}
redb_error_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CompactionError
);

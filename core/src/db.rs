//! One way to turn redb's error types into a crate's own database error.
//!
//! redb has a distinct error type per operation (opening, a transaction, a table, storage, a
//! commit). Each store keeps them behind one variant of its own error, with the message, so that
//! callers match on the store's error and never on redb's.

/// Implements `From<E>` for `$error` for each redb error type `E`, through `$variant(String)`.
///
/// ```ignore
/// d402_core::db_error_from!(StoreError::Database);
/// ```
#[macro_export]
macro_rules! db_error_from {
    ($error:ident :: $variant:ident) => {
        $crate::db_error_from!(
            $error::$variant,
            redb::DatabaseError,
            redb::TransactionError,
            redb::TableError,
            redb::StorageError,
            redb::CommitError
        );
    };
    ($error:ident :: $variant:ident, $($t:ty),+) => {$(
        impl From<$t> for $error {
            fn from(e: $t) -> Self {
                $error::$variant(e.to_string())
            }
        }
    )+};
}

//! SQLite's online backup: taken while a writer commits, the copy is a database of its own
//! at one revision, which a store opens with every key of that revision.

use std::sync::Arc;

use store::sqlite::{SqliteOptions, SqliteStore};
use store::{BackupFormat, RangeRequest, Store, StoreExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_writes_is_one_revision_of_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<SqliteStore> =
        SqliteStore::open(&dir.path().join("m.db"), SqliteOptions::default())
            .await
            .expect("open");
    for i in 0..100 {
        store
            .put(&format!("/k/{i:04}"), b"v".to_vec())
            .await
            .expect("put");
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 100..600 {
                store
                    .put(&format!("/k/{i:04}"), b"v".to_vec())
                    .await
                    .expect("put");
            }
        })
    };
    let dest = dir.path().join("copy.db");
    let taken = store.backup(&dest).await.expect("backup");
    writer.await.expect("writer");
    assert_eq!(taken.format, BackupFormat::Sqlite);
    assert!(taken.revision >= 100, "{taken:?}");
    assert_eq!(
        taken.bytes,
        std::fs::metadata(&dest).expect("the file").len()
    );
    // A second backup to the same file is refused.
    assert!(
        store.backup(&dest).await.is_err(),
        "an existing file is not overwritten"
    );

    let copy = SqliteStore::open(&dest, SqliteOptions::default())
        .await
        .expect("the copy opens as a store");
    assert_eq!(
        copy.current_revision().await.expect("revision"),
        taken.revision
    );
    let keys = copy
        .range(RangeRequest {
            prefix: "/k/".into(),
            ..RangeRequest::default()
        })
        .await
        .expect("range");
    // One put per revision: exactly the keys written up to the backup's revision.
    assert_eq!(
        keys.kvs.len() as i64,
        taken.revision,
        "one consistent revision"
    );
}

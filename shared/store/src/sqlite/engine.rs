//! The writer thread (group commit) and the read pool; see the module docs of `sqlite`.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};
use tracing::{debug, error, trace, warn};

use super::{BACKEND, READ_CONNECTIONS, absolute, connect, db, schema};
use crate::error::StoreError;

/// Most jobs one transaction takes: a bound on how long the first of them waits for its answer
/// behind the others.
const MAX_BATCH: usize = 256;

/// Why a whole batch was not committed: every job of it that had succeeded is answered with
/// this as the source of a [`StoreError::Unavailable`] (nothing of the batch was kept).
#[derive(Debug, Clone)]
pub(super) struct BatchFailed(Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the write batch was not committed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl BatchFailed {
    fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(e))
    }
}

/// Why a transaction ended under the writer without a COMMIT.
#[derive(Debug, thiserror::Error)]
#[error(
    "the transaction was rolled back by SQLite while a job ran (e.g. a full disk or I/O error)"
)]
struct TransactionLost;

/// A job of the writer thread: runs inside its savepoint, then is answered once the batch's
/// fate is known.
trait Job: Send {
    /// Runs the work; `true` when it failed (its savepoint is rolled back).
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller: its own result when the batch committed (or when it failed on its
    /// own), the batch's failure otherwise.
    fn answer(self: Box<Self>, failure: Option<&BatchFailed>);
}

struct Pending<F, T, E> {
    operation: &'static str,
    work: Option<F>,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for Pending<F, T, E>
where
    F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send,
    T: Send,
    E: From<StoreError> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let Some(work) = self.work.take() else {
            return true;
        };
        let result = work(tx);
        let failed = result.is_err();
        self.result = Some(result);
        failed
    }

    fn answer(self: Box<Self>, failure: Option<&BatchFailed>) {
        let operation = self.operation;
        let answer = match (self.result, failure) {
            // A job that failed kept nothing whatever the batch did: its own error stands.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), None) => Ok(value),
            (_, Some(failure)) => Err(E::from(StoreError::unavailable(
                BACKEND,
                operation,
                failure.clone(),
            ))),
            (None, None) => Err(E::from(StoreError::unavailable(
                BACKEND,
                operation,
                "the write job panicked",
            ))),
        };
        // The caller may have gone away (a cancelled request): the write stands regardless.
        let _ = self.reply.send(answer);
    }
}

/// The shared handle of one opened database: its writer thread's queue and the read pool.
#[derive(Clone)]
pub(super) struct Handle(Arc<Shared>);

struct Shared {
    path: PathBuf,
    jobs: mpsc::Sender<Box<dyn Job>>,
    readers: Arc<Readers>,
    stats: Arc<Counters>,
}

/// What the writer thread has committed, counted as it goes.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
}

/// What one handle's writer thread has committed since it was opened (for tests and
/// diagnostics: `writes / batches` is how many writes shared each fsync).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteStats {
    /// Transactions committed.
    pub batches: u64,
    /// Write jobs answered from committed transactions (failed jobs included: they were
    /// answered only after their batch committed).
    pub writes: u64,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteHandle")
            .field("path", &self.0.path)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Blocking: creates the directories and the file, sets the PRAGMAs, migrates the schema and
    /// starts the writer thread.
    pub(super) fn open(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError::unavailable(BACKEND, "create database directory", e))?;
        }
        let path = absolute(path);
        let mut conn = connect(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL: readers see the last commit beside the writer. FULL: the WAL is fsynced at every
        // commit, so an acknowledged write survives a power loss (see the module docs).
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db("set journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::unavailable(
                BACKEND,
                "set journal mode",
                format!("the database stays in journal mode {mode:?}, not WAL"),
            ));
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db("set synchronous"))?;
        schema::migrate(&mut conn)?;
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let thread_path = path.clone();
        let stats = Arc::new(Counters::default());
        let counters = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("dlab-sqlite-writer".to_owned())
            .spawn(move || run_writer(conn, queue, &thread_path, &counters))
            .map_err(|e| StoreError::unavailable(BACKEND, "start writer thread", e))?;
        Ok(Self(Arc::new(Shared {
            readers: Arc::new(Readers {
                path: path.clone(),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(READ_CONNECTIONS)),
            }),
            path,
            jobs,
            stats,
        })))
    }

    /// What the writer thread has committed so far.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.0.stats.batches.load(Ordering::Relaxed),
            writes: self.0.stats.writes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.0.path
    }

    /// Runs `work` on the writer thread inside its own savepoint of the next batch; answers
    /// once the batch is committed (durable), with `work`'s result.
    pub(super) async fn write<T, E, F>(&self, operation: &'static str, work: F) -> Result<T, E>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            operation,
            work: Some(work),
            result: None,
            reply,
        });
        self.0.jobs.send(job).map_err(|_| {
            E::from(StoreError::unavailable(
                BACKEND,
                operation,
                "the writer thread has stopped",
            ))
        })?;
        answer.await.map_err(|_| {
            E::from(StoreError::unavailable(
                BACKEND,
                operation,
                "the writer thread dropped the write",
            ))
        })?
    }

    /// Runs `work` on a read-only connection, on the blocking pool.
    pub(super) async fn read<T, E, F>(&self, operation: &'static str, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.0.readers.run(operation, work).await
    }
}

/// The writer thread: batches, savepoints, one COMMIT, then the answers. Ends when every
/// handle is dropped (the queue closes); the connection closes with it.
fn run_writer(
    mut conn: Connection,
    queue: mpsc::Receiver<Box<dyn Job>>,
    path: &Path,
    counters: &Counters,
) {
    debug!(path = %path.display(), "sqlite writer started");
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, batch, counters);
    }
    debug!(path = %path.display(), "sqlite writer stopped: every handle was dropped");
}

/// Runs one batch in one transaction, then answers its jobs (counted first, so a caller that
/// got its answer sees its write in [`WriteStats`]).
fn commit_batch(conn: &mut Connection, mut batch: Vec<Box<dyn Job>>, counters: &Counters) {
    let started = Instant::now();
    let jobs = batch.len();
    if !conn.is_autocommit() {
        // A failed COMMIT whose rollback also failed (an I/O error) leaves the connection
        // inside a transaction, and every later BEGIN would fail for good: end it first.
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            warn!(error = %e, "sqlite writer could not end a transaction left open");
        }
    }
    let failure = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Err(e) => {
            warn!(jobs, error = %e, "sqlite write batch could not begin");
            Some(BatchFailed::new(e))
        }
        Ok(tx) => {
            let mut failed_jobs = 0usize;
            let mut lost = None;
            for job in &mut batch {
                if let Err(e) = tx.execute_batch("SAVEPOINT job") {
                    lost = Some(BatchFailed::new(e));
                    break;
                }
                let failed = catch_unwind(AssertUnwindSafe(|| job.run(&tx))).unwrap_or_else(|_| {
                    error!("a sqlite write job panicked; its savepoint is rolled back");
                    true
                });
                if tx.is_autocommit() {
                    // The job's error made SQLite roll the whole transaction back.
                    lost = Some(BatchFailed::new(TransactionLost));
                    break;
                }
                failed_jobs += usize::from(failed);
                let end = if failed {
                    "ROLLBACK TO job; RELEASE job"
                } else {
                    "RELEASE job"
                };
                if let Err(e) = tx.execute_batch(end) {
                    lost = Some(BatchFailed::new(e));
                    break;
                }
            }
            match lost {
                Some(lost) => {
                    warn!(jobs, error = %lost.0, "sqlite write batch rolled back");
                    drop(tx);
                    Some(lost)
                }
                None => match tx.commit() {
                    Ok(()) => {
                        trace!(
                            jobs,
                            failed_jobs,
                            micros = started.elapsed().as_micros() as u64,
                            "sqlite write batch committed"
                        );
                        None
                    }
                    Err(e) => {
                        warn!(jobs, error = %e, "sqlite write batch commit failed");
                        Some(BatchFailed::new(e))
                    }
                },
            }
        }
    };
    if failure.is_none() {
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(jobs as u64, Ordering::Relaxed);
    }
    for job in batch {
        job.answer(failure.as_ref());
    }
}

/// Read-only connections, opened on demand and kept for the next read; the semaphore bounds how
/// many reads run (and how many connections exist) at once.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    async fn run<T, E, F>(self: &Arc<Self>, operation: &'static str, work: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| E::from(StoreError::unavailable(BACKEND, operation, e)))?;
        let readers = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = readers.take().map_err(E::from)?;
            let result = work(&conn);
            readers.give_back(conn);
            result
        })
        .await
        .map_err(|e| E::from(StoreError::unavailable(BACKEND, operation, e)))?
    }

    fn take(&self) -> Result<Connection, StoreError> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(conn);
        }
        connect(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < READ_CONNECTIONS {
            idle.push(conn);
        }
    }
}

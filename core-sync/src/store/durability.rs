//! How hard the local store works to keep a commit through a crash of the
//! process, of the operating system, or a power cut (see the store's
//! module docs and ARCHITECTURE.md, "Durability").

use std::sync::atomic::Ordering;

use sqlx::SqliteConnection;

use super::{Origin, Store, StoreResult};

/// How hard a commit works to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// No fsync (`synchronous=NORMAL`): survives a crash or kill of the
    /// process; the last commits may be lost on power loss or an OS crash.
    Normal,
    /// The default: every commit of a local edit is fsynced before it is
    /// acknowledged (`synchronous=FULL`), so it survives power loss too.
    /// An edit comes at human speed and the fsync costs well under a
    /// frame (`cargo bench -p core-sync --bench store`). Changes pulled
    /// from the server commit without it ([`Store::commit_level`]).
    #[default]
    Full,
}

impl Store {
    /// Sets how the writer's next commits reach the disk, for changes from
    /// `origin`: under [`Durability::Full`], local edits are fsynced (they
    /// exist nowhere else) and changes pulled from the server are not (it
    /// holds them durably). A power cut can then lose only the commits
    /// after the last fsync, a prefix-closed tail (SQLite's WAL recovery
    /// stops at the first frame that did not reach the disk): pulled
    /// chunks, and the feed cursor that covers them, which the next sync
    /// fetches again. Every local edit's fsync also makes everything
    /// committed before it durable. Call holding the writer.
    pub(super) async fn commit_level(
        &self,
        writer: &mut SqliteConnection,
        origin: Origin,
    ) -> StoreResult<()> {
        if self.options.durability != Durability::Full {
            return Ok(());
        }
        let relax = origin == Origin::Server;
        if self.relaxed.load(Ordering::Relaxed) != relax {
            let pragma = if relax {
                "PRAGMA synchronous = NORMAL"
            } else {
                "PRAGMA synchronous = FULL"
            };
            sqlx::query(pragma).execute(&mut *writer).await?;
            self.relaxed.store(relax, Ordering::Relaxed);
        }
        Ok(())
    }
}

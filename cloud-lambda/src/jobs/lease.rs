//! The lease a run holds on its operation, so a job runs once across
//! processes sharing a store (see `storage::jobs`): taken before anything
//! else ([`Jobs::run`](super::Jobs::run)), renewed every third of its
//! duration while the job runs, given up when it ends. A run that cannot
//! renew in time stops before its lease runs out, since another runner
//! may take it over from then on.

use std::time::Duration;

use core_sync::now_millis;

use super::Jobs;
use crate::storage::jobs::Operation;

/// Milliseconds of a duration, for lease expiries.
pub(super) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Jobs {
    /// A fresh owner id for one run: this process's instance id and the
    /// run's own, so two runs in one process never share a lease either.
    pub(super) fn new_owner(&self) -> String {
        format!(
            "{}/{}",
            self.instance,
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )
    }

    /// Renews `owner`'s lease of `op` (held until `expires_at`) every third
    /// of the lease's duration. Returns only when the lease is lost: taken
    /// over, or not renewed before it would run out.
    pub(super) async fn keep_lease(&self, op: &Operation, owner: &str, mut expires_at: i64) {
        let duration = millis(self.config.lease);
        let every = self.config.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            let next = now_millis().saturating_add(duration);
            match self.ops.renew_lease(&op.user, &op.id, owner, next).await {
                Ok(true) => expires_at = next,
                Ok(false) => {
                    tracing::warn!(op = %op.id, "the lease was taken over; this run stops");
                    return;
                }
                Err(e) => {
                    // Stop while the lease still holds: past it, another
                    // runner may start the job.
                    if now_millis().saturating_add(millis(every)) >= expires_at {
                        tracing::error!(op = %op.id, error = %e, "cannot renew the lease in time; this run stops");
                        return;
                    }
                    tracing::warn!(op = %op.id, error = %e, "cannot renew the lease yet");
                }
            }
        }
    }
}

//! [`Scripted`], a transport that answers from a script: for regression
//! tests that need one exact sequence of server responses.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use core_sync::sync::client::{SyncError, Transport};
use core_sync::sync::protocol::{PushOutcome, PushStatus, SyncRequest, SyncResponse};

/// A transport that answers from a script, keeping the requests.
#[derive(Clone, Default)]
pub(crate) struct Scripted {
    pub(crate) responses: Arc<Mutex<Vec<SyncResponse>>>,
    pub(crate) requests: Arc<Mutex<Vec<SyncRequest>>>,
}

#[async_trait]
impl Transport for Scripted {
    async fn sync(
        &self,
        req: &SyncRequest,
        _token: &str,
    ) -> Result<(SyncResponse, usize), SyncError> {
        self.requests.lock().unwrap().push(req.clone());
        let mut resp = self.responses.lock().unwrap().remove(0);
        resp.pushed = req
            .push
            .iter()
            .map(|p| PushOutcome {
                doc_id: p.doc_id.clone(),
                status: PushStatus::Accepted,
                server_heads: resp
                    .docs
                    .first()
                    .map(|d| d.server_heads.clone())
                    .unwrap_or_default(),
            })
            .collect();
        Ok((resp, 0))
    }
}

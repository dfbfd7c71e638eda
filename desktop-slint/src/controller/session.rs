//! The sign-in and sync part of the status bar: what the link says about
//! the session, and a refused token (a server answering 401) offering a
//! sign-in again.

use core_sync::model::Millis;
use core_sync::sync::engine::SyncStatus;
use time::UtcOffset;

use super::ports::SessionState;
use super::protocol::ViewUpdate;
use crate::viewmodel::{self, SessionVm};

#[derive(Default)]
pub struct SessionView {
    state: SessionState,
    token_refused: bool,
}

impl SessionView {
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    pub fn browser(&self) -> bool {
        self.state.browser
    }

    fn update(&self) -> ViewUpdate {
        let s = &self.state;
        ViewUpdate::Session(SessionVm {
            offer_sign_in: s.needs_sign_in || (self.token_refused && !s.browser),
            browser: s.browser,
            waiting: s.waiting,
            user: s.user.clone().unwrap_or_default(),
            can_sign_out: s.can_sign_out,
            paused: s.paused,
            syncs: s.syncs,
        })
    }

    /// The sync line, and the sign-in offer when the server refused the
    /// token.
    pub fn on_status(&mut self, s: &SyncStatus, now: Millis, offset: UtcOffset) -> Vec<ViewUpdate> {
        let mut updates = vec![ViewUpdate::Sync(viewmodel::sync_vm(s, now, offset))];
        let refused = s
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("answered 401"));
        if refused != self.token_refused {
            self.token_refused = refused;
            updates.push(self.update());
        }
        updates
    }

    pub fn on_session(&mut self, s: SessionState) -> Vec<ViewUpdate> {
        self.token_refused = false;
        let server = s.server.clone();
        self.state = s;
        vec![self.update(), ViewUpdate::ServerLabel(server)]
    }
}

//! Property tests of the asset document model and the local store.
//!
//! Random sequences of model operations (appends, status updates, versions,
//! rollbacks, cost events, title changes, and writes the model must refuse)
//! are applied to documents and checked against what the model promises:
//!
//! - every accepted write is exactly one change, every refused write leaves
//!   the heads and views as they were, and the cached summary always equals
//!   one computed from scratch;
//! - a document saved to the store after every write, compacted and reloaded
//!   at random points, reloads with the same heads and views, and the asset
//!   list's projection row stays in step with the document;
//! - two forks edited apart (concurrent rollbacks included) converge to the
//!   same state whichever way they are merged, and lose or duplicate nothing;
//! - every past state is readable through `reader_at` with the heads
//!   recorded at the time.
//!
//! Operations name existing messages and versions by an index taken modulo
//! the current count, so shrinking keeps them meaningful.
//!
//! Modules: [`strategies`] generates the operations (and sets the proptest
//! configuration), [`oracle`] applies one and checks it against the model's
//! rules, [`store`] holds the store-backed properties and [`model`] those of
//! documents alone (merges, history, blob references).

mod model;
mod oracle;
mod store;
mod strategies;

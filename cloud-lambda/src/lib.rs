//! `cloud-lambda`: Atelier's cloud: one axum `Router` for the sync endpoint, REST API, jobs and
//! auth over an embedded or AWS storage backend. Filled by the sync issue; nothing here yet.

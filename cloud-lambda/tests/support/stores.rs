//! One store that several servers open, as separate processes would (the
//! embedded backend's data directory opened again, or one AWS deployment
//! on moto connected again), with backups and restores of its data: what
//! the tests of jobs across processes and of restores share.

use std::future::Future;
use std::path::{Path, PathBuf};

use atelier_fixtures::fakes::RunningFakes;
use atelier_fixtures::moto::Moto;
use cloud_lambda::app::{AppState, router};
use cloud_lambda::jobs::JobConfig;
use cloud_lambda::registry::{BUILTIN, Registry};
use cloud_lambda::storage::aws::{Aws, AwsOptions};
use tempfile::TempDir;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

pub struct SharedStore {
    pub backend: Backend,
    /// The embedded backend's data directory (the latest, after restores).
    dir: TempDir,
    /// Directories restores replaced, kept while servers may hold them.
    replaced: Vec<TempDir>,
    aws: Option<AwsOptions>,
    _moto: Option<Moto>,
}

/// A copy of the store's data at one moment.
pub enum Backup {
    /// The database (`VACUUM INTO`) and the blob files.
    Embedded(TempDir),
    /// One DynamoDB backup per table (table name, backup ARN). S3 is not
    /// part of it, as with DynamoDB point-in-time recovery.
    Aws(Vec<(String, String)>),
}

/// A server on loopback; stopped when dropped.
pub struct Served {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `state` on loopback.
pub async fn serve(state: AppState) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    Served { url, task }
}

impl SharedStore {
    pub async fn new(backend: Backend) -> SharedStore {
        let dir = tempfile::tempdir().unwrap();
        let (aws, moto) = match backend {
            Backend::Embedded => (None, None),
            Backend::Aws => {
                let moto = Moto::start();
                let options = super::aws::options(&moto.url());
                super::aws::deployment_with(options.clone()).await;
                (Some(options), Some(moto))
            }
        };
        SharedStore {
            backend,
            dir,
            replaced: Vec::new(),
            aws,
            _moto: moto,
        }
    }

    /// What opening the store and building a server on it takes, with
    /// jobs against `fakes` if given (a future to run on whichever runtime
    /// the server lives on).
    pub fn server(
        &self,
        jobs: Option<(JobConfig, &RunningFakes)>,
    ) -> impl Future<Output = AppState> + Send + 'static {
        let dir = self.dir.path().to_owned();
        let aws = self.aws.clone();
        let jobs = jobs.map(|(config, fakes)| (config, super::providers(fakes)));
        async move {
            let verifier = super::issuer().verifier();
            let state = match aws {
                None => AppState::embedded(&dir, verifier, None).await.unwrap(),
                Some(options) => {
                    AppState::aws(&Aws::connect(options).await.unwrap(), verifier, None)
                }
            };
            match jobs {
                Some((config, providers)) => {
                    state.with_jobs(Registry::parse(BUILTIN).unwrap(), providers, config)
                }
                None => state,
            }
        }
    }

    async fn aws(&self) -> Aws {
        Aws::connect(self.aws.clone().expect("an AWS store"))
            .await
            .unwrap()
    }

    /// A copy of the data as it is now (servers may keep running).
    pub async fn backup(&self) -> Backup {
        match self.backend {
            Backend::Embedded => {
                let copy = tempfile::tempdir().unwrap();
                let db = copy.path().join(cloud_lambda::storage::embedded::DB_FILE);
                let url = format!(
                    "sqlite://{}",
                    self.dir
                        .path()
                        .join(cloud_lambda::storage::embedded::DB_FILE)
                        .display()
                );
                let mut conn: sqlx::SqliteConnection =
                    <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
                        .await
                        .unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "VACUUM INTO '{}'",
                    db.display()
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::Connection::close(conn).await.unwrap();
                copy_tree(&self.dir.path().join("blobs"), &copy.path().join("blobs"));
                Backup::Embedded(copy)
            }
            Backend::Aws => {
                let aws = self.aws().await;
                let mut backups = Vec::new();
                for (table, _) in aws.names.tables() {
                    let made = aws
                        .dynamodb()
                        .create_backup()
                        .table_name(&table)
                        .backup_name(format!("before-{}", uuid::Uuid::new_v4().simple()))
                        .send()
                        .await
                        .unwrap();
                    let arn = made.backup_details().unwrap().backup_arn().to_owned();
                    backups.push((table, arn));
                }
                Backup::Aws(backups)
            }
        }
    }

    /// Puts `backup` back as the store's data. Stop the servers first and
    /// open new ones after, as after a real restore; the embedded data
    /// then lives in a new directory (the old one stays until the store is
    /// dropped). On AWS every table is replaced by its backup (a new table
    /// under the same name); the buckets stay as they are.
    pub async fn restore(&mut self, backup: &Backup) {
        match backup {
            Backup::Embedded(copy) => {
                let dir = tempfile::tempdir().unwrap();
                copy_tree(copy.path(), dir.path());
                self.replaced.push(std::mem::replace(&mut self.dir, dir));
            }
            Backup::Aws(backups) => {
                let aws = self.aws().await;
                let ddb = aws.dynamodb();
                for (table, arn) in backups {
                    ddb.delete_table().table_name(table).send().await.unwrap();
                    ddb.restore_table_from_backup()
                        .target_table_name(table)
                        .backup_arn(arn)
                        .send()
                        .await
                        .unwrap();
                }
            }
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

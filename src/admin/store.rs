//! The configuration store (in progress: loads `--config`, keeps it in memory).

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::model::Config;
use crate::config::{compile, Snapshot};
use crate::runtime::Settings;

pub struct Store {
    config: Config,
    snapshot: Arc<Snapshot>,
}

impl Store {
    pub fn open(settings: &Settings) -> Result<Store, String> {
        std::fs::create_dir_all(&settings.data_dir)
            .map_err(|e| format!("data dir {}: {e}", settings.data_dir.display()))?;
        let config = match &settings.config {
            None => Config::default(),
            Some(path) => {
                let bytes =
                    std::fs::read(path).map_err(|e| format!("config {}: {e}", path.display()))?;
                compile::load(&bytes, SystemTime::now())
                    .map_err(|e| format!("config {}: {e}", path.display()))?
            }
        };
        let snapshot = Arc::new(compile::compile(&config, 1));
        Ok(Store { config, snapshot })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }
}

//! `file_storage`: a directory where components keep what must survive a
//! restart (persistent sending queues, the tail sampler's buffer), each in
//! its own journal ([`crate::sidecar::journal`]).

use crate::sidecar::component::{BoxFuture, BuildContext, Component, ExtensionSettings, Factory, Listening};
use crate::sidecar::config::{At, ConfigError, child, get_bool, get_duration, get_str};
use crate::sidecar::journal::{Journal, JournalOptions, Recovery};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The table line.
pub(crate) const FACTORY: Factory<dyn ExtensionSettings> = Factory {
    component: Component {
        section: "extensions",
        name: "file_storage",
        settings: &[
            "directory",
            "fsync",
            "create_directory",
            "directory_permissions",
            "timeout",
        ],
        // Not needed: journal segments are deleted as soon as everything in
        // them is delivered (warned as ignored, like every key in this list).
        ignored: &["compaction"],
    },
    parse: |at, _| Ok(Box::new(FileStorageConfig::parse(at)?)),
};

/// `file_storage` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) struct FileStorageConfig {
    /// `directory` (Go's default on Linux: `/var/lib/otelcol/file_storage`).
    pub(crate) directory: PathBuf,
    /// `fsync`: each acknowledged write is on disk before the answer.
    pub(crate) fsync: bool,
    /// `create_directory`: create a missing directory (else it must exist).
    pub(crate) create_directory: bool,
    /// `directory_permissions` (octal text, as Go's), for a created directory.
    pub(crate) permissions: u32,
    /// `timeout`: how long to wait for a directory another process holds.
    pub(crate) timeout: Duration,
}

impl FileStorageConfig {
    fn parse(at: At<'_>) -> Result<Self, ConfigError> {
        let permissions = match get_str(at, "directory_permissions")? {
            None => 0o750,
            Some(p) => u32::from_str_radix(p.trim_start_matches("0o"), 8).map_err(|_| {
                ConfigError::new(
                    child(at.path, "directory_permissions"),
                    format!("must be octal permissions such as \"0750\", got {p:?}"),
                )
            })?,
        };
        Ok(FileStorageConfig {
            directory: PathBuf::from(get_str(at, "directory")?.unwrap_or("/var/lib/otelcol/file_storage")),
            fsync: get_bool(at, "fsync")?.unwrap_or(false),
            create_directory: get_bool(at, "create_directory")?.unwrap_or(false),
            permissions,
            timeout: get_duration(at, "timeout")?.unwrap_or(Duration::from_secs(1)),
        })
    }
}

#[cfg(test)]
impl FileStorageConfig {
    /// Reads settings outside a configuration file (unit tests of the stages that use it).
    pub(crate) fn parse_for_tests(v: &serde_json::Value) -> FileStorageConfig {
        FileStorageConfig::parse(At {
            value: v,
            path: "extensions.file_storage",
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

impl ExtensionSettings for FileStorageConfig {
    fn start<'a>(&'a self, _: &'a BuildContext, _: &'a str) -> BoxFuture<'a, Result<Vec<Listening>, String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn storage(&self) -> Result<Option<Arc<FileStorage>>, String> {
        FileStorage::new(self).map(|s| Some(Arc::new(s)))
    }

    fn is_storage(&self) -> bool {
        true
    }
}

/// An opened `file_storage` directory.
#[derive(Debug)]
pub(crate) struct FileStorage {
    config: FileStorageConfig,
}

impl FileStorage {
    /// Checks the directory: there (or created), a directory, writable.
    ///
    /// # Errors
    ///
    /// Each with the directory and what to do.
    pub(crate) fn new(config: &FileStorageConfig) -> Result<FileStorage, String> {
        let dir = &config.directory;
        if !dir.exists() {
            if !config.create_directory {
                return Err(format!(
                    "directory {} does not exist: create it, or set create_directory: true",
                    dir.display()
                ));
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(config.permissions)
                .create(dir)
                .map_err(|e| format!("cannot create directory {}: {e}", dir.display()))?;
        }
        if !dir.is_dir() {
            return Err(format!("{} is not a directory", dir.display()));
        }
        let probe = dir.join(format!(".probe-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| format!("directory {} is not writable: {e}", dir.display()))?;
        let _ = std::fs::remove_file(&probe);
        Ok(FileStorage { config: config.clone() })
    }

    /// The journal of component `owner` (e.g. `exporter_otlp_tempo`), with
    /// what it held; waits up to `timeout` for another process to let go.
    ///
    /// # Errors
    ///
    /// When it cannot be opened (held by a live process past the timeout,
    /// unreadable, a full disk).
    pub(crate) fn open(&self, owner: &str) -> Result<(Arc<Journal>, Recovery), String> {
        let name: String = owner
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let dir = self.config.directory.join(name);
        let opts = JournalOptions {
            fsync: self.config.fsync,
            ..JournalOptions::default()
        };
        let deadline = std::time::Instant::now() + self.config.timeout;
        loop {
            match Journal::open(&dir, opts.clone()) {
                Ok(j) => return Ok(j),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("cannot open the journal {}: {e}", dir.display())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<FileStorageConfig, ConfigError> {
        let v: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
        FileStorageConfig::parse(At {
            value: &v,
            path: "extensions.file_storage",
        })
    }

    #[test]
    fn the_directory_is_checked_with_a_clear_error() {
        let base = std::env::temp_dir().join(format!("fs-ext-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let missing = parse(&format!("{{directory: {}}}", base.join("q").display())).unwrap();
        let e = FileStorage::new(&missing).unwrap_err();
        assert!(e.contains("does not exist") && e.contains("create_directory"), "{e}");
        let created = parse(&format!(
            "{{directory: {}, create_directory: true, fsync: true}}",
            base.join("q").display()
        ))
        .unwrap();
        let storage = FileStorage::new(&created).unwrap();
        let (j, r) = storage.open("exporter/otlp tempo").unwrap();
        assert!(r.items.is_empty());
        assert!(base.join("q").join("exporter_otlp_tempo").is_dir());
        drop(j);
        // A file where the directory should be.
        let file = base.join("file");
        std::fs::write(&file, b"").unwrap();
        let e = FileStorage::new(&parse(&format!("{{directory: {}}}", file.display())).unwrap()).unwrap_err();
        assert!(e.contains("not a directory"), "{e}");
        // A read-only directory (unless running as root, which may write anyway).
        let ro = base.join("ro");
        std::fs::create_dir_all(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let writable = std::fs::write(ro.join("x"), b"").is_ok();
        let result = FileStorage::new(&parse(&format!("{{directory: {}}}", ro.display())).unwrap());
        if !writable {
            assert!(result.unwrap_err().contains("not writable"));
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(
            parse("{directory_permissions: rwx}")
                .unwrap_err()
                .to_string()
                .contains("octal")
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}

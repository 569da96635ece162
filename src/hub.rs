//! Hugging Face Hub checkpoints (feature `hub`): resolve `user/repo` to the snapshot directory of the local
//! Hugging Face cache (`$HF_HOME/hub` or `~/.cache/huggingface/hub`), where `config.json` and `weights.pt` of the
//! public `quentinll/lewm-*` repos live once downloaded (e.g. `huggingface-cli download quentinll/lewm-pusht`).
//! swm never downloads at run time: a robot's control loop must not depend on the network.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

/// Files a LeWM / upstream checkpoint repo provides.
pub const CHECKPOINT_FILES: [&str; 2] = ["config.json", "weights.pt"];

/// A repo that is not (completely) in the local cache.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The repo id is not `user/name`.
    #[error("`{0}` is not a Hugging Face repo id (expected user/name)")]
    BadRepoId(String),
    /// A file of the repo is not cached.
    #[error("{repo}@{revision}: `{file}` is not in the Hugging Face cache at {cache} (swm does not download; fetch it with `huggingface-cli download {repo}` where the network is reachable)")]
    NotCached {
        /// Repo id.
        repo: String,
        /// Revision (branch, tag or commit).
        revision: String,
        /// The missing file.
        file: String,
        /// The cache root searched.
        cache: PathBuf,
    },
}

/// Resolves `repo_id` (at `revision`, default `main`) to the cached snapshot directory that holds every file of
/// [`CHECKPOINT_FILES`]. `cache_dir` overrides the cache root.
pub fn resolve_checkpoint(
    repo_id: &str,
    revision: Option<&str>,
    cache_dir: Option<&Path>,
) -> Result<PathBuf, HubError> {
    let valid = repo_id.split('/').count() == 2 && repo_id.split('/').all(|p| !p.is_empty());
    if !valid {
        return Err(HubError::BadRepoId(repo_id.to_string()));
    }
    let cache = match cache_dir {
        Some(dir) => Cache::new(dir.to_path_buf()),
        None => Cache::from_env(),
    };
    let revision = revision.unwrap_or("main").to_string();
    let repo = cache.repo(Repo::with_revision(repo_id.to_string(), RepoType::Model, revision.clone()));
    let mut snapshot = None;
    for file in CHECKPOINT_FILES {
        let path = repo.get(file).ok_or_else(|| HubError::NotCached {
            repo: repo_id.to_string(),
            revision: revision.clone(),
            file: file.to_string(),
            cache: cache.path().clone(),
        })?;
        snapshot = path.parent().map(Path::to_path_buf);
    }
    snapshot.ok_or_else(|| HubError::BadRepoId(repo_id.to_string()))
}

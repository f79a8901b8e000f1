//! Where the desired state comes from: a folder (or one file) on disk, or a commit of a Git
//! repository. Git is driven through the `git` program: every Git feature (remotes, auth,
//! protocols) works as the user has configured it, and no Git library is compiled in.

use std::path::{Path, PathBuf};
use std::process::Command;

use resurgo_plan::SourceId;
use resurgo_spec::SourceFile;

/// How to find the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file, or a folder whose `*.yaml`/`*.yml` files (recursively) form the spec.
    Folder(PathBuf),
    /// A Git repository (URL or path) at a ref, optionally a sub-folder of it.
    Git {
        repo: String,
        reference: String,
        subdir: Option<String>,
    },
}

/// The files of a spec and where they came from.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub files: Vec<SourceFile>,
    /// Identifies the source; the digest is filled in once the files are loaded.
    pub kind: String,
    pub location: String,
    pub commit: Option<String>,
}

impl Fetched {
    pub fn source_id(&self, digest: &str) -> SourceId {
        SourceId {
            kind: self.kind.clone(),
            location: self.location.clone(),
            commit: self.commit.clone(),
            digest: digest.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read spec {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("no spec files (*.yaml, *.yml) in {0}")]
    Empty(PathBuf),
    /// The repository could not be reached; a last-known-good copy may stand in.
    #[error("git repository `{repo}` is unreachable: {reason}")]
    GitUnreachable { repo: String, reason: String },
    #[error("git ref `{reference}` does not exist in `{repo}`")]
    NoSuchRef { repo: String, reference: String },
    #[error("git failed in `{repo}`: {reason}")]
    Git { repo: String, reason: String },
}

impl SourceError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::GitUnreachable { .. })
    }
}

impl Source {
    /// Reads the spec files. Git repositories are mirrored into `cache` first.
    pub fn fetch(&self, cache: &Path) -> Result<Fetched, SourceError> {
        match self {
            Source::Folder(path) => read_folder(path),
            Source::Git {
                repo,
                reference,
                subdir,
            } => read_git(repo, reference, subdir.as_deref(), cache),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Folder(p) => p.display().to_string(),
            Source::Git {
                repo,
                reference,
                subdir,
            } => match subdir {
                Some(s) => format!("{repo}@{reference}:{s}"),
                None => format!("{repo}@{reference}"),
            },
        }
    }
}

fn is_spec_file(name: &str) -> bool {
    name.ends_with(".yaml") || name.ends_with(".yml")
}

fn read_folder(path: &Path) -> Result<Fetched, SourceError> {
    let read_err = |p: &Path, e| SourceError::Read {
        path: p.to_path_buf(),
        source: e,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_err(path, e))?;
    let mut files = Vec::new();
    if meta.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| read_err(path, e))?;
        let name = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        files.push(SourceFile { name, text });
    } else {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let entries = std::fs::read_dir(&dir).map_err(|e| read_err(&dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| read_err(&dir, e))?;
                let p = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if entry.file_type().map_err(|e| read_err(&p, e))?.is_dir() {
                    stack.push(p);
                } else if is_spec_file(&name) {
                    let text = std::fs::read_to_string(&p).map_err(|e| read_err(&p, e))?;
                    let rel = p.strip_prefix(path).unwrap_or(&p).display().to_string();
                    files.push(SourceFile { name: rel, text });
                }
            }
        }
        files.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if files.is_empty() {
        return Err(SourceError::Empty(path.to_path_buf()));
    }
    let location = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    Ok(Fetched {
        files,
        kind: "folder".into(),
        location,
        commit: None,
    })
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A stable folder name for a repository URL.
fn cache_name(repo: &str) -> String {
    let clean: String = repo
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let tail: String = clean
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}-{}", &resurgo_spec::hash_json(&repo)[..12])
}

fn read_git(repo: &str, reference: &str, subdir: Option<&str>, cache: &Path) -> Result<Fetched, SourceError> {
    let unreachable = |reason: String| SourceError::GitUnreachable {
        repo: repo.to_string(),
        reason,
    };
    std::fs::create_dir_all(cache).map_err(|e| SourceError::Read {
        path: cache.to_path_buf(),
        source: e,
    })?;
    // One fetch into a mirror at a time: the daemons of one process (`controller --agents`)
    // share the cache, and git's own ref locks would fail a concurrent fetch.
    let lock = cache.join(format!(".{}.lock", cache_name(repo)));
    let _lock = crate::engine::lock_file(&lock).map_err(|e| SourceError::Read { path: lock, source: e })?;
    let mirror = cache.join(cache_name(repo));
    if mirror.join("HEAD").exists() {
        git(
            &mirror,
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--force",
                "origin",
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
        )
        .map_err(unreachable)?;
    } else {
        let tmp = cache.join(format!(".{}.tmp", cache_name(repo)));
        let _ = std::fs::remove_dir_all(&tmp);
        git(cache, &["clone", "--quiet", "--bare", repo, &tmp.to_string_lossy()]).map_err(unreachable)?;
        std::fs::rename(&tmp, &mirror).map_err(|e| SourceError::Read {
            path: mirror.clone(),
            source: e,
        })?;
    }
    let commit = git(
        &mirror,
        &["rev-parse", "--verify", "--quiet", &format!("{reference}^{{commit}}")],
    )
    .map_err(|_| SourceError::NoSuchRef {
        repo: repo.to_string(),
        reference: reference.to_string(),
    })?
    .trim()
    .to_string();
    if commit.is_empty() {
        return Err(SourceError::NoSuchRef {
            repo: repo.to_string(),
            reference: reference.to_string(),
        });
    }
    let git_err = |reason: String| SourceError::Git {
        repo: repo.to_string(),
        reason,
    };
    let prefix = subdir
        .map(|s| s.trim_matches('/').to_string())
        .filter(|s| !s.is_empty());
    let mut args = vec!["ls-tree", "-r", "-z", "--name-only", commit.as_str()];
    if let Some(p) = &prefix {
        args.push("--");
        args.push(p);
    }
    let listing = git(&mirror, &args).map_err(git_err)?;
    let mut files = Vec::new();
    for path in listing.split('\0').filter(|p| is_spec_file(p)) {
        let text = git(&mirror, &["cat-file", "blob", &format!("{commit}:{path}")]).map_err(git_err)?;
        let rel = match &prefix {
            Some(p) => path.strip_prefix(p.as_str()).unwrap_or(path).trim_start_matches('/'),
            None => path,
        };
        files.push(SourceFile {
            name: format!("{}:{rel}", &commit[..12]),
            text,
        });
    }
    if files.is_empty() {
        return Err(SourceError::Empty(PathBuf::from(format!("{repo}@{reference}"))));
    }
    Ok(Fetched {
        files,
        kind: "git".into(),
        location: repo.to_string(),
        commit: Some(commit),
    })
}

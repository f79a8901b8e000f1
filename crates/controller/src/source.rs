//! Where the desired state comes from: a folder (or one file) on disk, or a commit of a Git
//! repository. Git is driven through the `git` program: every Git feature (remotes, auth,
//! protocols) works as the user has configured it, and no Git library is compiled in.
//!
//! Credentials in a repository URL (`https://user:token@host/repo`), or a token from a secret
//! reference, never reach `git`'s arguments (which `ps` and /proc show to every user), the
//! mirror's config, errors, events or status: the URL handed to `git` and shown anywhere has
//! no password ([`GitUrl`]), and `git` gets the credentials from its environment through a
//! credential helper that only names the variables.

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
        /// A token (the password for the URL's user) read from a secret when fetching.
        token: Option<resurgo_spec::SecretRef>,
    },
}

/// A repository URL split into what may be shown and what may not. `https://user:pw@host/r`
/// is shown and handed to `git` as `https://host/r` (HTTP) — the user and password go through
/// the environment —, `ssh://git:pw@host/r` as `ssh://git@host/r` (an SSH user is no secret;
/// a password there is dropped); paths and `user@host:path` have none and stay as they are.
#[derive(Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// The URL without secrets: what `git` gets and what is shown.
    pub clean: String,
    /// The user to give `git`'s credential helper, if any.
    pub user: Option<String>,
    /// The password or token, if any. Never printed (no `Debug`, no `Display`).
    password: Option<String>,
}

impl std::fmt::Debug for GitUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitUrl")
            .field("clean", &self.clean)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl GitUrl {
    pub fn parse(url: &str) -> GitUrl {
        let plain = GitUrl {
            clean: url.to_string(),
            user: None,
            password: None,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return plain;
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let Some(at) = rest[..authority_end].rfind('@') else {
            return plain;
        };
        let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (userinfo, None),
        };
        let decode = |s: &str| percent_decode(s);
        if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https") {
            GitUrl {
                clean: format!("{scheme}://{host}"),
                user: Some(decode(user)).filter(|u| !u.is_empty()),
                password: password.map(decode),
            }
        } else {
            GitUrl {
                clean: format!("{scheme}://{user}@{host}"),
                user: None,
                password: None,
            }
        }
    }

    /// `text` with every secret of this URL (as written and decoded) replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        if let Some(p) = self.password.as_deref().filter(|p| !p.is_empty()) {
            out = out.replace(p, "***");
            out = out.replace(&percent_encode(p), "***");
        }
        out
    }
}

/// `%XX` escapes decoded (userinfo in URLs is percent-encoded).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The variables the credential helper reads.
const USER_VAR: &str = "RESURGO_GIT_USERNAME";
const PASSWORD_VAR: &str = "RESURGO_GIT_PASSWORD";

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
                token,
            } => {
                let mut url = GitUrl::parse(repo);
                if let Some(token) = token {
                    let value = resurgo_provider::read_secret(token).map_err(|reason| SourceError::Git {
                        repo: url.clean.clone(),
                        reason: format!("cannot read the token: {reason}"),
                    })?;
                    url.password = Some(value);
                }
                read_git(&url, reference, subdir.as_deref(), cache)
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Folder(p) => p.display().to_string(),
            Source::Git {
                repo,
                reference,
                subdir,
                ..
            } => {
                let repo = GitUrl::parse(repo).clean;
                match subdir {
                    Some(s) => format!("{repo}@{reference}:{s}"),
                    None => format!("{repo}@{reference}"),
                }
            }
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

/// `git -C dir ARGS`, with the URL's credentials, if it has any, in the environment: a
/// credential helper (named on the command line, holding no secret) prints them from there.
/// Git's own helpers are cleared first, so the token is not stored anywhere by them.
fn git_command(dir: &Path, args: &[&str], url: &GitUrl) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir);
    if url.user.is_some() || url.password.is_some() {
        cmd.args(["-c", "credential.helper="])
            .args([
                "-c",
                &format!("credential.helper=!f() {{ test \"$1\" = get || exit 0; echo \"username=${USER_VAR}\"; echo \"password=${PASSWORD_VAR}\"; }}; f"),
            ])
            .env(USER_VAR, url.user.as_deref().unwrap_or("git"))
            .env(PASSWORD_VAR, url.password.as_deref().unwrap_or(""));
    }
    cmd.args(args).env("GIT_TERMINAL_PROMPT", "0");
    cmd
}

fn git(dir: &Path, args: &[&str], url: &GitUrl) -> Result<String, String> {
    let out = git_command(dir, args, url)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(url.redact(String::from_utf8_lossy(&out.stderr).trim()))
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

fn read_git(url: &GitUrl, reference: &str, subdir: Option<&str>, cache: &Path) -> Result<Fetched, SourceError> {
    // Only the clean URL is named from here on: in errors, the mirror's config, the source id.
    let repo = url.clean.as_str();
    let git_at = |dir: &Path, args: &[&str]| git(dir, args, url);
    let unreachable = |reason: String| SourceError::GitUnreachable {
        repo: repo.to_string(),
        reason,
    };
    resurgo_provider::private_dir(cache).map_err(|e| SourceError::Read {
        path: cache.to_path_buf(),
        source: e,
    })?;
    // One fetch into a mirror at a time: the daemons of one process (`controller --agents`)
    // share the cache, and git's own ref locks would fail a concurrent fetch.
    let lock = cache.join(format!(".{}.lock", cache_name(repo)));
    let _lock = crate::engine::lock_file(&lock).map_err(|e| SourceError::Read { path: lock, source: e })?;
    let mirror = cache.join(cache_name(repo));
    if mirror.join("HEAD").exists() {
        git_at(
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
        git_at(cache, &["clone", "--quiet", "--bare", repo, &tmp.to_string_lossy()]).map_err(unreachable)?;
        std::fs::rename(&tmp, &mirror).map_err(|e| SourceError::Read {
            path: mirror.clone(),
            source: e,
        })?;
    }
    let commit = git_at(
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
    let listing = git_at(&mirror, &args).map_err(git_err)?;
    let mut files = Vec::new();
    for path in listing.split('\0').filter(|p| is_spec_file(p)) {
        let text = git_at(&mirror, &["cat-file", "blob", &format!("{commit}:{path}")]).map_err(git_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr%2Ft";

    #[test]
    fn credentials_leave_the_url_and_ssh_users_stay() {
        let url = GitUrl::parse(&format!("https://deploy:{SECRET}@git.example.com/org/spec.git"));
        assert_eq!(url.clean, "https://git.example.com/org/spec.git");
        assert_eq!(url.user.as_deref(), Some("deploy"));
        assert!(!format!("{url:?}").contains("s3cr"), "{url:?}");
        let ssh = GitUrl::parse("ssh://git:pw@host/r.git");
        assert_eq!(ssh.clean, "ssh://git@host/r.git");
        for plain in ["/srv/spec.git", "git@host:org/r.git", "https://host/r.git"] {
            assert_eq!(GitUrl::parse(plain).clean, plain);
        }
        assert_eq!(url.redact("fatal: s3cr/t and s3cr%2Ft"), "fatal: *** and ***");
    }

    /// Issue 9: the token is in `git`'s environment, never its arguments (`ps`, /proc/*/cmdline).
    #[test]
    fn git_gets_credentials_through_its_environment_only() {
        let url = GitUrl::parse(&format!("https://deploy:{SECRET}@git.example.com/org/spec.git"));
        let cmd = git_command(Path::new("/tmp"), &["clone", "--bare", &url.clean, "x"], &url);
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(args.iter().all(|a| !a.contains("s3cr")), "{args:?}");
        assert!(args.iter().any(|a| a.contains(PASSWORD_VAR)), "{args:?}");
        let password = cmd
            .get_envs()
            .find(|(k, _)| *k == PASSWORD_VAR)
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        assert_eq!(password.as_deref(), Some("s3cr/t"));
        let plain = git_command(Path::new("/tmp"), &["status"], &GitUrl::parse("/srv/spec.git"));
        assert!(plain.get_envs().all(|(k, _)| k != PASSWORD_VAR));
    }

    /// A local repository fetched through a URL with credentials (`file://` ignores them, as a
    /// server that does not ask would): the fetch works and nothing shown holds the secret.
    #[test]
    fn a_repository_with_credentials_in_its_url_is_read_and_named_without_them() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("spec");
        std::fs::create_dir(&repo).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("git").arg("-C").arg(&repo).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["init", "--quiet"]);
        std::fs::write(repo.join("a.yaml"), "system: x\n").unwrap();
        run(&["add", "a.yaml"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-m",
            "spec",
        ]);
        // A path-less authority is how a `file://` URL carries userinfo: keep it HTTP-shaped.
        let source = Source::Git {
            repo: format!("https://deploy:{SECRET}@127.0.0.1:9/nothing.git"),
            reference: "HEAD".into(),
            subdir: None,
            token: None,
        };
        assert!(!source.describe().contains("s3cr"), "{}", source.describe());
        let err = source.fetch(&tmp.path().join("cache")).unwrap_err().to_string();
        assert!(
            !err.contains("s3cr") && err.contains("https://127.0.0.1:9/nothing.git"),
            "{err}"
        );

        let local = Source::Git {
            repo: format!("file://{}", repo.display()),
            reference: "HEAD".into(),
            subdir: None,
            token: Some(resurgo_spec::SecretRef::Env("RESURGO_TEST_NO_SUCH_TOKEN".into())),
        };
        let err = local.fetch(&tmp.path().join("cache")).unwrap_err().to_string();
        assert!(err.contains("cannot read the token"), "{err}");
        let fetched = Source::Git {
            repo: format!("file://{}", repo.display()),
            reference: "HEAD".into(),
            subdir: None,
            token: None,
        }
        .fetch(&tmp.path().join("cache"))
        .unwrap();
        assert_eq!(fetched.files.len(), 1);
        assert!(!fetched.location.contains("s3cr"));
    }
}

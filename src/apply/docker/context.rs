//! A build context from the commit: the files of the context directory straight from the
//! snapshot (no checkout), filtered by `.dockerignore` exactly as the docker CLI filters it, and
//! packed into a reproducible tar (mtime 0, uid/gid 0) for the engine's build API.

use super::build_request::BuildRequest;
use crate::source::snapshot::Snapshot;
use anyhow::{bail, Context};
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use std::collections::BTreeSet;

/// The context `context_dir` of the commit as a tar, `.dockerignore` applied, the file named
/// `Dockerfile` never left out. See [`request_tar`] for a request with another Dockerfile.
pub fn context_tar(snap: &Snapshot, context_dir: &str) -> anyhow::Result<Vec<u8>> {
    let context = normalize_repo_dir(context_dir)?;
    let files = context_files(snap, &context)?;
    let ignore = DockerIgnore::from_context(&files, &context, &["Dockerfile"])?;
    write_tar(&files, &ignore, None)
}

/// The tar for one request: the context as [`context_tar`] makes it, its Dockerfile kept whatever
/// `.dockerignore` says, and a Dockerfile from outside the context added under the name
/// [`dockerfile_in_tar`] gives it (as the docker CLI does). Fails with a clear message when the
/// context or the Dockerfile is not in the commit.
pub fn request_tar(snap: &Snapshot, req: &BuildRequest) -> anyhow::Result<Vec<u8>> {
    let context = normalize_repo_dir(&req.context_dir)?;
    let files = context_files(snap, &context)?;
    let dockerfile_repo = dockerfile_repo_path(&context, &req.dockerfile)?;
    let Some(dockerfile_entry) = snap.get(&dockerfile_repo) else {
        bail!(
            "building image {}: the Dockerfile {dockerfile_repo} is not in the commit; add it or \
             fix `dockerfile:` (relative to the context {})",
            req.tag,
            shown_dir(&context)
        );
    };
    let in_tar = dockerfile_in_tar(&req.context_dir, &req.dockerfile)?;
    let outside = !is_in_dir(&dockerfile_repo, &context);
    let keep: Vec<&str> = if outside {
        Vec::new()
    } else {
        vec![in_tar.as_str()]
    };
    let ignore = DockerIgnore::from_context(&files, &context, &keep)?;
    let extra = outside.then(|| (in_tar.as_str(), &dockerfile_entry.data[..]));
    write_tar(&files, &ignore, extra)
}

/// The Dockerfile's name inside the tar, as the build call must name it: its path relative to
/// the context, or `.dockerfile.<hash>` for one that lives outside the context.
pub fn dockerfile_in_tar(context_dir: &str, dockerfile: &str) -> anyhow::Result<String> {
    let context = normalize_repo_dir(context_dir)?;
    let repo_path = dockerfile_repo_path(&context, dockerfile)?;
    if is_in_dir(&repo_path, &context) {
        Ok(strip_dir(&repo_path, &context).to_string())
    } else {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(repo_path.as_bytes());
        Ok(format!(".dockerfile.{}", hex::encode(&h[..6])))
    }
}

/// A repo directory path, cleaned: no leading `./` or `/`, no trailing `/`, "" for the root.
/// `..` is refused: a build context must be inside the managed repo.
pub(super) fn normalize_repo_dir(dir: &str) -> anyhow::Result<String> {
    let cleaned = clean_path(dir.trim());
    if cleaned == ".." || cleaned.starts_with("../") {
        bail!("build context {dir:?} is outside the managed repo; it must be a folder of the repo");
    }
    Ok(if cleaned == "." {
        String::new()
    } else {
        cleaned
    })
}

/// The Dockerfile's repo path from the context and the compose `dockerfile:` value.
pub(super) fn dockerfile_repo_path(context: &str, dockerfile: &str) -> anyhow::Result<String> {
    let dockerfile = if dockerfile.trim().is_empty() {
        "Dockerfile"
    } else {
        dockerfile.trim()
    };
    if dockerfile.starts_with('/') {
        bail!(
            "dockerfile {dockerfile:?} is an absolute path; it must be relative to the build \
             context {}",
            shown_dir(context)
        );
    }
    let joined = if context.is_empty() {
        dockerfile.to_string()
    } else {
        format!("{context}/{dockerfile}")
    };
    let cleaned = clean_path(&joined);
    if cleaned == "." || cleaned == ".." || cleaned.starts_with("../") {
        bail!(
            "dockerfile {dockerfile:?} (context {}) is outside the managed repo",
            shown_dir(context)
        );
    }
    Ok(cleaned)
}

pub(super) fn shown_dir(dir: &str) -> &str {
    if dir.is_empty() || dir == "." {
        "(repo root)"
    } else {
        dir
    }
}

fn is_in_dir(path: &str, dir: &str) -> bool {
    dir.is_empty()
        || (path.len() > dir.len() && path.starts_with(dir) && path.as_bytes()[dir.len()] == b'/')
}

fn strip_dir<'a>(path: &'a str, dir: &str) -> &'a str {
    if dir.is_empty() {
        path
    } else {
        &path[dir.len() + 1..]
    }
}

/// Go's `filepath.Clean` on `/`-separated paths: collapses `//`, drops `.`, resolves `..` where
/// it can, no trailing `/`; "" becomes ".". Rooted paths stay rooted.
fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// One file of the context: its path relative to the context, and the snapshot entry.
struct ContextFile<'a> {
    rel: &'a str,
    entry: &'a crate::source::snapshot::FileEntry,
}

fn context_files<'a>(snap: &'a Snapshot, context: &str) -> anyhow::Result<Vec<ContextFile<'a>>> {
    let files: Vec<ContextFile> = snap
        .files
        .iter()
        .filter(|(p, _)| is_in_dir(p, context))
        .map(|(p, entry)| ContextFile {
            rel: strip_dir(p, context),
            entry,
        })
        .collect();
    if files.is_empty() {
        bail!(
            "build context {} is not a folder of the commit (or holds no file); fix `context:` \
             or commit the folder",
            shown_dir(context)
        );
    }
    Ok(files)
}

/// `.dockerignore` with the docker CLI's semantics (moby/patternmatcher): patterns are read in
/// order, each cleaned (`filepath.Clean`, leading `/` dropped) and anchored at the context root;
/// a path is excluded when the last pattern that matches it or one of its parent folders is not
/// a `!` exception. Each pattern is its own gitignore matcher (the `ignore` crate), so the order
/// rule is docker's, not git's (git cannot re-include a file below an excluded folder; docker can).
struct DockerIgnore {
    /// (matcher for one pattern, is an exception)
    patterns: Vec<(Gitignore, bool)>,
    /// Paths never excluded: `.dockerignore` and the Dockerfile (the CLI appends `!` exceptions
    /// for them when a pattern matches them, which comes to the same).
    keep: Vec<String>,
}

impl DockerIgnore {
    fn from_context(
        files: &[ContextFile],
        context: &str,
        keep: &[&str],
    ) -> anyhow::Result<DockerIgnore> {
        let Some(file) = files.iter().find(|f| f.rel == ".dockerignore") else {
            return Ok(DockerIgnore {
                patterns: Vec::new(),
                keep: Vec::new(),
            });
        };
        let shown = if context.is_empty() {
            ".dockerignore".to_string()
        } else {
            format!("{context}/.dockerignore")
        };
        let text = String::from_utf8_lossy(&file.entry.data);
        let mut ignore = DockerIgnore::parse(&text, &shown)?;
        ignore.keep = std::iter::once(".dockerignore")
            .chain(keep.iter().copied())
            .map(str::to_string)
            .collect();
        Ok(ignore)
    }

    fn parse(text: &str, shown: &str) -> anyhow::Result<DockerIgnore> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let raw = if i == 0 {
                raw.trim_start_matches('\u{feff}')
            } else {
                raw
            };
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if pattern.is_empty() {
                continue;
            }
            let mut cleaned = clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            // "." and "../x" can match no path of the context.
            if cleaned == "." || cleaned == "/" || cleaned == ".." || cleaned.starts_with("../") {
                continue;
            }
            patterns.push((single_pattern(&cleaned, shown, i + 1)?, exception));
        }
        Ok(DockerIgnore {
            patterns,
            keep: Vec::new(),
        })
    }

    /// moby/patternmatcher `MatchesOrParentMatches`: the last pattern matching the path or one of
    /// its parent folders decides.
    fn excludes(&self, rel: &str, is_dir: bool) -> bool {
        if !is_dir && self.keep.iter().any(|k| k == rel) {
            return false;
        }
        let mut excluded = false;
        for (matcher, exception) in &self.patterns {
            // As moby does: only an exclusion can flip an included path, only an exception an
            // excluded one.
            if *exception != excluded {
                continue;
            }
            if matcher.matched_path_or_any_parents(rel, is_dir).is_ignore() {
                excluded = !exception;
            }
        }
        excluded
    }
}

/// One cleaned `.dockerignore` pattern as a gitignore matcher anchored at the context root.
fn single_pattern(pattern: &str, shown: &str, line: usize) -> anyhow::Result<Gitignore> {
    let mut builder = GitignoreBuilder::new(".");
    builder
        .add_line(None, &format!("/{pattern}"))
        .with_context(|| format!("{shown}:{line}: invalid pattern {pattern:?}"))?;
    builder
        .build()
        .with_context(|| format!("{shown}:{line}: invalid pattern {pattern:?}"))
}

/// Writes the tar: folders (755) before their files, files 644 or 755, symlinks as symlink
/// entries; mtime 0 and uid/gid 0 everywhere, so the same content gives the same bytes and the
/// engine's cache holds. A folder that is itself excluded is still written when a file below it
/// is re-included (the engine would create it anyway).
fn write_tar(
    files: &[ContextFile],
    ignore: &DockerIgnore,
    extra: Option<(&str, &[u8])>,
) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut written_dirs: BTreeSet<String> = BTreeSet::new();
    let mut included: Vec<&ContextFile> = files
        .iter()
        .filter(|f| !ignore.excludes(f.rel, false))
        .collect();
    // In the order of a directory walk (by path component), so the same content gives the
    // same bytes.
    included.sort_by(|a, b| a.rel.split('/').cmp(b.rel.split('/')));

    // Every folder of the context: the CLI also sends a folder that is not excluded when all
    // its files are (an empty folder in the image).
    let mut all_dirs: BTreeSet<&str> = BTreeSet::new();
    for f in files {
        let mut rest = f.rel;
        while let Some((parent, _)) = rest.rsplit_once('/') {
            all_dirs.insert(parent);
            rest = parent;
        }
    }

    let mut append_dir = |builder: &mut tar::Builder<Vec<u8>>, dir: &str| -> anyhow::Result<()> {
        let mut prefix = String::new();
        for part in dir.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if written_dirs.insert(prefix.clone()) {
                let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
                builder
                    .append_data(&mut header, format!("{prefix}/"), std::io::empty())
                    .with_context(|| format!("packing folder {prefix} of the build context"))?;
            }
        }
        Ok(())
    };

    for f in included {
        if let Some((parent, _)) = f.rel.rsplit_once('/') {
            append_dir(&mut builder, parent)?;
        }
        if f.entry.symlink {
            let target = String::from_utf8_lossy(&f.entry.data).to_string();
            let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
            builder
                .append_link(&mut header, f.rel, &target)
                .with_context(|| format!("packing symlink {} of the build context", f.rel))?;
        } else {
            let mode = if f.entry.executable { 0o755 } else { 0o644 };
            let mut header = tar_header(tar::EntryType::Regular, mode, f.entry.data.len() as u64);
            builder
                .append_data(&mut header, f.rel, &f.entry.data[..])
                .with_context(|| format!("packing {} of the build context", f.rel))?;
        }
    }
    for d in all_dirs {
        // A folder below an excluded one is excluded too (the pattern matches a parent).
        if !ignore.excludes(d, true) {
            append_dir(&mut builder, d)?;
        }
    }
    if let Some((name, data)) = extra {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, data.len() as u64);
        builder
            .append_data(&mut header, name, data)
            .context("packing the Dockerfile into the build context")?;
    }
    builder
        .into_inner()
        .context("finishing the build context tar")
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::snapshot::FileEntry;

    fn snap(files: &[(&str, &str)]) -> Snapshot {
        let mut s = Snapshot::default();
        for (p, data) in files {
            s.files.insert(
                p.to_string(),
                FileEntry {
                    data: data.as_bytes().to_vec(),
                    executable: p.ends_with(".sh"),
                    symlink: false,
                },
            );
        }
        s
    }

    /// (path, kind, mode, mtime, uid, gid, link target) of each entry.
    fn entries(tar_bytes: &[u8]) -> Vec<(String, char, u32, u64, u64, u64, String)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let kind = match h.entry_type() {
                    tar::EntryType::Directory => 'd',
                    tar::EntryType::Symlink => 'l',
                    _ => 'f',
                };
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().to_string())
                    .unwrap_or_default();
                (
                    e.path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_end_matches('/')
                        .to_string(),
                    kind,
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    link,
                )
            })
            .collect()
    }

    fn files_in(tar_bytes: &[u8]) -> Vec<String> {
        entries(tar_bytes)
            .into_iter()
            .filter(|e| e.1 != 'd')
            .map(|e| e.0)
            .collect()
    }

    fn with_ignore(ignore: &str, paths: &[&str]) -> Vec<String> {
        let mut files: Vec<(&str, &str)> = paths.iter().map(|p| (*p, "x")).collect();
        files.push(("ctx/.dockerignore", ignore));
        files.push(("ctx/Dockerfile", "FROM scratch\n"));
        let mut out = files_in(&context_tar(&snap(&files), "ctx").unwrap());
        out.retain(|p| p != "Dockerfile" && p != ".dockerignore");
        out.sort();
        out
    }

    #[test]
    fn tar_is_reproducible_with_modes_dirs_and_symlinks() {
        let mut s = snap(&[
            ("app/Dockerfile", "FROM scratch\n"),
            ("app/run.sh", "#!/bin/sh\n"),
            ("app/src/main.c", "int main;"),
            ("other/x", "outside"),
            ("application/y", "not the context either"),
        ]);
        s.files.insert(
            "app/link".into(),
            FileEntry {
                data: b"src/main.c".to_vec(),
                executable: false,
                symlink: true,
            },
        );
        let a = context_tar(&s, "app").unwrap();
        let b = context_tar(&s, "./app/").unwrap();
        assert_eq!(a, b, "same content, same bytes");
        let e = entries(&a);
        let names: Vec<&str> = e.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            vec!["Dockerfile", "link", "run.sh", "src", "src/main.c"]
        );
        for (path, kind, mode, mtime, uid, gid, link) in &e {
            assert_eq!((*mtime, *uid, *gid), (0, 0, 0), "{path}");
            match path.as_str() {
                "run.sh" => assert_eq!((*kind, *mode), ('f', 0o755)),
                "src" => assert_eq!((*kind, *mode), ('d', 0o755)),
                "link" => assert_eq!((*kind, link.as_str()), ('l', "src/main.c")),
                _ => assert_eq!((*kind, *mode), ('f', 0o644), "{path}"),
            }
        }
        let root = context_tar(&s, "").unwrap();
        assert!(files_in(&root).contains(&"other/x".to_string()));
    }

    #[test]
    fn missing_context_and_context_outside_the_repo_are_clear_errors() {
        let s = snap(&[("app/Dockerfile", "FROM scratch\n")]);
        let e = context_tar(&s, "ap").unwrap_err().to_string();
        assert!(
            e.contains("build context ap is not a folder of the commit"),
            "{e}"
        );
        let e = context_tar(&s, "app/../..").unwrap_err().to_string();
        assert!(e.contains("outside the managed repo"), "{e}");
    }

    #[test]
    fn dockerignore_root_anchored_globs() {
        let paths = [
            "ctx/a.log",
            "ctx/sub/b.log",
            "ctx/sub/deep/c.log",
            "ctx/keep.txt",
        ];
        assert_eq!(
            with_ignore("*.log\n", &paths),
            vec!["keep.txt", "sub/b.log", "sub/deep/c.log"],
            "`*.log` is anchored at the context root, as docker does (not git)"
        );
        assert_eq!(with_ignore("**/*.log\n", &paths), vec!["keep.txt"]);
        assert_eq!(
            with_ignore("sub/*.log\n", &paths),
            vec!["a.log", "keep.txt", "sub/deep/c.log"]
        );
        assert_eq!(
            with_ignore("# comment\n\n  /sub/  \n./a.log\n", &paths),
            vec!["keep.txt"]
        );
        assert_eq!(
            with_ignore("sub/deep/../b.log\n", &paths),
            vec!["a.log", "keep.txt", "sub/deep/c.log"],
            "patterns are cleaned like filepath.Clean"
        );
        assert_eq!(
            with_ignore("?.log\nkeep.tx[st]\n", &paths),
            vec!["sub/b.log", "sub/deep/c.log"]
        );
    }

    #[test]
    fn dockerignore_exceptions_follow_docker_order() {
        let paths = [
            "ctx/logs/a.log",
            "ctx/logs/keep.log",
            "ctx/logs/old/b.log",
            "ctx/src/m.c",
        ];
        assert_eq!(
            with_ignore("logs\n!logs/keep.log\n", &paths),
            vec!["logs/keep.log", "src/m.c"],
            "docker re-includes a file below an excluded folder"
        );
        assert_eq!(
            with_ignore("!logs/keep.log\nlogs\n", &paths),
            vec!["src/m.c"],
            "the last matching pattern wins"
        );
        assert_eq!(with_ignore("*\n!src\n", &paths), vec!["src/m.c"]);
        assert_eq!(
            with_ignore("logs/**\n!logs/old\n", &paths),
            vec!["logs/old/b.log", "src/m.c"]
        );
    }

    #[test]
    fn dockerfile_and_dockerignore_are_never_excluded() {
        let s = snap(&[
            ("ctx/.dockerignore", "*\n"),
            ("ctx/Dockerfile", "FROM scratch\n"),
            ("ctx/build/prod.Dockerfile", "FROM scratch\n"),
            ("ctx/x", "x"),
        ]);
        let mut got = files_in(&context_tar(&s, "ctx").unwrap());
        got.sort();
        assert_eq!(got, vec![".dockerignore", "Dockerfile"]);
        let req = BuildRequest {
            tag: "t".into(),
            context_dir: "ctx".into(),
            dockerfile: "build/prod.Dockerfile".into(),
            ..Default::default()
        };
        let mut got = files_in(&request_tar(&s, &req).unwrap());
        got.sort();
        assert_eq!(got, vec![".dockerignore", "build/prod.Dockerfile"]);
    }

    #[test]
    fn dockerfile_outside_the_context_is_sent_under_another_name() {
        let s = snap(&[("svc/Dockerfile.app", "FROM scratch\n"), ("svc/app/x", "x")]);
        let req = BuildRequest {
            tag: "t".into(),
            context_dir: "svc/app".into(),
            dockerfile: "../Dockerfile.app".into(),
            ..Default::default()
        };
        let name = dockerfile_in_tar(&req.context_dir, &req.dockerfile).unwrap();
        assert!(name.starts_with(".dockerfile."), "{name}");
        let got = files_in(&request_tar(&s, &req).unwrap());
        assert_eq!(got, vec!["x".to_string(), name]);
        let missing = BuildRequest {
            dockerfile: "Nope".into(),
            ..req
        };
        let e = request_tar(&s, &missing).unwrap_err().to_string();
        assert!(
            e.contains("the Dockerfile svc/app/Nope is not in the commit"),
            "{e}"
        );
    }

    #[test]
    fn clean_path_is_go_filepath_clean() {
        for (input, want) in [
            ("", "."),
            ("./a/", "a"),
            ("a//b/./c/..", "a/b"),
            ("/../a", "/a"),
            ("../a", "../a"),
            ("a/../..", ".."),
            ("/", "/"),
        ] {
            assert_eq!(clean_path(input), want, "{input:?}");
        }
    }
}

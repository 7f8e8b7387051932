//! Watches the secrets dir (inotify through notify) and asks for a reconcile when a
//! `<stack>.env` file, or any file under a stack's folder of host files `<stack>/` (env files and
//! `secrets:` files kept off Git, at any depth), is created, changed, renamed, removed or has its
//! mode changed. The watch is recursive; links are not followed (a host file that is a link is
//! resolved inside its stack's folder, which is watched).
//!
//! The directory is watched, not the files: an atomic save (write a temp file, rename it over
//! `app.env`) arrives as Create(tmp) then a rename whose target is `app.env`. Events are
//! debounced: the nudge goes out once the directory has been quiet for the debounce time (at
//! most 10 debounce times after the first event, so a file rewritten in a loop still counts).
//! Opening a file is an event too (gitmoor reads them at each reconcile): access events are
//! ignored, or every reconcile would cause the next. Only file names are logged, never contents.

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// What the watcher saw, after debouncing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These stacks' secrets files (`<stack>.env`) or host files (`<stack>/…`) changed.
    Stacks(BTreeSet<String>),
    /// The directory itself went away (or was moved): it is watched again once it is back.
    DirGone,
    /// Changes may have been missed (the kernel's event queue overflowed, or the directory came
    /// back after being missing): any stack's file may differ, so reconcile them all.
    Rescan,
}

/// The stack a path names when it is `<dir>/<stack>.env` (editor temp files and dotfiles are not),
/// or the folder `<dir>/<stack>/` or anything under it (where every file counts: `.db.env` is a
/// host file as much as `db.env`).
pub fn stack_of(path: &Path, dir: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    let mut parts = rel.components();
    let first = match parts.next()? {
        std::path::Component::Normal(n) => n.to_str()?,
        _ => return None,
    };
    if first.starts_with('.') {
        return None;
    }
    if parts.next().is_some() {
        return Some(first.to_string());
    }
    if let Some(stack) = first.strip_suffix(".env") {
        return (!stack.is_empty() && !stack.starts_with('.')).then(|| stack.to_string());
    }
    // The stack's folder itself (created, removed, renamed): a name with no dot is a stack name;
    // `app.env.tmp` or `notes.txt` at the top is not.
    (!first.contains('.')).then(|| first.to_string())
}

fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(m) => !matches!(m, ModifyKind::Other),
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

enum Raw {
    Stack(String),
    DirGone,
    Rescan,
}

/// Watches `dir` until `stop` resolves, calling `on_change` after each debounced burst. When the
/// directory does not exist (yet), it is looked for again every `retry`.
pub async fn watch_secrets(
    dir: PathBuf,
    debounce: Duration,
    retry: Duration,
    on_change: impl Fn(Change) + Send + 'static,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut warned = false;
    loop {
        let (tx, mut rx) = mpsc::channel::<Raw>(256);
        let watcher = start(&dir, tx);
        let _watcher: RecommendedWatcher = match watcher {
            Ok(w) => {
                if warned {
                    info!(dir = %dir.display(), "watching the secrets dir");
                    // Files written while it was missing made no event.
                    on_change(Change::Rescan);
                }
                debug!(dir = %dir.display(), "watching the secrets dir");
                warned = false;
                w
            }
            Err(e) => {
                if !warned {
                    warn!(dir = %dir.display(), error = %e, "cannot watch the secrets dir; secrets edits are seen at the next poll until it exists");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry) => continue,
                    _ = &mut stop => return,
                }
            }
        };
        // Events until the directory goes away.
        loop {
            let first = tokio::select! {
                ev = rx.recv() => ev,
                _ = &mut stop => return,
            };
            let Some(first) = first else { break };
            let mut stacks = BTreeSet::new();
            let (mut gone, mut rescan) = (false, false);
            let mut take = |raw: Raw| match raw {
                Raw::Stack(s) => {
                    stacks.insert(s);
                }
                Raw::DirGone => gone = true,
                Raw::Rescan => rescan = true,
            };
            take(first);
            let deadline = tokio::time::Instant::now() + debounce * 10;
            loop {
                let quiet = tokio::time::sleep(debounce);
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(raw) => take(raw),
                        None => break,
                    },
                    _ = quiet => break,
                    _ = tokio::time::sleep_until(deadline) => break,
                    _ = &mut stop => return,
                }
            }
            if rescan {
                on_change(Change::Rescan);
            } else if !stacks.is_empty() {
                on_change(Change::Stacks(stacks));
            }
            if gone {
                on_change(Change::DirGone);
                break;
            }
        }
    }
}

fn start(dir: &Path, tx: mpsc::Sender<Raw>) -> notify::Result<RecommendedWatcher> {
    let root = dir.to_path_buf();
    let handler = move |res: notify::Result<notify::Event>| {
        // An error or an overflowed queue means events were lost: which files changed is unknown.
        let Ok(ev) = res else {
            let _ = tx.try_send(Raw::Rescan);
            return;
        };
        if ev.need_rescan() {
            let _ = tx.try_send(Raw::Rescan);
            return;
        }
        if !relevant(&ev.kind) {
            return;
        }
        for p in &ev.paths {
            let raw = if *p == root {
                match ev.kind {
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => Raw::DirGone,
                    _ => continue,
                }
            } else if let Some(stack) = stack_of(p, &root) {
                Raw::Stack(stack)
            } else {
                continue;
            };
            // A full channel already holds a pending change: dropping this one loses nothing
            // but a stack name in the log line.
            let _ = tx.try_send(raw);
        }
    };
    // Recursive for the stacks' folders of host files; a link there is not followed (a link out
    // of the folder is refused when the file is read, and watching its target could mean `/`).
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut w = RecommendedWatcher::new(handler, config)?;
    w.watch(dir, RecursiveMode::Recursive)?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn only_stack_env_files_directly_in_the_dir_count() {
        let d = Path::new("/etc/gitmoor/secrets");
        let s = |p: &str| stack_of(Path::new(p), d);
        assert_eq!(s("/etc/gitmoor/secrets/app.env").as_deref(), Some("app"));
        assert_eq!(s("/etc/gitmoor/secrets/.app.env.swp"), None);
        assert_eq!(s("/etc/gitmoor/secrets/app.env.tmp"), None);
        assert_eq!(s("/etc/gitmoor/secrets/app.env~"), None);
        assert_eq!(s("/etc/gitmoor/secrets/.env"), None);
        assert_eq!(s("/etc/gitmoor/other/app.env"), None);
        assert_eq!(s("/etc/gitmoor/secrets/notes.txt"), None);
        assert_eq!(s("/etc/gitmoor/secrets/.hidden/db.env"), None);
    }

    #[test]
    fn anything_under_a_stack_folder_names_the_stack() {
        let d = Path::new("/etc/gitmoor/secrets");
        let s = |p: &str| stack_of(Path::new(p), d);
        assert_eq!(s("/etc/gitmoor/secrets/app/db.env").as_deref(), Some("app"));
        assert_eq!(
            s("/etc/gitmoor/secrets/app/.db.env").as_deref(),
            Some("app")
        );
        assert_eq!(
            s("/etc/gitmoor/secrets/netbox/env/netbox.env").as_deref(),
            Some("netbox")
        );
        assert_eq!(s("/etc/gitmoor/secrets/netbox").as_deref(), Some("netbox"));
    }

    #[tokio::test]
    async fn an_atomic_save_is_one_debounced_change_and_reads_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::write(root.join("app.env"), "A=1\n").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(watch_secrets(
            root.clone(),
            Duration::from_millis(200),
            Duration::from_millis(100),
            move |c| s2.lock().unwrap().push(c),
            async {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Reading is not a change.
        for _ in 0..3 {
            let _ = std::fs::read(root.join("app.env")).unwrap();
        }
        // An atomic save, then two more writes in quick succession, plus an unrelated file.
        std::fs::write(root.join("app.env.tmp"), "A=2\n").unwrap();
        std::fs::rename(root.join("app.env.tmp"), root.join("app.env")).unwrap();
        std::fs::write(root.join("app.env"), "A=3\n").unwrap();
        std::fs::write(root.join("notes.txt"), "x").unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let got = seen.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![Change::Stacks(BTreeSet::from(["app".to_string()]))]
        );
        let _ = stop_tx.send(());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn an_edit_under_a_stack_folder_nudges_that_stack_at_any_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("app/env")).unwrap();
        std::fs::write(root.join("app/env/db.env"), "A=1\n").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(watch_secrets(
            root.clone(),
            Duration::from_millis(150),
            Duration::from_millis(100),
            move |c| s2.lock().unwrap().push(c),
            async {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let wait = |n: usize| {
            let seen = seen.clone();
            async move {
                let end = std::time::Instant::now() + Duration::from_secs(20);
                while seen.lock().unwrap().len() < n && std::time::Instant::now() < end {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        };
        // An edit two folders down, read nowhere else.
        std::fs::write(root.join("app/env/db.env"), "A=2\n").unwrap();
        wait(1).await;
        // A folder made after the watch started is watched too (its own creation names the stack).
        std::fs::create_dir_all(root.join("netbox/env")).unwrap();
        std::fs::write(root.join("netbox/env/netbox.env"), "B=1\n").unwrap();
        wait(2).await;
        std::fs::write(root.join("netbox/env/netbox.env"), "B=2\n").unwrap();
        wait(3).await;
        let got = seen.lock().unwrap().clone();
        let one = |s: &str| Change::Stacks(BTreeSet::from([s.to_string()]));
        assert_eq!(got, vec![one("app"), one("netbox"), one("netbox")]);
        let _ = stop_tx.send(());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_dir_that_appears_later_is_rescanned_once_watched() {
        let parent = tempfile::tempdir().unwrap();
        let root = parent.path().join("secrets");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(watch_secrets(
            root.clone(),
            Duration::from_millis(100),
            Duration::from_millis(100),
            move |c| s2.lock().unwrap().push(c),
            async {
                let _ = stop_rx.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(seen.lock().unwrap().is_empty());
        // Made while nothing watches it: no event will ever name app.env.
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("app.env"), "A=1\n").unwrap();
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while seen.lock().unwrap().is_empty() && std::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(seen.lock().unwrap().first(), Some(&Change::Rescan));
        let _ = stop_tx.send(());
        task.await.unwrap();
    }
}

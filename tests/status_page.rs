//! The status page of the real daemon, as a person sees it: headless Chromium (Debian's
//! `chromium`) renders it at a phone's width (390 CSS px); nothing is cut at the right edge, and
//! every string from the repo (a commit subject full of markup) is escaped. The screenshot is
//! kept in the target dir (`status-page-phone.png`) for a human to look at.

mod server_support;
mod support;
use server_support::*;
use std::process::Command;
use support::*;

const PHONE_WIDTH: u32 = 390;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser"] {
        if Command::new(c).arg("--version").output().is_ok() {
            return c;
        }
    }
    panic!("headless Chromium is needed for this test: apt-get install chromium (scripts/setup installs it)");
}

#[test]
fn status_page_reads_on_a_phone_in_headless_chromium() {
    let stack = unique("pg");
    let _guard = StackGuard(stack.clone());
    let remote = Remote::new();
    let (host, port) = host_with_server(&remote, "status_refresh_secs: 15\n");
    remote.write(
        &format!("compose/{stack}/compose.yaml"),
        "services:\n  api-with-a-rather-long-service-name:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n    healthcheck:\n      test: [\"CMD\", \"true\"]\n      interval: 1s\n  worker:\n    image: example-busybox:1\n    command: [\"sleep\", \"3600\"]\n",
    );
    let evil = r#"<script>alert("x")</script> & <b>bold</b> 'quoted' averyveryverylongwordwithoutanyspacesthatwouldoverflowanarrowphonescreenifnotwrapped"#;
    let sha = remote.commit(evil);
    let d = Daemon::start(&host, port);
    d.wait_synced(&sha, 120);

    // The HTML itself: escaped, no script, refreshes itself, made for a phone.
    let (code, page) = d.get("/").unwrap();
    assert_eq!(code, 200);
    assert!(!page.to_lowercase().contains("<script"), "{page}");
    assert!(!page.contains("<b>bold</b>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; &#39;quoted&#39;"),
        "{page}"
    );
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"15\">"));
    assert!(page.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
    for want in [
        stack.as_str(),
        "api-with-a-rather-long-service-name",
        "worker",
        "synced",
        &sha[..10],
    ] {
        assert!(page.contains(want), "{want} missing from the page");
    }

    // Chromium at a phone's width.
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = out_dir.join("status-page-phone.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/");
    let out = run(Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--force-device-scale-factor=1",
            &format!("--window-size={PHONE_WIDTH},1400"),
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .env("HOME", profile.path()));
    assert!(
        shot.exists(),
        "chromium made no screenshot:\n{}",
        output_text(&out)
    );
    eprintln!("screenshot: {}", shot.display());

    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.width, PHONE_WIDTH, "the screenshot is not phone-wide");
    let channels = info.color_type.samples();
    let px = |x: u32, y: u32| {
        let i = (y as usize * info.line_size) + x as usize * channels;
        buf[i..i + 3].to_vec()
    };
    // The page background shows in the rightmost columns from top to bottom: nothing (a long
    // word, a table, a <pre>) runs past a 390 px screen.
    let background = px(info.width - 1, 0);
    for y in 0..info.height {
        for x in info.width - 6..info.width {
            assert_eq!(
                px(x, y),
                background,
                "something reaches the right edge at ({x}, {y}); see {}",
                shot.display()
            );
        }
    }
    // And the page is not blank: plenty of pixels differ from the background.
    let drawn = (0..info.height)
        .flat_map(|y| (0..info.width).map(move |x| (x, y)))
        .filter(|(x, y)| px(*x, *y) != background)
        .count();
    assert!(
        drawn > 10_000,
        "the page looks empty ({drawn} drawn pixels)"
    );
}

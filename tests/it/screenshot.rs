//! The status page as a person sees it: headless Chromium renders the real router (on
//! 127.0.0.1:0) at laptop and phone widths. The PNGs are kept under the target directory
//! (`target/tmp/screenshots/`) for a human to look at.
//!
//! Chromium is required: `tests/run` installs it. Missing, these tests fail; they never skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coldstart::web;
use coldstart::web::Auth;

use super::web::{realistic_view, state_with};

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {candidate}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return candidate;
        }
    }
    panic!(
        "chromium is not installed: run `bash tests/run` (it installs it) or `apt-get install -y chromium`"
    );
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && &bytes[..8] == b"\x89PNG\r\n\x1a\n",
        "not a PNG"
    );
    let w = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let h = u32::from_be_bytes(bytes[20..24].try_into().expect("4 bytes"));
    (w, h)
}

fn screenshot(url: &str, width: u32, height: u32, out: &Path) {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--window-size={width},{height}"),
            &format!("--screenshot={}", out.display()),
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                status.success() || out.exists(),
                "chromium failed: {status}"
            );
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn shoot(name: &str, width: u32, height: u32) -> (PathBuf, Vec<u8>) {
    let (view, progress) = realistic_view();
    let state = state_with(view, progress, Auth::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, web::router(state))
            .await
            .expect("serve");
    });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let out = dir.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&out);
    let url = format!("http://{addr}/");
    let o = out.clone();
    tokio::task::spawn_blocking(move || screenshot(&url, width, height, &o))
        .await
        .expect("join");
    server.abort();
    let bytes = std::fs::read(&out).expect("chromium wrote the screenshot");
    (out, bytes)
}

#[tokio::test]
async fn the_status_page_renders_in_chromium_at_laptop_width() {
    let (path, png) = shoot("status-laptop", 1280, 1600).await;
    assert_eq!(png_size(&png), (1280, 1600), "{}", path.display());
    // A blank or error page compresses to a few KB; the real page is far richer.
    assert!(
        png.len() > 60_000,
        "screenshot is suspiciously small: {} bytes",
        png.len()
    );
}

#[tokio::test]
async fn the_status_page_renders_in_chromium_at_phone_width() {
    let (path, png) = shoot("status-phone", 375, 1400).await;
    assert_eq!(png_size(&png), (375, 1400), "{}", path.display());
    assert!(
        png.len() > 25_000,
        "screenshot is suspiciously small: {} bytes",
        png.len()
    );
}

//! The container image deploy/image/build.sh builds (tests/run builds it first): its config
//! says how the Deployment runs it, its one layer holds a static binary that runs on its
//! own, as the image's non-root user, and accepts the shipped configuration. A broken image
//! fails here, not in a cluster.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The image tarball: $COLDSTART_IMAGE_TAR, else where build.sh writes it. Missing is a
/// failure, never a skip: a suite that did not build the image has not tested it.
fn tarball() -> PathBuf {
    let path = std::env::var_os("COLDSTART_IMAGE_TAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo("target/image/coldstart-image.tar"));
    assert!(
        path.is_file(),
        "no image tarball at {}: build it with `bash deploy/image/build.sh` (tests/run does)",
        path.display()
    );
    path
}

struct Unpacked {
    // Kept for its Drop: removed when the test ends.
    _dir: tempfile::TempDir,
    manifest: Value,
    config: Value,
    layer: PathBuf,
    rootfs: PathBuf,
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// The tarball unpacked into a temporary directory: manifest.json, the config and the
/// layer, extracted as-is.
fn image() -> Unpacked {
    let dir = tempfile::tempdir().expect("temp dir");
    // The image's user (65532) runs the binary below: it must reach it.
    set_mode(dir.path(), 0o755);
    let tar = dir.path().join("image");
    std::fs::create_dir(&tar).expect("mkdir");
    run(Command::new("tar")
        .arg("-xf")
        .arg(tarball())
        .arg("-C")
        .arg(&tar));
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(tar.join("manifest.json")).expect("manifest.json in the tarball"),
    )
    .expect("manifest.json parses");
    let entry = &manifest[0];
    let config: Value = serde_json::from_slice(
        &std::fs::read(tar.join(entry["Config"].as_str().expect("Config"))).expect("config"),
    )
    .expect("config parses");
    let layers = entry["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 1, "one layer: {layers:?}");
    let layer = tar.join(layers[0].as_str().expect("layer path"));
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).expect("mkdir");
    set_mode(&rootfs, 0o755);
    // Unpacked as the runtime would: owners and modes as recorded in the layer.
    run(Command::new("tar")
        .args([
            "--same-owner",
            "--same-permissions",
            "--numeric-owner",
            "-xzf",
        ])
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    Unpacked {
        _dir: dir,
        manifest,
        config,
        layer,
        rootfs,
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs the image's binary with `args`, as the image's user when we can switch to it
/// (root, as in CI: setpriv), so a binary only root could run fails here.
fn coldstart(image: &Unpacked, args: &[&str]) -> Output {
    let binary = image.rootfs.join("usr/local/bin/coldstart");
    let as_root = run(Command::new("id").arg("-u")).stdout == b"0\n";
    let mut cmd = if as_root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65532", "--regid=65532", "--clear-groups"])
            .arg(&binary);
        c
    } else {
        Command::new(&binary)
    };
    cmd.args(args)
        .env_clear()
        .env(
            "SSL_CERT_FILE",
            image.rootfs.join("etc/ssl/certs/ca-certificates.crt"),
        )
        .current_dir(&image.rootfs)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", binary.display()))
}

/// True when the ELF file asks for a program interpreter (PT_INTERP): dynamically linked,
/// and so unable to start in an image without a libc and loader.
fn is_dynamic(elf: &[u8]) -> bool {
    assert!(
        elf.starts_with(b"\x7fELF") && elf[4] == 2,
        "a 64-bit ELF file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&elf[0x20..0x28]);
    let phoff = u64::from_le_bytes(phoff) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let at = phoff + i * phentsize;
        u32::from_le_bytes([elf[at], elf[at + 1], elf[at + 2], elf[at + 3]]) == 3
    })
}

#[test]
fn the_image_is_tagged_with_the_reference_the_deployment_uses() {
    let tags = image().manifest[0]["RepoTags"].to_string();
    let deployment =
        std::fs::read_to_string(repo("deploy/base/deployment.yaml")).expect("deployment.yaml");
    let want = format!(
        "ghcr.io/coldstart-dev/coldstart:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        deployment.contains(&format!("image: {want}\n")),
        "the base deploys {want}"
    );
    assert_eq!(tags, format!("[\"{want}\"]"));
}

#[test]
fn the_image_config_runs_coldstart_as_non_root_with_its_provenance_labels() {
    let image = image();
    let c = &image.config;
    assert_eq!(c["os"], "linux");
    assert_eq!(c["architecture"], "amd64");
    let cfg = &c["config"];
    assert_eq!(
        cfg["Entrypoint"],
        serde_json::json!(["/usr/local/bin/coldstart"])
    );
    // The Deployment's runAsUser; runAsNonRoot needs a numeric user to verify.
    assert_eq!(cfg["User"], "65532:65532");
    let labels = &cfg["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{labels}"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("a revision label");
    let commit = revision.trim_end_matches("-dirty");
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "the revision is a git commit: {revision}"
    );
}

#[test]
fn the_layer_holds_a_static_binary_owned_by_root_and_nothing_writable_but_tmp() {
    let image = image();
    let listing = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(image.layer.as_path()));
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for line in listing.lines() {
        let mut f = line.split_whitespace();
        let (mode, owner) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        let path = line.rsplit(' ').next().unwrap_or_default();
        assert_eq!(owner, "0/0", "{line}");
        // Nothing the process could rewrite, even with a writable root filesystem.
        let world_writable = mode.as_bytes().get(8) == Some(&b'w');
        assert_eq!(world_writable, path == "./tmp/", "{line}");
    }
    assert!(
        listing.contains("-rwxr-xr-x 0/0") && listing.contains("./usr/local/bin/coldstart"),
        "{listing}"
    );
    let binary = std::fs::read(image.rootfs.join("usr/local/bin/coldstart")).expect("binary");
    assert!(
        !is_dynamic(&binary),
        "the binary is dynamically linked: the image has no loader"
    );
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    let ca = std::fs::read_to_string(image.rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("CA bundle");
    assert!(ca.contains("BEGIN CERTIFICATE"), "TLS needs CA roots");
}

#[test]
fn the_binary_from_the_image_prints_its_version_and_checks_the_shipped_config() {
    let image = image();
    let out = coldstart(&image, &["--version"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!("coldstart {}", env!("CARGO_PKG_VERSION"))
    );

    // Copies readable by the image's user, wherever the checkout is.
    let dir = tempfile::tempdir().expect("temp dir");
    set_mode(dir.path(), 0o755);
    let readable = |name: &str, text: &str| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        set_mode(&path, 0o644);
        path.display().to_string()
    };
    for config in [
        "deploy/base/config.yaml",
        "deploy/overlays/aws/config.yaml",
        "deploy/overlays/azure/config.yaml",
        "deploy/overlays/gcp/config.yaml",
    ] {
        // The secret sources point where the pod mounts them; here they are files beside the
        // config, so `--check-config` really reads (and parses) them.
        let key = readable(
            "encryption-key",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        );
        let token = readable("api-token", "not-a-real-token\n");
        let text = std::fs::read_to_string(repo(config))
            .expect("config")
            .replace("/var/run/secrets/coldstart/encryption-key", &key)
            .replace("/var/run/secrets/coldstart/api-token", &token);
        let path = readable(&config.replace('/', "-"), &text);
        let out = coldstart(&image, &["serve", "--config", &path, "--check-config"]);
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("configuration is valid"),
            "{config}"
        );
    }

    // And it really checks: a broken schedule is refused, naming the field.
    let text = std::fs::read_to_string(repo("deploy/base/config.yaml"))
        .expect("config")
        .replace("*/15 * * * *", "*/15 * * *");
    let bad = readable("broken.yaml", &text);
    let out = coldstart(&image, &["serve", "--config", &bad, "--check-config"]);
    assert!(!out.status.success(), "a broken cron was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schedules.snapshot.cron"), "{stderr}");
}

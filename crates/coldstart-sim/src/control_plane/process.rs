//! Child processes of the control plane: spawned so that they die with the launcher, their
//! output kept in a log file whose tail explains a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::Error;

/// One running component.
#[derive(Debug)]
pub struct Component {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
    /// The port it listens on, when it was picked for it alone.
    pub lease: Option<PortLease>,
}

impl Component {
    /// Start `bin` with `args`, stdout and stderr appended to `log`.
    ///
    /// `kill_on_drop` covers a launcher that unwinds; `setpriv --pdeathsig KILL` (util-linux)
    /// covers one that is killed outright, which no destructor sees. It is used when present
    /// because setting the parent-death signal directly would need `unsafe` (`pre_exec`).
    pub fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[String],
        log: PathBuf,
    ) -> Result<Self, Error> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| Error::Io {
                what: format!("open {}", log.display()),
                source,
            })?;
        let err = out.try_clone().map_err(|source| Error::Io {
            what: format!("open {}", log.display()),
            source,
        })?;
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.exists() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(bin);
            c
        } else {
            Command::new(bin)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            name,
            bin: bin.to_path_buf(),
            source,
        })?;
        Ok(Component {
            name,
            child,
            log,
            lease: None,
        })
    }

    /// The process id (setpriv execs the component, so it is the component's own).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fail with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                name: self.name,
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 25),
            }),
            _ => Ok(()),
        }
    }

    /// Kill the process and reap it.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Resident memory in bytes (Linux), read from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where the components' ports are picked: below Linux's ephemeral range (32768–60999),
/// which every `bind(":0")` and outgoing connection on the machine draws from. A port
/// picked there could be handed to another process in the seconds before the component
/// binds it (kwok, last to start, lost its port that way to a test's server); one below it
/// is only taken by whoever asks for it by number.
const PORTS: std::ops::Range<u16> = 20000..32000;

/// A loopback port this control plane holds for as long as the lease lives.
///
/// Checking that nobody listens is not enough: control planes started by other processes
/// at the same moment (nextest runs each test in its own) check too, and a port stays
/// unbound between the check and the component's bind, and again while a teardown restarts
/// its components on the same address. Two test beds once both picked 25922 and the second
/// kube-apiserver exited with "address already in use". So every picker also takes an
/// exclusive lock on a file named after the port, held until the lease is dropped; the
/// kernel releases it when the process dies, however it dies, so no lease outlives its
/// holder.
#[derive(Debug)]
pub struct PortLease {
    pub port: u16,
    _lock: std::fs::File,
}

/// Lease a loopback port nobody listens on and no other control plane holds (the component
/// binds it a moment later).
pub fn lease_port() -> Result<PortLease, Error> {
    lease_in(PORTS)
}

fn lease_in(ports: std::ops::Range<u16>) -> Result<PortLease, Error> {
    use rand::Rng as _;
    let dir = std::env::temp_dir().join("coldstart-ports");
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        what: format!("create {}", dir.display()),
        source,
    })?;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rng.random_range(ports.clone());
        let path = dir.join(format!("{port}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Io {
                what: format!("open {}", path.display()),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    what: format!("lock {}", path.display()),
                    source,
                });
            }
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(PortLease { port, _lock: file });
        }
    }
    Err(Error::Io {
        what: format!("find a free loopback port in {ports:?}"),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two ports out of the way of `PORTS`, so test beds running beside never meet these
    /// leases.
    const TWO: std::ops::Range<u16> = 19_990..19_992;

    #[test]
    fn a_leased_port_is_handed_to_nobody_else_until_the_lease_is_dropped() {
        let first = lease_in(TWO).expect("first lease");
        let second = lease_in(TWO).expect("second lease");
        assert_ne!(first.port, second.port, "each lease gets its own port");
        let refused = lease_in(TWO).expect_err("both ports are held");
        assert!(
            refused.to_string().contains("free loopback port"),
            "the error names what it looked for: {refused}"
        );
        let freed = first.port;
        drop(first);
        let again = lease_in(TWO).expect("a dropped lease frees its port");
        assert_eq!(again.port, freed);
    }
}

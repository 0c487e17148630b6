//! The RHEL world's guest channel (`guests::channel::SshChannel`) against a
//! real OpenSSH server: sshd runs in a network namespace this test creates,
//! reached over a veth pair it also creates (no other address is touched),
//! with root's only authorized key the lab's own key.

// The test starts sshd and ip itself.
#![allow(clippy::disallowed_methods)]

use std::{
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use edgelab::{
    guests::channel::{self, GuestChannel, SshChannel},
    store::Store,
};

const GUEST_ADDRESS: &str = "10.213.7.2";
const PORT: u16 = 2222;

/// The namespace, the veth pair and sshd; all removed on drop.
struct SshGuest {
    netns: String,
    host_if: String,
    dir: PathBuf,
    sshd: Option<Child>,
}

impl SshGuest {
    fn new(dir: &Path, authorized_key: &str) -> SshGuest {
        let id = std::process::id() % 100_000;
        let guest = SshGuest {
            netns: format!("edgelab-ssh-{id}"),
            host_if: format!("esh{id}h"),
            dir: dir.to_path_buf(),
            sshd: None,
        };
        let peer = format!("esh{id}g");
        run("ip", &["netns", "add", &guest.netns]);
        run("ip", &["link", "add", &guest.host_if, "type", "veth", "peer", "name", &peer]);
        run("ip", &["link", "set", &peer, "netns", &guest.netns]);
        run("ip", &["addr", "add", "10.213.7.1/24", "dev", &guest.host_if]);
        run("ip", &["link", "set", &guest.host_if, "up"]);
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", guest.netns.as_str(), "ip"];
            all.extend(args);
            run("ip", &all);
        };
        inside(&["addr", "add", &format!("{GUEST_ADDRESS}/24"), "dev", &peer]);
        inside(&["link", "set", &peer, "up"]);
        inside(&["link", "set", "lo", "up"]);
        std::fs::write(dir.join("authorized_keys"), format!("{authorized_key}\n")).unwrap();
        guest
    }

    /// Starts sshd with a new host key.
    fn start_sshd(&mut self) {
        self.stop_sshd();
        let host_key = self.dir.join("host_ed25519");
        std::fs::remove_file(&host_key).ok();
        std::fs::remove_file(self.dir.join("host_ed25519.pub")).ok();
        edgelab::tools::ssh::keygen(&host_key, "edgelab test sshd").unwrap();
        let config = self.dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {PORT}\nListenAddress {GUEST_ADDRESS}\nHostKey {}\nPidFile none\nAuthorizedKeysFile {}\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\n",
                host_key.display(),
                self.dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        // sshd's privilege separation folder.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let sshd = which("sshd");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stderr(std::fs::File::create(self.dir.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        let address: SocketAddr = format!("{GUEST_ADDRESS}:{PORT}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for SshGuest {
    fn drop(&mut self) {
        self.stop_sshd();
        Command::new("ip").args(["link", "del", &self.host_if]).status().ok();
        Command::new("ip").args(["netns", "del", &self.netns]).status().ok();
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().unwrap_or_else(|err| panic!("{program}: {err}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn which(program: &str) -> PathBuf {
    edgelab::tools::require(program).unwrap_or_else(|err| panic!("{err:#}"))
}

fn channel_with<'a>(key: &Path, known_hosts: &Path) -> SshChannel<'a> {
    SshChannel {
        key: key.to_path_buf(),
        known_hosts: known_hosts.to_path_buf(),
        port: PORT,
        address_of: Box::new(|_| Ok(GUEST_ADDRESS.to_string())),
    }
}

#[test]
fn the_ssh_channel_runs_root_commands_with_the_lab_key_and_pins_the_host_key() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let key = channel::lab_key(&store, "ssh-test").unwrap();
    assert!(key.public.starts_with("ssh-ed25519 ") && key.public.ends_with("edgelab ssh-test"), "{}", key.public);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key.private).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is the user's alone");
    // The same key on the next call: made once per store.
    assert_eq!(channel::lab_key(&store, "ssh-test").unwrap().public, key.public);

    let sshd_dir = tmp.path().join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let mut guest = SshGuest::new(&sshd_dir, &key.public);
    guest.start_sshd();
    let known_hosts = tmp.path().join("known_hosts");
    let ssh = channel_with(&key.private, &known_hosts);

    let out = ssh.run("edge-device-1", "echo hello; echo oops >&2; exit 3", Duration::from_secs(30)).unwrap();
    assert_eq!(out.status, 3, "{out:?}\n{}", guest.log());
    assert!(out.text.contains("hello") && out.text.contains("oops"), "{out:?}");
    let out = ssh.run("edge-device-1", "id -u", Duration::from_secs(30)).unwrap();
    assert_eq!((out.status, out.text.trim()), (0, "0"));
    let pinned = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(pinned.lines().count(), 1, "{pinned}");

    // Another key is refused, with what to do.
    let other = tmp.path().join("other_ed25519");
    edgelab::tools::ssh::keygen(&other, "not the lab's").unwrap();
    let err = channel_with(&other, &known_hosts).run("edge-device-1", "true", Duration::from_secs(30)).unwrap_err();
    assert!(format!("{err:#}").contains("refused the lab's key"), "{err:#}");

    // A guest whose host key changed is refused, never trusted again silently.
    guest.start_sshd();
    let err = ssh.run("edge-device-1", "true", Duration::from_secs(30)).unwrap_err();
    assert!(format!("{err:#}").contains("host key is not the one first seen"), "{err:#}");

    // Nobody listening: a clear error, within the timeout.
    guest.stop_sshd();
    let started = Instant::now();
    let err = ssh.run("edge-device-1", "true", Duration::from_secs(5)).unwrap_err();
    assert!(format!("{err:#}").contains("could not reach guest edge-device-1"), "{err:#}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

//! Tools: the external programs edgelab runs, each behind one typed wrapper.
//!
//! This is the only module that starts processes (clippy's
//! `disallowed-methods` enforces it, and the `tidy` test checks it). Every
//! wrapper knows its program's flags; this file holds what they share: a
//! command runner whose errors show the command line and the tail of stderr,
//! the lookup that turns a missing program into an install hint, and tool
//! identities (name and version) for keys.

#![allow(clippy::disallowed_methods)]

pub mod apt;
pub mod bash;
pub mod cargo;
pub mod chroot;
pub mod cowsay;
pub mod debugfs;
pub mod dnf;
pub mod docker_registry;
pub mod figlet;
pub mod firewall_cmd;
pub mod go;
pub mod graphviz;
pub mod ip;
pub mod isomd5;
pub mod keepalived;
pub mod ksvalidator;
pub mod mkfs;
pub mod mmdebstrap;
pub mod mtools;
pub mod nginx;
pub mod nmcli;
pub mod ostree;
pub mod ostree_sysroot;
pub mod packages;
pub mod pip;
pub mod podman;
pub mod process;
pub mod python;
pub mod qemu;
pub mod serve;
pub mod shellcheck;
pub mod ssh;
pub mod systemctl;
pub mod systemd_analyze;
pub mod usermod;
pub mod virsh;
pub mod virt_install;
pub mod wrk;
pub mod xorriso;

use std::{
    ffi::{OsStr, OsString},
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// An external program a wrapper starts, and where a host gets it. Each
/// wrapper declares its programs in a `PROGRAMS` const; `packages` gathers
/// them for the prereqs stage and for install hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    pub name: &'static str,
    /// The Debian package, when Debian has one.
    pub debian: Option<&'static str>,
    /// The RHEL package, when RHEL has one.
    pub rhel: Option<&'static str>,
    /// The PyPI package, for programs no Debian package provides; installed
    /// into edgelab's own virtual environment (`tools::pip`).
    pub pip: Option<&'static str>,
    /// Arguments that print its version (for tool identities in keys).
    pub version_args: &'static [&'static str],
}

/// A command line about to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    envs: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

/// What a finished command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            cwd: None,
            envs: Vec::new(),
            stdin: None,
            timeout: None,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Cmd {
        self.args.extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.envs.push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(bytes.into());
        self
    }

    /// Kill the command and fail when it runs longer than this.
    pub fn timeout(mut self, limit: Duration) -> Cmd {
        self.timeout = Some(limit);
        self
    }

    /// The command line as a user could paste it.
    pub fn display(&self) -> String {
        shell_line(std::iter::once(&self.program).chain(&self.args).map(|part| part.to_string_lossy()))
    }

    /// Runs to completion; a non-zero exit is an error showing the command
    /// line and the tail of stderr.
    pub fn run(&self) -> anyhow::Result<Output> {
        let output = self.run_unchecked()?;
        if !output.status.success() {
            bail!("{}", failure_message(&self.display(), &output));
        }
        Ok(output)
    }

    /// Runs to completion and returns whatever happened.
    pub fn run_unchecked(&self) -> anyhow::Result<Output> {
        let mut command = self.command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if self.stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().map_err(|err| spawn_error(&self.program, err))?;
        if let Some(bytes) = &self.stdin
            && let Some(mut stdin) = child.stdin.take()
        {
            let bytes = bytes.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                stdin.write_all(&bytes).ok();
            });
        }
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let read_out = std::thread::spawn(move || read_all(stdout));
        let read_err = std::thread::spawn(move || read_all(stderr));
        let status =
            wait_with_timeout(&mut child, self.timeout).with_context(|| format!("running `{}`", self.display()))?;
        let stdout = read_out.join().unwrap_or_default();
        let stderr = read_err.join().unwrap_or_default();
        match status {
            Some(status) => Ok(Output { status, stdout, stderr }),
            None => bail!(
                "`{}` did not finish within {:?} and was killed{}",
                self.display(),
                self.timeout.unwrap_or_default(),
                tail_section(&stderr)
            ),
        }
    }

    /// Runs with stdout and stderr passed through to the user's terminal.
    pub fn run_inherit(&self) -> anyhow::Result<ExitStatus> {
        let mut command = self.command();
        command.stdin(Stdio::inherit());
        let mut child = command.spawn().map_err(|err| spawn_error(&self.program, err))?;
        Ok(child.wait()?)
    }

    /// Starts the command in the background with output to `log`, in its own
    /// process group so a Ctrl-C at the terminal does not reach it.
    pub fn spawn_logged(&self, log: &Path) -> anyhow::Result<Child> {
        use std::os::unix::process::CommandExt;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let mut command = self.command();
        command.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
        command.process_group(0);
        command.spawn().map_err(|err| spawn_error(&self.program, err))
    }

    fn command(&self) -> Command {
        // Bare names resolve as `which` does (sbin, /usr/games and edgelab's
        // venv included), so a program `require` found is the one that runs.
        let resolved = self.program.to_str().filter(|name| !name.contains('/')).and_then(which);
        let mut command = Command::new(resolved.as_deref().map(OsStr::new).unwrap_or(&self.program));
        command.args(&self.args);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        for (name, value) in &self.envs {
            command.env(name, value);
        }
        command
    }
}

/// Words joined into one POSIX shell command line, each quoted where the
/// shell would otherwise split or expand it, so the line runs exactly that
/// argv (`guest exec`, and command lines shown in errors).
pub fn shell_line<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> String {
    words
        .into_iter()
        .map(|word| {
            let text = word.as_ref();
            if text.is_empty() || text.contains(|c: char| !(c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))) {
                format!("'{}'", text.replace('\'', "'\\''"))
            } else {
                text.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Finds `program` on PATH, or fails with how to install it.
pub fn require(program: &str) -> anyhow::Result<PathBuf> {
    match which(program) {
        Some(path) => Ok(path),
        None => bail!("{}", packages::missing_message(program)),
    }
}

/// The full path of `program` on PATH (sbin folders included, since tools
/// like mkfs.ext4 and debugfs live there).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    // Debian puts cowsay in /usr/games, which root's PATH often lacks.
    // edgelab's own venv holds the programs that come from PyPI (`pip`).
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/games"].map(PathBuf::from);
    std::env::split_paths(&path_var)
        .chain(extra)
        .chain([pip::venv_dir().join("bin")])
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

/// A tool's identity for keys: its name and the first line of its version
/// output, cached by the binary's stat so plans do not rerun `--version`.
pub fn identity(program: &str, cache: &mut IdentityCache) -> String {
    let Some(path) = which(program) else {
        return "missing".into();
    };
    let stamp = std::fs::metadata(&path)
        .map(|meta| {
            use std::os::unix::fs::MetadataExt;
            format!("{}:{}:{}:{}", path.display(), meta.ino(), meta.size(), meta.mtime())
        })
        .unwrap_or_default();
    if let Some(id) = cache.entries.get(&stamp) {
        return id.clone();
    }
    let version = packages::version_args(program)
        .and_then(|args| Cmd::new(&path).args(args).timeout(Duration::from_secs(20)).run_unchecked().ok())
        .map(|out| {
            let text = if out.stdout.trim().is_empty() { out.stderr } else { out.stdout };
            text.lines().find(|line| !line.trim().is_empty()).unwrap_or("").trim().to_string()
        })
        .unwrap_or_default();
    let id = if version.is_empty() { format!("{program} (unknown version)") } else { version };
    cache.entries.insert(stamp, id.clone());
    cache.dirty = true;
    id
}

/// Tool identities keyed by binary stat, kept in the store's run state.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct IdentityCache {
    entries: std::collections::BTreeMap<String, String>,
    #[serde(skip)]
    pub dirty: bool,
}

/// The message for a command that exited non-zero.
pub fn failure_message(command_line: &str, output: &Output) -> String {
    let status = match output.status.code() {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    };
    let tail = if output.stderr.trim().is_empty() { &output.stdout } else { &output.stderr };
    format!("`{command_line}` failed ({status}){}", tail_section(tail))
}

fn tail_section(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|line| !line.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(15);
    format!("; last lines of its output:\n  {}", lines[start..].join("\n  "))
}

fn spawn_error(program: &OsStr, err: std::io::Error) -> anyhow::Error {
    let name = program.to_string_lossy();
    if err.kind() == std::io::ErrorKind::NotFound {
        let short = Path::new(&*name).file_name().map(|it| it.to_string_lossy().into_owned()).unwrap_or_default();
        anyhow::anyhow!("{}", packages::missing_message(&short))
    } else {
        anyhow::anyhow!("starting `{name}`: {err}")
    }
}

fn read_all<R: Read>(reader: Option<R>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut reader) = reader {
        reader.read_to_end(&mut bytes).ok();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn wait_with_timeout(child: &mut Child, timeout: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
    let Some(limit) = timeout else {
        return child.wait().map(Some);
    };
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shell_line_keeps_every_word() {
        assert_eq!(super::shell_line(["ls", "-l", "/etc"]), "ls -l /etc");
        assert_eq!(super::shell_line(["sh", "-c", "a | b"]), "sh -c 'a | b'");
        assert_eq!(super::shell_line(["echo", "it's", "", "$HOME"]), "echo 'it'\\''s' '' '$HOME'");
    }
}

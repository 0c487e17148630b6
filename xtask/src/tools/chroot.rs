//! `chroot` into a root filesystem being composed: the guest's own apt-get,
//! useradd, systemctl and dracut run there. Each command runs in a private
//! mount namespace (`unshare --mount`) where /proc, /sys, /dev and any bind
//! mounts are set up first: they vanish with the process, so nothing is
//! ever left mounted inside a tree that is about to be deleted.

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;

use super::{Cmd, Output, Program};

/// The programs this wrapper starts, and the packages that provide them.
pub const PROGRAMS: &[Program] = &[
    Program {
        name: "chroot",
        debian: Some("coreutils"),
        rhel: Some("coreutils"),
        pip: None,
        version_args: &["--version"],
    },
    Program {
        name: "unshare",
        debian: Some("util-linux"),
        rhel: Some("util-linux"),
        pip: None,
        version_args: &["--version"],
    },
    Program { name: "sh", debian: Some("dash"), rhel: Some("bash"), pip: None, version_args: &[] },
];

/// A root filesystem commands run inside.
#[derive(Debug, Clone)]
pub struct Chroot {
    pub root: PathBuf,
    /// Mount /proc, /sys and /dev (dracut and maintainer scripts need them).
    pub api_filesystems: bool,
    /// Host folder -> absolute path inside the root, bind-mounted.
    pub binds: Vec<(PathBuf, String)>,
    /// Passed as `SOURCE_DATE_EPOCH`, so what runs inside (useradd's
    /// password-change day, Python's bytecode, maintainer scripts) writes
    /// this time instead of the clock's.
    pub source_date_epoch: Option<i64>,
}

const LONG: Duration = Duration::from_secs(1800);

/// Runs as `sh -c SCRIPT sh PROGRAM ARGS...`; paths come in through the
/// environment so no quoting is needed.
const SCRIPT: &str = r#"set -e
if [ -n "$EDGELAB_API" ]; then
  mount -t proc proc "$EDGELAB_ROOT/proc"
  mount -t sysfs sysfs "$EDGELAB_ROOT/sys"
  mount --bind /dev "$EDGELAB_ROOT/dev"
fi
i=0
while [ "$i" -lt "$EDGELAB_N_BINDS" ]; do
  eval "src=\$EDGELAB_BIND_SRC_$i dst=\$EDGELAB_BIND_DST_$i"
  mkdir -p "$EDGELAB_ROOT$dst"
  mount --bind "$src" "$EDGELAB_ROOT$dst"
  i=$((i + 1))
done
exec chroot "$EDGELAB_ROOT" "$@"
"#;

impl Chroot {
    /// A chroot without mounts (useradd, systemctl enable).
    pub fn new(root: impl Into<PathBuf>) -> Chroot {
        Chroot { root: root.into(), api_filesystems: false, binds: Vec::new(), source_date_epoch: None }
    }

    /// The same root with /proc, /sys and /dev mounted for each command.
    pub fn with_api_filesystems(mut self) -> Chroot {
        self.api_filesystems = true;
        self
    }

    /// The same root with the host folder `source` bind-mounted at `inside`.
    pub fn with_bind(mut self, source: impl Into<PathBuf>, inside: &str) -> Chroot {
        self.binds.push((source.into(), inside.to_string()));
        self
    }

    /// The same root with `SOURCE_DATE_EPOCH=epoch` for each command.
    pub fn with_source_date_epoch(mut self, epoch: i64) -> Chroot {
        self.source_date_epoch = Some(epoch);
        self
    }

    /// Runs `program args...` inside the root with a clean environment.
    pub fn run<I, S>(&self, program: &str, args: I) -> anyhow::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        super::require("chroot")?;
        super::require("unshare")?;
        let mut cmd = Cmd::new("unshare")
            .args(["--mount", "--propagation", "private", "--fork", "sh", "-c", SCRIPT, "sh", program])
            .args(args)
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("EDGELAB_ROOT", &self.root)
            .env("EDGELAB_API", if self.api_filesystems { "1" } else { "" })
            .env("EDGELAB_N_BINDS", self.binds.len().to_string());
        if let Some(epoch) = self.source_date_epoch {
            cmd = cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
        }
        for (idx, (source, inside)) in self.binds.iter().enumerate() {
            cmd = cmd.env(format!("EDGELAB_BIND_SRC_{idx}"), source).env(format!("EDGELAB_BIND_DST_{idx}"), inside);
        }
        cmd.timeout(LONG).run()
    }
}

/// Runs `script` (a path inside the guest) with bash inside a deployment at
/// `root`, as Anaconda runs a kickstart's `%post`: the stateroot's `var` is
/// bind-mounted on the deployment's /var and /proc is mounted, both in a
/// private mount namespace that ends with the script, and a private network
/// namespace keeps the host's interfaces out of its view.
pub fn run_script(root: &Path, var: &Path, script: &str) -> anyhow::Result<String> {
    super::require("unshare")?;
    let shell = r#"mount --bind "$1" "$2/var" && mount -t proc proc "$2/proc" && exec chroot "$2" /bin/bash "$3""#;
    let out = Cmd::new("unshare")
        .args(["--mount", "--net", "--fork", "--", "sh", "-c", shell, "sh"])
        .arg(var)
        .arg(root)
        .arg(script)
        .timeout(std::time::Duration::from_secs(300))
        .run()
        .with_context(|| format!("running {script} inside {}", root.display()))?;
    Ok(out.stdout)
}

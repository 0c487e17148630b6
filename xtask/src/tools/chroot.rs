//! `unshare` + `chroot`: runs a configuration script inside a guest's
//! deployment before it ever boots, as Anaconda runs a kickstart's `%post`.
//! The mounts it needs (the stateroot's /var on the deployment's /var, /proc)
//! exist only in a private mount namespace that ends with the script, and a
//! private network namespace keeps the host's interfaces out of its view.

use std::{path::Path, time::Duration};

use anyhow::Context;

use super::Cmd;

/// Runs `script` (a path inside the guest) with bash inside `root`.
pub fn run_script(root: &Path, var: &Path, script: &str) -> anyhow::Result<String> {
    super::require("unshare")?;
    let shell = r#"mount --bind "$1" "$2/var" && mount -t proc proc "$2/proc" && exec chroot "$2" /bin/bash "$3""#;
    let out = Cmd::new("unshare")
        .args(["--mount", "--net", "--fork", "--", "sh", "-c", shell, "sh"])
        .arg(var)
        .arg(root)
        .arg(script)
        .timeout(Duration::from_secs(300))
        .run()
        .with_context(|| format!("running {script} inside {}", root.display()))?;
    Ok(out.stdout)
}

//! The local world's installer: what Anaconda does with the demo's kickstart,
//! done to a folder and then written to a disk image without mounting.
//!
//! `install_sysroot` makes an OSTree sysroot (init-fs, os-init, the `edge`
//! remote, pull over HTTP, deploy with the guest's kernel arguments), applies
//! the guest's configuration to the deployment's /etc and the stateroot's
//! /var, and fills /var from `usr/share/factory/var`. `write_disk` turns the
//! sysroot into an ext4 image (`mkfs.ext4 -d`). Deployment folders are
//! immutable (chattr +i); `remove_sysroot` clears that before deleting.

use std::{
    fs,
    io::{Read, Seek, SeekFrom, Write},
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use crate::{
    lab::Ipv4Cidr,
    tools::{chroot, mkfs, ostree_sysroot, systemctl},
};

/// The stateroot local guests use (RHEL's is `rhel`).
pub const OS_NAME: &str = "debian";
/// The remote name, as in the demo's kickstart (`ostreesetup --remote=edge`).
pub const REMOTE_NAME: &str = "edge";
/// The file system label of a guest's root.
pub const DISK_LABEL: &str = "edgeroot";

/// What to install and how to reach it.
#[derive(Debug, Clone)]
pub struct InstallSpec {
    /// The repo URL as the guest reaches it (kept in the remote's config).
    pub remote_url: String,
    /// The repo URL as the installer reaches it, when different.
    pub pull_url: Option<String>,
    pub ostree_ref: String,
    /// The commit to install; `None` takes what the ref holds. The install
    /// stage names the commit its channel was published at, so a channel
    /// moved since is an error, not a silent other image.
    pub commit: Option<String>,
    pub kargs: Vec<String>,
    pub config: GuestConfig,
}

/// The kickstart's content, as the installer applies it.
#[derive(Debug, Clone, Default)]
pub struct GuestConfig {
    pub hostname: String,
    pub user: Option<User>,
    /// Folders laid over the guest's root, in order (only `etc/` and `var/`
    /// inside them: /usr belongs to the image).
    pub trees: Vec<PathBuf>,
    /// Units to enable, as `systemctl enable` would.
    pub enable: Vec<String>,
    pub network: Option<StaticNetwork>,
    /// A script inside the guest run last, in a chroot, as the kickstart's
    /// `%post` runs it (the kickstart stage's `configure-guest.sh`).
    pub configure_script: Option<String>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// crypt(3) hash; `None` locks the password.
    pub password_hash: Option<String>,
}

/// The guest's address on the lab segment, set by the guest's initramfs
/// from the kernel arguments `network_kargs` makes. The NIC with `mac` is
/// named `enp1s0`, its name on the RHEL world's libvirt guests, so the
/// kickstart's keepalived.conf fits both worlds.
#[derive(Debug, Clone)]
pub struct StaticNetwork {
    pub address: Ipv4Cidr,
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
}

/// The guest's NIC name in both worlds.
pub const GUEST_INTERFACE: &str = "enp1s0";

/// What an install deployed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Installed {
    pub commit: String,
    /// `<commit>.<serial>`.
    pub deployment: String,
}

/// The default kernel arguments of a local guest.
pub fn default_kargs() -> Vec<String> {
    ["root=/dev/vda", "rw", "console=ttyS0"].map(String::from).to_vec()
}

/// Installs `spec` into a fresh sysroot folder.
pub fn install_sysroot(spec: &InstallSpec, sysroot: &Path) -> anyhow::Result<Installed> {
    fs::create_dir_all(sysroot).with_context(|| format!("creating {}", sysroot.display()))?;
    ostree_sysroot::init(sysroot, OS_NAME)?;
    ostree_sysroot::add_remote(sysroot, REMOTE_NAME, &spec.remote_url)?;
    let installed = pull_and_deploy(spec, sysroot)?;
    let deploy_dir = sysroot.join("ostree/deploy").join(OS_NAME).join("deploy").join(&installed.deployment);
    let var = sysroot.join("ostree/deploy").join(OS_NAME).join("var");
    fill_var(&deploy_dir, &var)?;
    apply_config(&spec.config, &deploy_dir, &var)?;
    Ok(installed)
}

/// Pulls `spec`'s commit (or its ref's newest) and deploys it as the new default,
/// the way `ostree admin upgrade` would in the guest; /etc is carried over
/// by ostree's three-way merge.
pub fn pull_and_deploy(spec: &InstallSpec, sysroot: &Path) -> anyhow::Result<Installed> {
    pull(spec, sysroot)?;
    let refspec = format!("{REMOTE_NAME}:{}", spec.ostree_ref);
    let commit = ostree_sysroot::rev_parse(sysroot, &refspec)?;
    if let Some(wanted) = &spec.commit
        && wanted != &commit
    {
        bail!("pulled {} but the remote ref holds {commit}, not {wanted}", spec.ostree_ref);
    }
    let mut kargs = spec.kargs.clone();
    if let Some(network) = &spec.config.network {
        kargs.extend(network_kargs(network));
    }
    kargs.extend(image_kargs(sysroot, &commit)?);
    ostree_sysroot::deploy(sysroot, OS_NAME, &refspec, &kargs)?;
    let deployments = ostree_sysroot::deployments(sysroot)?;
    let default = deployments.first().context("ostree admin deploy left no deployment")?;
    if !default.id.starts_with(&commit) {
        bail!("deployed {} but the default deployment is {}", commit, default.id);
    }
    Ok(Installed { commit, deployment: default.id.clone() })
}

/// The kernel arguments the image asks for (its blueprint's
/// `kernel.append`, in bootc's `kargs.d` file), after the lab's own.
pub fn image_kargs(sysroot: &Path, commit: &str) -> anyhow::Result<Vec<String>> {
    let repo = crate::tools::ostree::Repo::at(sysroot.join("ostree/repo"));
    let path = format!("/{}", crate::compose::local::KARGS_FILE);
    if !repo.path_exists(commit, &path)? {
        return Ok(Vec::new());
    }
    #[derive(serde::Deserialize)]
    struct KargsFile {
        kargs: Vec<String>,
    }
    let text = repo.cat(commit, &path)?;
    let file: KargsFile = toml::from_str(&text).with_context(|| format!("reading {path} of commit {commit}"))?;
    Ok(file.kargs)
}

/// Pulls `spec`'s commit (or its ref's newest) into the sysroot's repo.
///
/// Into an empty repo ostree takes the served repo's from-scratch static
/// delta (a few large parts; `stages::repo`). The commit object comes
/// first, on its own: ostree 2022.7 (Debian 12) writes the delta's commit
/// and then also walks it for missing objects while the delta's parts are
/// still downloading, so it fetched every object loose as well (ostree
/// issue 2053, fixed in 2023.7; measured: 1 delta part plus 501 loose
/// objects, twice the bytes). With the commit already present that walk
/// never starts; the pull is then the summary, the delta's index and
/// superblock, and its parts. The commit is pulled by id, not ref, since a
/// local ref would make ostree prefer an object pull to a from-scratch delta.
pub fn pull(spec: &InstallSpec, sysroot: &Path) -> anyhow::Result<()> {
    let wanted = match &spec.commit {
        Some(commit) => {
            ostree_sysroot::pull_commit_metadata(sysroot, REMOTE_NAME, commit, spec.pull_url.as_deref())?;
            format!("{}@{commit}", spec.ostree_ref)
        }
        None => spec.ostree_ref.clone(),
    };
    ostree_sysroot::pull(sysroot, REMOTE_NAME, &wanted, spec.pull_url.as_deref())
}

/// Writes `sysroot` into a sparse ext4 image of `size_bytes`.
pub fn write_disk(sysroot: &Path, disk: &Path, size_bytes: u64) -> anyhow::Result<()> {
    mkfs::ext4_from_dir(disk, size_bytes, DISK_LABEL, sysroot)
}

/// Deletes a sysroot folder, clearing the immutable flag ostree puts on
/// deployment folders first.
pub fn remove_sysroot(sysroot: &Path) -> anyhow::Result<()> {
    if !sysroot.exists() {
        return Ok(());
    }
    let deploy_root = sysroot.join("ostree/deploy");
    if let Ok(oses) = fs::read_dir(&deploy_root) {
        for os in oses.flatten() {
            if let Ok(deployments) = fs::read_dir(os.path().join("deploy")) {
                for deployment in deployments.flatten() {
                    clear_immutable(&deployment.path())?;
                }
            }
        }
    }
    fs::remove_dir_all(sysroot).with_context(|| format!("removing {}", sysroot.display()))
}

/// Copies a disk image keeping its holes (a 10 GiB guest disk holds ~0.5 GiB).
pub fn copy_sparse(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let what = || format!("copying {} to {}", src.display(), dest.display());
    let mut input = fs::File::open(src).with_context(what)?;
    let len = input.metadata().with_context(what)?.len();
    let tmp = dest.with_extension("partial");
    let mut output = fs::File::create(&tmp).with_context(what)?;
    output.set_len(len).with_context(what)?;
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    while offset < len {
        let Ok(data) = rustix::fs::seek(&input, rustix::fs::SeekFrom::Data(offset)) else {
            break; // no data after offset: the rest is a hole
        };
        let end = rustix::fs::seek(&input, rustix::fs::SeekFrom::Hole(data)).unwrap_or(len);
        input.seek(SeekFrom::Start(data)).with_context(what)?;
        output.seek(SeekFrom::Start(data)).with_context(what)?;
        let mut left = (end - data) as usize;
        while left > 0 {
            let n = left.min(buf.len());
            input.read_exact(&mut buf[..n]).with_context(what)?;
            output.write_all(&buf[..n]).with_context(what)?;
            left -= n;
        }
        offset = end;
    }
    output.sync_all().with_context(what)?;
    fs::rename(&tmp, dest).with_context(what)?;
    Ok(())
}

/// The kernel and initramfs are in the deployment; /var is not: the composer
/// moved the image's /var content to usr/share/factory/var, and creating it
/// at first boot is slow under TCG, so it is copied now.
fn fill_var(deploy_dir: &Path, var: &Path) -> anyhow::Result<()> {
    let factory = deploy_dir.join("usr/share/factory/var");
    if factory.is_dir() {
        crate::store::copy_tree(&factory, var)
            .with_context(|| format!("filling {} from {}", var.display(), factory.display()))?;
    }
    for sub in ["home", "roothome", "opt", "srv", "mnt", "usrlocal", "tmp"] {
        fs::create_dir_all(var.join(sub)).with_context(|| format!("creating /var/{sub}"))?;
    }
    fs::set_permissions(var.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    fs::set_permissions(var.join("roothome"), fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn apply_config(config: &GuestConfig, deploy_dir: &Path, var: &Path) -> anyhow::Result<()> {
    let etc = deploy_dir.join("etc");
    if !config.hostname.is_empty() {
        fs::write(etc.join("hostname"), format!("{}\n", config.hostname))?;
    }
    for tree in &config.trees {
        overlay_tree(tree, &etc, var).with_context(|| format!("applying {}", tree.display()))?;
    }
    if let Some(user) = &config.user {
        add_user(user, &etc, var).with_context(|| format!("adding user {}", user.name))?;
    }
    let mut enable = config.enable.clone();
    // A kickstart may enable a unit only some images have (RHEL's
    // rpm-ostreed-automatic.timer behind an `if`): enable what exists.
    enable.retain(|unit| {
        ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system", "usr/etc/systemd/system"]
            .iter()
            .any(|dir| deploy_dir.join(dir).join(unit).exists())
    });
    systemctl::enable_offline(deploy_dir, &enable)?;
    if let Some(script) = &config.configure_script {
        chroot::run_script(deploy_dir, var, script)?;
    }
    Ok(())
}

/// Lays `tree/etc` over the deployment's /etc and `tree/var` over /var.
fn overlay_tree(tree: &Path, etc: &Path, var: &Path) -> anyhow::Result<()> {
    for entry in fs::read_dir(tree).with_context(|| format!("reading {}", tree.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match name.as_str() {
            "etc" => crate::store::copy_tree(&entry.path(), etc)?,
            "var" => crate::store::copy_tree(&entry.path(), var)?,
            // On an OSTree system /usr/local is a link to /var/usrlocal.
            "usr" if only_child(&entry.path()).as_deref() == Some("local") => {
                crate::store::copy_tree(&entry.path().join("local"), &var.join("usrlocal"))?
            }
            other => bail!(
                "{}/{other}: a guest's files may go only under /etc, /var and /usr/local; /{other} belongs to the image",
                tree.display()
            ),
        }
    }
    Ok(())
}

fn only_child(dir: &Path) -> Option<String> {
    let names: Vec<String> =
        fs::read_dir(dir).ok()?.flatten().map(|entry| entry.file_name().to_string_lossy().into_owned()).collect();
    match names.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

fn add_user(user: &User, etc: &Path, var: &Path) -> anyhow::Result<()> {
    let (uid, gid) = (1000, 1000);
    let name = &user.name;
    let passwd = fs::read_to_string(etc.join("passwd")).unwrap_or_default();
    if passwd.lines().any(|line| line.starts_with(&format!("{name}:"))) {
        return Ok(());
    }
    append(&etc.join("passwd"), &format!("{name}:x:{uid}:{gid}:{name}:/home/{name}:/bin/bash\n"))?;
    let hash = user.password_hash.as_deref().unwrap_or("!");
    append(&etc.join("shadow"), &format!("{name}:{hash}:19000:0:99999:7:::\n"))?;
    append(&etc.join("group"), &format!("{name}:x:{gid}:\n"))?;
    append(&etc.join("gshadow"), &format!("{name}:!::\n"))?;
    // Rootless podman maps the container's users into these ranges.
    append(&etc.join("subuid"), &format!("{name}:100000:65536\n"))?;
    append(&etc.join("subgid"), &format!("{name}:100000:65536\n"))?;
    // The demo's user is in `wheel`; Debian's administrators group is `sudo`.
    add_to_group(&etc.join("group"), "sudo", name)?;
    let home = var.join("home").join(name);
    fs::create_dir_all(&home)?;
    std::os::unix::fs::chown(&home, Some(uid), Some(gid))?;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

fn add_to_group(group_file: &Path, group: &str, user: &str) -> anyhow::Result<()> {
    let text = fs::read_to_string(group_file).unwrap_or_default();
    let edited: Vec<String> = text
        .lines()
        .map(|line| {
            if !line.starts_with(&format!("{group}:")) {
                return line.to_string();
            }
            if line.ends_with(':') { format!("{line}{user}") } else { format!("{line},{user}") }
        })
        .collect();
    fs::write(group_file, edited.join("\n") + "\n")?;
    Ok(())
}

/// The lab address as kernel arguments, in dracut's syntax (dracut.cmdline(7)):
/// `ifname=enp1s0:MAC` and `ip=ADDR::GW:NETMASK::enp1s0:none`. The local
/// world's initramfs (guest/local/initramfs/build.sh) names the NIC and sets
/// the address before systemd starts, so nothing waits for the network at
/// boot. Measured under TCG, both guests booting at once (`systemd-analyze
/// critical-chain` in the guest): with systemd-networkd configuring the link
/// instead, network-online.target came 14-33 s into userspace, the time udev's
/// coldplug took to name the NIC. Kernel arguments live in the deployment,
/// and an in-guest upgrade carries them to the next one, as it does the rest.
pub fn network_kargs(network: &StaticNetwork) -> Vec<String> {
    let netmask = match network.address.prefix {
        0 => Ipv4Addr::UNSPECIFIED,
        prefix => Ipv4Addr::from(u32::MAX << (32 - u32::from(prefix.min(32)))),
    };
    let gateway = network.gateway.map(|gateway| gateway.to_string()).unwrap_or_default();
    vec![
        format!("ifname={GUEST_INTERFACE}:{}", network.mac.to_ascii_lowercase()),
        format!("ip={}::{gateway}:{netmask}::{GUEST_INTERFACE}:none", network.address.addr),
    ]
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file =
        fs::OpenOptions::new().append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// `chattr -i`: ostree marks each deployment's root folder immutable.
fn clear_immutable(path: &Path) -> anyhow::Result<()> {
    use rustix::fs::IFlags;
    let dir = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let Ok(flags) = rustix::fs::ioctl_getflags(&dir) else {
        return Ok(()); // the file system has no such flags
    };
    if flags.contains(IFlags::IMMUTABLE) {
        rustix::fs::ioctl_setflags(&dir, flags - IFlags::IMMUTABLE)
            .with_context(|| format!("clearing the immutable flag of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The initramfs reads dracut's forms: a MAC in lower case (as sysfs
    /// shows it), the netmask dotted, an empty gateway field when there is none.
    #[test]
    fn the_lab_network_is_kernel_arguments_in_dracut_syntax() {
        let network = |prefix, gateway| StaticNetwork {
            address: Ipv4Cidr { addr: Ipv4Addr::new(10, 88, 0, 11), prefix },
            gateway,
            mac: "52:54:00:58:00:0B".into(),
        };
        assert_eq!(
            network_kargs(&network(24, None)),
            ["ifname=enp1s0:52:54:00:58:00:0b", "ip=10.88.0.11:::255.255.255.0::enp1s0:none"]
        );
        assert_eq!(
            network_kargs(&network(20, Some(Ipv4Addr::new(10, 88, 0, 1))))[1],
            "ip=10.88.0.11::10.88.0.1:255.255.240.0::enp1s0:none"
        );
        assert_eq!(network_kargs(&network(32, None))[1], "ip=10.88.0.11:::255.255.255.255::enp1s0:none");
    }
}

//! The blueprint's customizations applied to a compose's tree (users,
//! keys, services, files and directories, hostname, ...), through a chroot
//! where the guest's own tools must do it, and the first-boot unit that
//! makes SSH host keys (none are baked into a shared commit).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};

use super::workdir::remove_any;
use crate::{
    blueprint::{Blueprint, Locale, Owner, User, no_local_effect},
    tools::chroot::Chroot,
};

/// Applies the blueprint's customizations to the tree; returns the keys it
/// has no local effect for (`blueprint::no_local_effect`: reported, never
/// silently skipped).
pub(super) fn apply_customizations(root: &Path, blueprint: &Blueprint, epoch: i64) -> anyhow::Result<Vec<String>> {
    let custom = &blueprint.customizations;
    // useradd dates the password change in /etc/shadow from SOURCE_DATE_EPOCH.
    let chroot = Chroot::new(root).with_source_date_epoch(epoch);
    // Groups and users before anything that may name them as owners.
    for group in &custom.group {
        let mut args = vec!["-f".to_string()];
        if let Some(gid) = group.gid {
            args.extend(["-g".into(), gid.to_string()]);
        }
        args.push(group.name.clone());
        chroot.run("groupadd", &args).with_context(|| format!("adding group {}", group.name))?;
    }
    for user in &custom.user {
        add_user(&chroot, user)?;
    }
    for entry in &custom.sshkey {
        add_authorized_key(&chroot, &entry.user, &entry.key)?;
    }
    if let Some(services) = &custom.services {
        for (names, verb) in
            [(&services.enabled, "enable"), (&services.disabled, "disable"), (&services.masked, "mask")]
        {
            for name in names {
                enable_service(&chroot, name, verb)?;
            }
        }
    }
    if let Some(name) = &custom.hostname {
        write_replacing(&root.join("etc/hostname"), format!("{name}\n").as_bytes(), 0o644)?;
    }
    if let Some(zone) = custom.timezone.as_ref().and_then(|timezone| timezone.timezone.as_ref()) {
        if !root.join("usr/share/zoneinfo").join(zone).exists() {
            bail!("customizations.timezone: unknown time zone `{zone}`");
        }
        let link = root.join("etc/localtime");
        remove_any(&link).ok();
        std::os::unix::fs::symlink(format!("/usr/share/zoneinfo/{zone}"), &link)
            .with_context(|| format!("linking {}", link.display()))?;
        write_replacing(&root.join("etc/timezone"), format!("{zone}\n").as_bytes(), 0o644)?;
    }
    if let Some(append) = custom.kernel.as_ref().and_then(|kernel| kernel.append.as_ref()) {
        // bootc's place for an image's kernel arguments; the installer adds
        // them when it deploys the commit.
        let kargs: Vec<&str> = append.split_whitespace().collect();
        let text = format!("kargs = {}\n", serde_json::to_string(&kargs)?);
        write_replacing(&root.join(KARGS_FILE), text.as_bytes(), 0o644)?;
    }
    if let Some(locale) = &custom.locale {
        apply_locale(root, locale)?;
    }
    for dir in &custom.directories {
        let path = guest_path(&dir.path)?;
        let target = root.join(&path);
        if dir.ensure_parents == Some(true) {
            fs::create_dir_all(&target)
        } else if target.is_dir() {
            Ok(())
        } else {
            fs::create_dir(&target)
        }
        .with_context(|| format!("customizations.directories: creating {}", path.display()))?;
        if let Some(mode) = mode_of(dir.mode.as_deref())? {
            set_mode(&target, mode)?;
        }
        set_owner(&chroot, dir.user.as_ref(), dir.group.as_ref(), &path)?;
    }
    for file in &custom.files {
        let path = guest_path(&file.path)?;
        let data = file.data.as_deref().unwrap_or_default();
        write_replacing(&root.join(&path), data.as_bytes(), mode_of(file.mode.as_deref())?.unwrap_or(0o644))?;
        set_owner(&chroot, file.user.as_ref(), file.group.as_ref(), &path)?;
    }
    // The blueprint's other keys without local effect (groups, modules,
    // distro, ...) are the package plan's to report, not a customization.
    Ok(no_local_effect(blueprint)
        .into_iter()
        .filter(|gap| gap.key.starts_with("customizations."))
        .map(|gap| format!("{} ({})", gap.key, gap.why))
        .collect())
}

pub(super) fn add_user(chroot: &Chroot, user: &User) -> anyhow::Result<()> {
    let name = user.name.as_str();
    let mut args: Vec<String> = vec!["--create-home".into()];
    if let Some(description) = &user.description {
        args.extend(["--comment".into(), description.clone()]);
    }
    if let Some(password) = &user.password {
        if !password.starts_with('$') {
            bail!("customizations.user {name}: the password must be a crypt(3) hash, never plaintext");
        }
        args.extend(["--password".into(), password.clone()]);
    }
    args.extend(["--shell".into(), user.shell.clone().unwrap_or_else(|| "/bin/bash".into())]);
    if let Some(uid) = user.uid {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    if let Some(gid) = user.gid {
        // The primary group by id: made, named after the user, when no
        // group has it yet (useradd would refuse an unknown gid).
        let gid = gid.to_string();
        if chroot.run("getent", ["group", gid.as_str()]).is_err() {
            chroot
                .run("groupadd", ["-g", gid.as_str(), name])
                .with_context(|| format!("adding user {name}'s group {gid}"))?;
        }
        args.extend(["--gid".into(), gid]);
    }
    if let Some(home) = &user.home {
        args.extend(["--home-dir".into(), home.clone()]);
    }
    for group in &user.groups {
        // RHEL's `wheel` has no Debian twin; make the groups a blueprint names.
        chroot.run("groupadd", ["-f", group.as_str()]).with_context(|| format!("adding group {group}"))?;
    }
    if !user.groups.is_empty() {
        args.extend(["--groups".into(), user.groups.join(",")]);
    }
    args.push(name.to_string());
    chroot.run("useradd", &args).with_context(|| format!("adding user {name}"))?;
    if let Some(key) = &user.key {
        add_authorized_key(chroot, name, key)?;
    }
    if let Some(days) = user.expiredate {
        let days = days.to_string();
        chroot.run("chage", ["-E", days.as_str(), name]).with_context(|| format!("expiring user {name}"))?;
    }
    if user.force_password_reset == Some(true) {
        chroot.run("chage", ["-d", "0", name]).with_context(|| format!("forcing user {name}'s password reset"))?;
    }
    Ok(())
}

/// Where the image's kernel arguments go (bootc's `kargs.d` layout:
/// `kargs = [...]`); the installer reads it from the commit.
pub const KARGS_FILE: &str = "usr/lib/bootc/kargs.d/10-blueprint.toml";

/// `customizations.locale`: the first language as the system's (systemd's
/// /etc/locale.conf and Debian's /etc/default/locale), the keyboard as the
/// console keymap.
fn apply_locale(root: &Path, locale: &Locale) -> anyhow::Result<()> {
    if let Some(language) = locale.languages.first() {
        let text = format!("LANG={language}\n");
        write_replacing(&root.join("etc/locale.conf"), text.as_bytes(), 0o644)?;
        write_replacing(&root.join("etc/default/locale"), text.as_bytes(), 0o644)?;
    }
    if let Some(keyboard) = &locale.keyboard {
        write_replacing(&root.join("etc/vconsole.conf"), format!("KEYMAP={keyboard}\n").as_bytes(), 0o644)?;
    }
    Ok(())
}

/// A file's or folder's `user` and `group` (names or ids), by chown inside
/// the tree so names resolve against its own passwd.
fn set_owner(chroot: &Chroot, user: Option<&Owner>, group: Option<&Owner>, path: &Path) -> anyhow::Result<()> {
    let part = |owner: Option<&Owner>| match owner {
        Some(Owner::Name(name)) => name.clone(),
        Some(Owner::Id(id)) => id.to_string(),
        None => String::new(),
    };
    let (user, group) = (part(user), part(group));
    if user.is_empty() && group.is_empty() {
        return Ok(());
    }
    let owner = if group.is_empty() { user } else { format!("{user}:{group}") };
    let inside = format!("/{}", path.display());
    chroot.run("chown", [owner.as_str(), inside.as_str()]).with_context(|| format!("chown {owner} {inside}"))?;
    Ok(())
}

pub(super) fn add_authorized_key(chroot: &Chroot, user: &str, key: &str) -> anyhow::Result<()> {
    let entry = chroot.run("getent", ["passwd", user]).with_context(|| format!("looking up user {user}"))?.stdout;
    let fields: Vec<&str> = entry.trim().split(':').collect();
    let (Some(uid), Some(gid), Some(home)) = (fields.get(2), fields.get(3), fields.get(5)) else {
        bail!("user {user} has no passwd entry");
    };
    let ssh_dir = chroot.root.join(home.trim_start_matches('/')).join(".ssh");
    fs::create_dir_all(&ssh_dir).with_context(|| format!("creating {}", ssh_dir.display()))?;
    set_mode(&ssh_dir, 0o700)?;
    let keys = ssh_dir.join("authorized_keys");
    let mut text = fs::read_to_string(&keys).unwrap_or_default();
    text.push_str(key.trim());
    text.push('\n');
    write_replacing(&keys, text.as_bytes(), 0o600)?;
    let owner = format!("{uid}:{gid}");
    let inside = format!("{home}/.ssh");
    chroot.run("chown", ["-R", owner.as_str(), inside.as_str()]).with_context(|| format!("chown {inside}"))?;
    Ok(())
}

pub(super) fn enable_service(chroot: &Chroot, name: &str, verb: &str) -> anyhow::Result<()> {
    let unit = if name.contains('.') { name.to_string() } else { format!("{name}.service") };
    // An alias (Debian's sshd.service -> ssh.service) cannot be enabled by
    // its alias name: enable the unit it names.
    let unit = ["etc/systemd/system", "usr/lib/systemd/system", "lib/systemd/system"]
        .iter()
        .filter_map(|dir| fs::read_link(chroot.root.join(dir).join(&unit)).ok())
        .filter_map(|target| target.file_name().map(|name| name.to_string_lossy().into_owned()))
        .find(|target| target.contains('.') && *target != unit)
        .unwrap_or(unit);
    chroot
        .run("systemctl", [verb, unit.as_str()])
        .with_context(|| format!("customizations.services: systemctl {verb} {unit} (is its package installed?)"))?;
    Ok(())
}

/// The unit that makes a device's SSH host key on its first boot, before
/// sshd starts (as RHEL's sshd-keygen does). One Ed25519 key: `ssh-keygen
/// -A` also makes a 3072-bit RSA key, which took 26 s of a first boot under
/// TCG, on the way to `multi-user.target`.
pub(super) const SSH_KEYGEN_UNIT: &str = "[Unit]
Description=Generate this device's SSH host key (an image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target
";

/// The host key sshd loads (Debian's sshd_config includes sshd_config.d).
const SSHD_HOST_KEY: &str =
    "# edgelab: the one host key the device makes on its first boot.\nHostKey /etc/ssh/ssh_host_ed25519_key\n";

/// openssh-server's install made host keys: random, so no two composes
/// would be the same, and every device of the image would share them.
/// They are removed, and the device makes its own on its first boot.
pub(super) fn host_keys_at_first_boot(root: &Path) -> anyhow::Result<()> {
    let ssh = root.join("etc/ssh");
    if !ssh.join("sshd_config").exists() {
        return Ok(());
    }
    for entry in fs::read_dir(&ssh).with_context(|| format!("reading {}", ssh.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("ssh_host_") {
            remove_any(&path)?;
        }
    }
    // sshd looks for the key types it was built with; it loads only the one.
    write_replacing(&ssh.join("sshd_config.d/edgelab-host-key.conf"), SSHD_HOST_KEY.as_bytes(), 0o644)?;
    let unit = "edgelab-ssh-keygen.service";
    write_replacing(&root.join("etc/systemd/system").join(unit), SSH_KEYGEN_UNIT.as_bytes(), 0o644)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    remove_any(&wants.join(unit))?;
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit))
        .with_context(|| format!("enabling {unit}"))?;
    Ok(())
}

/// A guest path from a blueprint: absolute, without `..`; returned relative.
pub(super) fn guest_path(path: &str) -> anyhow::Result<PathBuf> {
    let relative = path.strip_prefix('/').with_context(|| format!("`{path}` is not an absolute path"))?;
    if relative.split('/').any(|part| part == "..") || relative.is_empty() {
        bail!("`{path}` must name a file inside the guest without `..`");
    }
    Ok(PathBuf::from(relative))
}

/// An octal mode as the blueprint writes it (`"0644"`).
pub(super) fn mode_of(mode: Option<&str>) -> anyhow::Result<Option<u32>> {
    mode.map(|text| {
        u32::from_str_radix(text.trim_start_matches("0o"), 8).with_context(|| format!("mode `{text}` is not octal"))
    })
    .transpose()
}

pub(super) fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).with_context(|| format!("chmod {}", path.display()))
}

/// Writes a file by replacing it, never in place: files in the tree may be
/// hardlinks into the build repo.
pub(super) fn write_replacing(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_any(path)?;
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))?;
    set_mode(path, mode)
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn guest_paths_stay_inside() {
        assert_eq!(guest_path("/etc/motd").unwrap(), PathBuf::from("etc/motd"));
        assert!(guest_path("etc/motd").is_err());
        assert!(guest_path("/etc/../../x").is_err());
    }
}

//! The blueprint's customizations applied to a compose's tree (users,
//! keys, services, files and directories, hostname, ...), through a chroot
//! where the guest's own tools must do it, and the first-boot unit that
//! makes SSH host keys (none are baked into a shared commit).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::Value;

use super::workdir::remove_any;
use crate::tools::chroot::Chroot;

/// Applies the blueprint's customizations to the tree; returns what could
/// not be applied (reported, never silently skipped).
pub(super) fn apply_customizations(root: &Path, blueprint: &Value, epoch: i64) -> anyhow::Result<Vec<String>> {
    let mut not_applied = Vec::new();
    let Some(custom) = blueprint.get("customizations").and_then(Value::as_object) else {
        return Ok(not_applied);
    };
    // useradd dates the password change in /etc/shadow from SOURCE_DATE_EPOCH.
    let chroot = Chroot::new(root).with_source_date_epoch(epoch);
    let list = |value: Option<&Value>| -> Vec<Value> { value.and_then(Value::as_array).cloned().unwrap_or_default() };
    // Groups and users before anything that may name them as owners.
    let rank = |key: &str| ["group", "user", "sshkey"].iter().position(|first| *first == key).unwrap_or(3);
    let mut entries: Vec<(&String, &Value)> = custom.iter().collect();
    entries.sort_by_key(|(key, _)| rank(key));
    for (key, value) in entries {
        match key.as_str() {
            "group" => {
                for group in list(Some(value)) {
                    let name = required_str(&group, "name", "customizations.group")?;
                    let mut args = vec!["-f".to_string()];
                    if let Some(gid) = group.get("gid").and_then(Value::as_i64) {
                        args.extend(["-g".into(), gid.to_string()]);
                    }
                    args.push(name.to_string());
                    chroot.run("groupadd", &args).with_context(|| format!("adding group {name}"))?;
                }
            }
            "user" => {
                for user in list(Some(value)) {
                    add_user(&chroot, &user)?;
                }
            }
            "sshkey" => {
                for entry in list(Some(value)) {
                    let user = required_str(&entry, "user", "customizations.sshkey")?;
                    let key = required_str(&entry, "key", "customizations.sshkey")?;
                    add_authorized_key(&chroot, user, key)?;
                }
            }
            "services" => {
                for (field, verb) in [("enabled", "enable"), ("disabled", "disable"), ("masked", "mask")] {
                    for name in list(value.get(field)) {
                        enable_service(&chroot, name.as_str().unwrap_or_default(), verb)?;
                    }
                }
            }
            "firewall" => {
                // There is no firewalld on the guest: the list is recorded for
                // the guest's own firewall setup to read.
                let ports: Vec<String> =
                    list(value.get("ports")).iter().filter_map(Value::as_str).map(str::to_string).collect();
                let mut text = String::from("# Ports the blueprint opens (port:protocol), one per line.\n");
                for port in &ports {
                    text.push_str(port);
                    text.push('\n');
                }
                write_replacing(&root.join("etc/edgelab/firewall-ports"), text.as_bytes(), 0o644)?;
                let services: Vec<String> = list(value.get("services").and_then(|s| s.get("enabled")))
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect();
                if !services.is_empty() {
                    let text = format!("{}\n", services.join("\n"));
                    write_replacing(&root.join("etc/edgelab/firewall-services"), text.as_bytes(), 0o644)?;
                }
            }
            "hostname" => {
                let name = value.as_str().unwrap_or_default();
                write_replacing(&root.join("etc/hostname"), format!("{name}\n").as_bytes(), 0o644)?;
            }
            "timezone" => {
                if let Some(zone) = value.get("timezone").and_then(Value::as_str) {
                    if !root.join("usr/share/zoneinfo").join(zone).exists() {
                        bail!("customizations.timezone: unknown time zone `{zone}`");
                    }
                    let link = root.join("etc/localtime");
                    remove_any(&link).ok();
                    std::os::unix::fs::symlink(format!("/usr/share/zoneinfo/{zone}"), &link)
                        .with_context(|| format!("linking {}", link.display()))?;
                    write_replacing(&root.join("etc/timezone"), format!("{zone}\n").as_bytes(), 0o644)?;
                }
                if value.get("ntpservers").is_some() {
                    not_applied.push("timezone.ntpservers (no chrony on the guest)".into());
                }
            }
            "kernel" => {
                if let Some(append) = value.get("append").and_then(Value::as_str) {
                    // bootc's place for an image's kernel arguments; the
                    // installer adds them when it deploys the commit.
                    let kargs: Vec<&str> = append.split_whitespace().collect();
                    let text = format!("kargs = {}\n", serde_json::to_string(&kargs)?);
                    write_replacing(&root.join(KARGS_FILE), text.as_bytes(), 0o644)?;
                }
            }
            "locale" => apply_locale(root, value)?,
            "directories" => {
                for dir in list(Some(value)) {
                    let path = guest_path(required_str(&dir, "path", "customizations.directories")?)?;
                    let target = root.join(&path);
                    if dir.get("ensure_parents").and_then(Value::as_bool) == Some(true) {
                        fs::create_dir_all(&target)
                    } else if target.is_dir() {
                        Ok(())
                    } else {
                        fs::create_dir(&target)
                    }
                    .with_context(|| format!("customizations.directories: creating {}", path.display()))?;
                    if let Some(mode) = mode_of(&dir)? {
                        set_mode(&target, mode)?;
                    }
                    set_owner(&chroot, &dir, &path)?;
                }
            }
            "files" => {
                for file in list(Some(value)) {
                    let path = guest_path(required_str(&file, "path", "customizations.files")?)?;
                    let data = file.get("data").and_then(Value::as_str).unwrap_or_default();
                    write_replacing(&root.join(&path), data.as_bytes(), mode_of(&file)?.unwrap_or(0o644))?;
                    set_owner(&chroot, &file, &path)?;
                }
            }
            other => not_applied.push(format!("customizations.{other} (not supported by the local composer)")),
        }
    }
    Ok(not_applied)
}

pub(super) fn add_user(chroot: &Chroot, user: &Value) -> anyhow::Result<()> {
    let name = required_str(user, "name", "customizations.user")?;
    let mut args: Vec<String> = vec!["--create-home".into()];
    if let Some(description) = user.get("description").and_then(Value::as_str) {
        args.extend(["--comment".into(), description.into()]);
    }
    if let Some(password) = user.get("password").and_then(Value::as_str) {
        if !password.starts_with('$') {
            bail!("customizations.user {name}: the password must be a crypt(3) hash, never plaintext");
        }
        args.extend(["--password".into(), password.into()]);
    }
    if let Some(shell) = user.get("shell").and_then(Value::as_str) {
        args.extend(["--shell".into(), shell.into()]);
    } else {
        args.extend(["--shell".into(), "/bin/bash".into()]);
    }
    if let Some(uid) = user.get("uid").and_then(Value::as_i64) {
        args.extend(["--uid".into(), uid.to_string()]);
    }
    if let Some(gid) = user.get("gid").and_then(Value::as_i64) {
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
    if let Some(home) = user.get("home").and_then(Value::as_str) {
        args.extend(["--home-dir".into(), home.into()]);
    }
    let groups: Vec<String> = user
        .get("groups")
        .and_then(Value::as_array)
        .map(|groups| groups.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    for group in &groups {
        // RHEL's `wheel` has no Debian twin; make the groups a blueprint names.
        chroot.run("groupadd", ["-f", group.as_str()]).with_context(|| format!("adding group {group}"))?;
    }
    if !groups.is_empty() {
        args.extend(["--groups".into(), groups.join(",")]);
    }
    args.push(name.to_string());
    chroot.run("useradd", &args).with_context(|| format!("adding user {name}"))?;
    if let Some(key) = user.get("key").and_then(Value::as_str) {
        add_authorized_key(chroot, name, key)?;
    }
    if let Some(days) = user.get("expiredate").and_then(Value::as_i64) {
        let days = days.to_string();
        chroot.run("chage", ["-E", days.as_str(), name]).with_context(|| format!("expiring user {name}"))?;
    }
    if user.get("force_password_reset").and_then(Value::as_bool) == Some(true) {
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
fn apply_locale(root: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(language) = value.get("languages").and_then(Value::as_array).and_then(|list| list.first()) {
        let text = format!("LANG={}\n", language.as_str().unwrap_or_default());
        write_replacing(&root.join("etc/locale.conf"), text.as_bytes(), 0o644)?;
        write_replacing(&root.join("etc/default/locale"), text.as_bytes(), 0o644)?;
    }
    if let Some(keyboard) = value.get("keyboard").and_then(Value::as_str) {
        write_replacing(&root.join("etc/vconsole.conf"), format!("KEYMAP={keyboard}\n").as_bytes(), 0o644)?;
    }
    Ok(())
}

/// A file's or folder's `user` and `group` (names or ids), by chown inside
/// the tree so names resolve against its own passwd.
fn set_owner(chroot: &Chroot, entry: &Value, path: &Path) -> anyhow::Result<()> {
    let part = |key: &str| match entry.get(key) {
        Some(Value::String(name)) => name.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => String::new(),
    };
    let (user, group) = (part("user"), part("group"));
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

/// The unit that makes a device's SSH host keys on its first boot, before
/// sshd starts (as RHEL's sshd-keygen does).
pub(super) const SSH_KEYGEN_UNIT: &str = "[Unit]
Description=Generate this device's SSH host keys (an image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
";

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
    let unit = "edgelab-ssh-keygen.service";
    write_replacing(&root.join("etc/systemd/system").join(unit), SSH_KEYGEN_UNIT.as_bytes(), 0o644)?;
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    remove_any(&wants.join(unit))?;
    std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit))
        .with_context(|| format!("enabling {unit}"))?;
    Ok(())
}

pub(super) fn required_str<'a>(value: &'a Value, field: &str, what: &str) -> anyhow::Result<&'a str> {
    value.get(field).and_then(Value::as_str).with_context(|| format!("{what}: an entry without `{field}`: {value}"))
}

/// A guest path from a blueprint: absolute, without `..`; returned relative.
pub(super) fn guest_path(path: &str) -> anyhow::Result<PathBuf> {
    let relative = path.strip_prefix('/').with_context(|| format!("`{path}` is not an absolute path"))?;
    if relative.split('/').any(|part| part == "..") || relative.is_empty() {
        bail!("`{path}` must name a file inside the guest without `..`");
    }
    Ok(PathBuf::from(relative))
}

pub(super) fn mode_of(entry: &Value) -> anyhow::Result<Option<u32>> {
    match entry.get("mode") {
        None => Ok(None),
        Some(Value::String(text)) => u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .map(Some)
            .with_context(|| format!("mode `{text}` is not octal")),
        Some(Value::Number(number)) => Ok(number.as_u64().map(|n| n as u32)),
        Some(other) => bail!("mode {other} is neither a string nor a number"),
    }
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

//! The `kickstart` stage: a guest's kickstart, rendered from the template in
//! `guest/kickstart/` with the guest's values, and validated.
//!
//! Everything the kickstart writes onto the guest lives as real files under
//! `guest/` (units, keepalived, greenboot, scripts); the renderer fills their
//! `@@NAME@@` placeholders and inlines each one into the `%post` as a heredoc,
//! so those files stay the single source. The same rendered files are written
//! to `out/files/` as a root overlay, for the local world's installer, which
//! then runs `configure-guest.sh` just as the `%post` does.
//!
//! Values the lab leaves `auto` (host address, VIP, registry address) are
//! resolved here, at run time, from the host's default route; the resolved
//! values are recorded in the artifact's manifest.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{StageCtx, StageOutput};
use crate::{
    lab::Ipv4Cidr,
    tools::{self, systemd_analyze::Manager},
};

/// The guest's NIC in the RHEL world: libvirt's virtio NIC on the q35 machine
/// is `enp1s0` on RHEL 8. `configure-guest.sh` corrects it on guests whose
/// default route uses another interface, so this is only the validated default.
const GUEST_INTERFACE: &str = "enp1s0";

/// Where the folders under `guest/` land on the guest.
const DESTINATIONS: &[(&str, &str)] = &[
    ("units/system", "etc/systemd/system"),
    ("units/user", "etc/systemd/user"),
    // Configuration the units read (rpm-ostreed's policy, the registry drop-in).
    ("units/etc", "etc"),
    ("keepalived", "etc/keepalived"),
    ("greenboot", "etc/greenboot"),
    ("scripts", "usr/local/libexec/edgelab"),
];

/// The heredoc terminator used in `%post`; no guest file may contain it.
const HEREDOC_END: &str = "EDGELAB_EOF";

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let guest = param_str(ctx, "guest")?;
    let addresses = resolve_addresses(ctx)?;
    let values = placeholder_values(ctx, &addresses)?;
    let guest_folder = guest_folder(ctx)?;

    let files = render_guest_files(&guest_folder, &values)?;
    let files_out = ctx.out.join("files");
    for file in &files {
        let path = files_out.join(&file.destination);
        std::fs::create_dir_all(path.parent().expect("a destination has a folder"))?;
        std::fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))?;
    }

    let template = &ctx.lab.kickstart.template;
    let template_text = std::fs::read_to_string(template)
        .with_context(|| format!("reading kickstart template {}", template.display()))?;
    let mut values = values;
    values.insert("GUEST_FILES".into(), post_heredocs(&files)?);
    let kickstart = render(&template_text, &values).with_context(|| format!("rendering {}", template.display()))?;
    let kickstart_name = format!("{guest}.ks");
    let kickstart_path = ctx.out.join(&kickstart_name);
    std::fs::write(&kickstart_path, &kickstart)?;

    let validated = validate(&kickstart_path, &files_out, &files)?;
    Ok(StageOutput {
        output_digest: super::digest_out(&ctx.out)?,
        extra: json!({
            "kickstart": kickstart_name,
            "kickstart-bytes": kickstart.len(),
            "host-address": addresses.host.to_string(),
            "vip": addresses.vip.to_string(),
            "registry": addresses.registry,
            "repo-url": addresses.repo_url,
            "files": files.iter().map(|file| format!("/{}", file.destination)).collect::<Vec<_>>(),
            "configure": "/usr/local/libexec/edgelab/configure-guest.sh",
            "validated-with": validated,
        }),
    })
}

/// The lab's addresses with `auto` resolved.
struct Addresses {
    host: Ipv4Cidr,
    vip: Ipv4Cidr,
    /// `address:port`
    registry: String,
    repo_url: String,
}

/// A rendered guest file and where it goes, relative to the guest's root.
struct GuestFile {
    destination: String,
    mode: u32,
    text: String,
}

fn resolve_addresses(ctx: &StageCtx) -> anyhow::Result<Addresses> {
    let host_param = param_str(ctx, "host-address")?;
    let vip_param = param_str(ctx, "vip")?;
    let registry_param = param_str(ctx, "registry")?;
    let repo_url_param = param_str(ctx, "repo-url")?;
    let (registry_host, registry_port) =
        registry_param.rsplit_once(':').with_context(|| format!("registry `{registry_param}` has no port"))?;

    let needs_host = host_param == "auto" || vip_param == "auto" || registry_host == "auto";
    let host = match host_param.as_str() {
        "auto" if needs_host => tools::ip::default_route_address()
            .context("resolving the lab's `host-address \"auto\"` from the default route")?,
        text => parse_cidr(text).with_context(|| format!("host-address `{text}`"))?,
    };
    let vip = match vip_param.as_str() {
        "auto" => default_vip(host)?,
        text => parse_cidr(text).with_context(|| format!("vip `{text}`"))?,
    };
    let registry_host = if registry_host == "auto" { host.addr.to_string() } else { registry_host.to_string() };
    Ok(Addresses {
        host,
        vip,
        registry: format!("{registry_host}:{registry_port}"),
        repo_url: repo_url_param.replace("${HOST}", &host.addr.to_string()),
    })
}

/// `.100` on the host's subnet, with the host's prefix (the original demo's VIP).
fn default_vip(host: Ipv4Cidr) -> anyhow::Result<Ipv4Cidr> {
    let host_bits = 32 - u32::from(host.prefix.min(32));
    if host_bits < 8 && (1u64 << host_bits) <= 101 {
        bail!("the host's subnet {host} is too small for the VIP `.100`: set `network {{ vip \"A.B.C.D/NN\" }}`");
    }
    let mask = if host_bits >= 32 { 0 } else { u32::MAX << host_bits };
    let vip = Ipv4Addr::from((u32::from(host.addr) & mask) | 100);
    if vip == host.addr {
        bail!("the host itself has the default VIP {vip}: set `network {{ vip \"A.B.C.D/NN\" }}`");
    }
    Ok(Ipv4Cidr { addr: vip, prefix: host.prefix })
}

fn parse_cidr(text: &str) -> anyhow::Result<Ipv4Cidr> {
    let (addr, prefix) = text.split_once('/').unwrap_or((text, "24"));
    let prefix: u8 = prefix.parse().context("bad prefix length")?;
    if prefix > 32 {
        bail!("prefix length {prefix} is over 32");
    }
    Ok(Ipv4Cidr { addr: addr.parse().context("bad IPv4 address")?, prefix })
}

/// Every placeholder the template and the guest files may use.
fn placeholder_values(ctx: &StageCtx, addresses: &Addresses) -> anyhow::Result<BTreeMap<String, String>> {
    let ostree_ref = match ctx.stage.params.get("ref") {
        Some(Value::String(text)) => text.clone(),
        _ => bail!("the kickstart's channel `{}` is not a channel of the lab", ctx.lab.kickstart.channel),
    };
    let values = [
        ("GUEST", param_str(ctx, "guest")?),
        ("ROLE", param_str(ctx, "role")?),
        ("VRRP_STATE", param_str(ctx, "vrrp-state")?),
        ("PRIORITY", param_str(ctx, "priority")?),
        ("VRRP_ROUTER_ID", param_str(ctx, "vrrp-router-id")?),
        ("INTERFACE", GUEST_INTERFACE.to_string()),
        ("HOST_ADDRESS", addresses.host.addr.to_string()),
        ("VIP", addresses.vip.to_string()),
        ("VIP_ADDRESS", addresses.vip.addr.to_string()),
        ("REGISTRY", addresses.registry.clone()),
        ("REPO_URL", addresses.repo_url.clone()),
        ("OSTREE_REF", ostree_ref),
        ("USER", param_str(ctx, "user")?),
        ("PASSWORD_HASH", password_hash(ctx)?),
        ("ROOT_SSHKEY", root_sshkey(ctx)?),
    ];
    Ok(values.into_iter().map(|(name, value)| (name.to_string(), value)).collect())
}

/// The kickstart line giving root the lab's check key (RHEL world: the
/// scenarios' ssh channel, `guests::channel`); a comment in the local
/// world, whose guests are checked on their serial check shell.
fn root_sshkey(ctx: &StageCtx) -> anyhow::Result<String> {
    if !crate::world::GuestWorld::of(ctx.lab).uses_lab_key() {
        return Ok("# (local world: checks use the guest's serial check shell, no key)".into());
    }
    let Some(file) = &ctx.lab.check_key else {
        bail!("the lab has no check key for its libvirt guests (the CLI makes one when it loads a RHEL-world lab)");
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the check key {}", file.display()))?;
    let key = text.trim();
    if !key.starts_with("ssh-") || key.contains('"') || key.lines().count() != 1 {
        bail!("{} is not one OpenSSH public key", file.display());
    }
    Ok(format!("sshkey --username=root \"{key}\""))
}

/// The user's crypt(3) hash from the lab's `password-hash-file`.
fn password_hash(ctx: &StageCtx) -> anyhow::Result<String> {
    let Some(file) = &ctx.lab.kickstart.password_hash_file else {
        bail!(
            "the kickstart needs the user's password hash: add `password-hash-file \"FILE\"` to the lab's \
             `kickstart` block, with the output of `openssl passwd -6` in FILE"
        );
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading password hash {}", file.display()))?;
    let hash = text.trim();
    // `$id$salt$hash` (or `$id$rounds=N$salt$hash`): anything else may be a
    // plaintext password, which must never reach a kickstart.
    let fields: Vec<&str> = hash.split('$').collect();
    if !hash.starts_with('$') || fields.len() < 4 || hash.contains(char::is_whitespace) {
        bail!(
            "{} does not hold a crypt(3) hash (`$6$salt$...`); write one with `openssl passwd -6 > {}`",
            file.display(),
            file.display()
        );
    }
    Ok(hash.to_string())
}

fn param_str(ctx: &StageCtx, name: &str) -> anyhow::Result<String> {
    match ctx.stage.params.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        _ => bail!("stage `{}` has no parameter `{name}`", ctx.stage.id),
    }
}

/// The folder holding the guest files: the one above the template's folder,
/// as the graph's `guest files` inputs say.
fn guest_folder(ctx: &StageCtx) -> anyhow::Result<PathBuf> {
    let template = &ctx.lab.kickstart.template;
    template
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("kickstart template {} has no guest folder above it", template.display()))
}

/// Renders every file under the guest folders listed in DESTINATIONS.
fn render_guest_files(guest_folder: &Path, values: &BTreeMap<String, String>) -> anyhow::Result<Vec<GuestFile>> {
    let mut files = Vec::new();
    for (source, destination) in DESTINATIONS {
        let root = guest_folder.join(source);
        if !root.is_dir() {
            bail!("guest files folder {} is missing", root.display());
        }
        for entry in walkdir::WalkDir::new(&root).sort_by_file_name() {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&root).expect("walkdir stays under its root");
            let rel = rel.to_string_lossy();
            let text = std::fs::read_to_string(entry.path())
                .with_context(|| format!("reading guest file {}", entry.path().display()))?;
            let text = render(&text, values).with_context(|| format!("rendering {}", entry.path().display()))?;
            let rel = rel.strip_suffix(".in").unwrap_or(&rel);
            let mode = if rel.ends_with(".sh") { 0o755 } else { 0o644 };
            files.push(GuestFile { destination: format!("{destination}/{rel}"), mode, text });
        }
    }
    files.sort_by(|a, b| a.destination.cmp(&b.destination));
    Ok(files)
}

/// Replaces `@@NAME@@` with `values[NAME]`; an unknown name is an error that
/// says where it is.
fn render(text: &str, values: &BTreeMap<String, String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut unknown = Vec::new();
    for (line_idx, line) in text.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("@@") {
            let after = &rest[start + 2..];
            let Some(len) = after.find("@@") else { break };
            let name = &after[..len];
            out.push_str(&rest[..start]);
            match values.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    unknown.push(format!("line {}: @@{name}@@", line_idx + 1));
                    out.push_str(&rest[start..start + 4 + len]);
                }
            }
            rest = &after[len + 2..];
        }
        out.push_str(rest);
    }
    if !unknown.is_empty() {
        let known: Vec<&str> = values.keys().map(String::as_str).collect();
        bail!("unknown placeholders ({}); known are: {}", unknown.join(", "), known.join(", "));
    }
    Ok(out)
}

/// The `%post` lines that write every guest file: a quoted heredoc each, so
/// the shell expands nothing in them.
fn post_heredocs(files: &[GuestFile]) -> anyhow::Result<String> {
    let mut out = String::new();
    for file in files {
        for line in file.text.lines() {
            if line == HEREDOC_END {
                bail!("guest file /{} contains the line `{HEREDOC_END}`", file.destination);
            }
            // Anaconda ends the %post at a line starting with `%`.
            if line.trim_start().starts_with('%') {
                bail!(
                    "guest file /{} has a line starting with `%`, which would end the kickstart's %post",
                    file.destination
                );
            }
        }
        let path = format!("/{}", file.destination);
        let folder = Path::new(&path).parent().map(|it| it.display().to_string()).unwrap_or_else(|| "/".into());
        out.push_str(&format!("mkdir -p {folder}\ncat > {path} <<'{HEREDOC_END}'\n{}", file.text));
        if !file.text.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("{HEREDOC_END}\nchmod {:o} {path}\n\n", file.mode));
    }
    Ok(out.trim_end().to_string())
}

/// Runs every validator on what was rendered; returns their names.
fn validate(kickstart: &Path, files_out: &Path, files: &[GuestFile]) -> anyhow::Result<Vec<&'static str>> {
    // Every validator is required: the prereqs stage installs them all
    // (they are this stage's declared tools), so a missing one is an error
    // with its install hint, never a silently unvalidated kickstart.
    tools::ksvalidator::validate(kickstart)?;
    tools::keepalived::config_test(&files_out.join("etc/keepalived/keepalived.conf"), GUEST_INTERFACE)?;
    // The units run /usr/bin/podman, which verify insists on finding here.
    tools::require("podman")?;
    verify_units(files_out, files)?;
    let scripts: Vec<PathBuf> = files
        .iter()
        .filter(|file| file.destination.ends_with(".sh"))
        .map(|file| files_out.join(&file.destination))
        .collect();
    for script in &scripts {
        tools::bash::syntax_check(script)?;
    }
    tools::shellcheck::check(&scripts)?;
    let validated = vec!["ksvalidator", "keepalived", "systemd-analyze", "bash -n", "shellcheck"];
    Ok(validated)
}

/// `systemd-analyze verify` on the units, with edgelab's own scripts pointed
/// at their rendered copies: the build host does not have them installed.
fn verify_units(files_out: &Path, files: &[GuestFile]) -> anyhow::Result<()> {
    let scratch = tempfile_dir(files_out)?;
    let scripts_on_guest = "/usr/local/libexec/edgelab/";
    let scripts_here = format!("{}/usr/local/libexec/edgelab/", files_out.display());
    for (manager, folder) in [(Manager::System, "etc/systemd/system/"), (Manager::User, "etc/systemd/user/")] {
        let unit_dir = scratch.join(folder);
        std::fs::create_dir_all(&unit_dir)?;
        let mut units = Vec::new();
        for file in files.iter().filter(|file| file.destination.starts_with(folder)) {
            let rel = &file.destination[folder.len()..];
            let path = unit_dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("a unit file has a folder"))?;
            std::fs::write(&path, file.text.replace(scripts_on_guest, &scripts_here))?;
            // Drop-ins (`podman-auto-update.timer.d/*.conf`) change units the
            // guest's packages ship; verify reads them with those units.
            if !rel.contains('/') {
                units.push(path);
            }
        }
        let runtime_dir = scratch.join("runtime");
        std::fs::create_dir_all(&runtime_dir)?;
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))?;
        tools::systemd_analyze::verify(&units, manager, &runtime_dir)?;
    }
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}

/// A fresh folder beside `out/files` (inside the stage's scratch area) for
/// validation copies; removed afterwards.
fn tempfile_dir(files_out: &Path) -> anyhow::Result<PathBuf> {
    let dir = files_out.parent().unwrap_or(files_out).join(".validate");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vip_is_dot_100_on_the_host_subnet() {
        let host = parse_cidr("192.168.122.1/24").unwrap();
        assert_eq!(default_vip(host).unwrap().to_string(), "192.168.122.100/24");
        let host = parse_cidr("10.1.2.3/16").unwrap();
        assert_eq!(default_vip(host).unwrap().to_string(), "10.1.0.100/16");
        assert!(default_vip(parse_cidr("10.0.0.100/24").unwrap()).is_err());
        assert!(default_vip(parse_cidr("10.0.0.1/26").unwrap()).is_err());
    }

    #[test]
    fn render_fills_placeholders_and_names_unknown_ones() {
        let values = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(render("x @@A@@ y @@A@@\n@ @@ z\n", &values).unwrap(), "x 1 y 1\n@ @@ z\n");
        let err = render("ok\nbad @@B@@\n", &values).unwrap_err().to_string();
        assert!(err.contains("line 2: @@B@@"), "{err}");
    }
}

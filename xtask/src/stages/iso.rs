//! The `iso` stage (RHEL world): the RHEL boot ISO remastered for one guest.
//!
//! The guest's kickstart goes to the image's root, and every installer boot
//! entry gets `inst.ks=hd:LABEL=<volume id>:/<guest>.ks` plus the guest's
//! kernel arguments, in the three places firmware reads them: isolinux
//! (BIOS), `EFI/BOOT/grub.cfg` and the grub.cfg inside `images/efiboot.img`
//! (UEFI from the El Torito image). No root, no loop mounts, no containers:
//! xorriso rewrites the image and mtools edits the FAT image in place. The
//! volume id and the boot records are kept, so the image boots as the
//! original did. The output digest is the new ISO's sha256.

use std::{os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{StageCtx, StageOutput};
use crate::tools::{self, xorriso};

const ISOLINUX_CFG: &str = "/isolinux/isolinux.cfg";
const GRUB_CFG: &str = "/EFI/BOOT/grub.cfg";
const EFIBOOT_IMG: &str = "/images/efiboot.img";
/// The grub.cfg inside efiboot.img.
const EFIBOOT_GRUB_CFG: &str = "/EFI/BOOT/grub.cfg";

/// Kernel arguments that may legitimately repeat; only an exact repeat of
/// ours is dropped when remastering an already remastered image.
const REPEATABLE_ARGS: &[&str] = &["console"];

pub fn run(ctx: &StageCtx) -> anyhow::Result<StageOutput> {
    let guest = param_str(ctx, "guest")?;
    let kernel_args = param_str(ctx, "kernel-args")?;
    let base = ctx
        .lab
        .boot_iso
        .as_ref()
        .map(|iso| iso.file.clone())
        .context("the lab names no `boot-iso`: the RHEL world boots guests from a remastered RHEL boot ISO")?;
    check_base_exists(&base)?;
    let volume_id = xorriso::volume_id(&base)
        .with_context(|| format!("reading the volume id of {}", base.display()))?
        .with_context(|| {
            format!(
                "{} has no readable volume id (is it an ISO 9660 image?); the installer finds its kickstart by it",
                base.display()
            )
        })?;
    check_layout(&base)?;

    let kickstart_input = ctx.inputs.get("kickstart").context("the iso stage needs its guest's kickstart")?;
    let kickstart_name = match kickstart_input.extra.get("kickstart") {
        Some(Value::String(name)) => name.clone(),
        _ => format!("{guest}.ks"),
    };
    let kickstart = kickstart_input.out.join(&kickstart_name);
    if !kickstart.is_file() {
        bail!("the kickstart artifact has no {}", kickstart.display());
    }

    let args = boot_args(&volume_id, &kickstart_name, &kernel_args);
    let work = ctx.out.join(".work");
    std::fs::create_dir_all(&work)?;
    let isolinux_cfg = work.join("isolinux.cfg");
    let grub_cfg = work.join("grub.cfg");
    let efiboot_img = work.join("efiboot.img");
    let efiboot_grub_cfg = work.join("efiboot-grub.cfg");
    for (iso_path, local) in [(ISOLINUX_CFG, &isolinux_cfg), (GRUB_CFG, &grub_cfg), (EFIBOOT_IMG, &efiboot_img)] {
        xorriso::extract(&base, iso_path, local)?;
        // Files extracted from an ISO keep its read-only modes.
        std::fs::set_permissions(local, std::fs::Permissions::from_mode(0o644))?;
    }
    let mut n_entries = 0;
    for (path, syntax) in [(&isolinux_cfg, Syntax::Isolinux), (&grub_cfg, Syntax::Grub)] {
        let text = std::fs::read_to_string(path)?;
        let (text, n) = add_kernel_args(&text, syntax, &args);
        n_entries += n;
        std::fs::write(path, text)?;
    }
    let efi_text = tools::mtools::read_text(&efiboot_img, EFIBOOT_GRUB_CFG)
        .context("the boot ISO's images/efiboot.img has no EFI/BOOT/grub.cfg")?;
    let (efi_text, n) = add_kernel_args(&efi_text, Syntax::Grub, &args);
    n_entries += n;
    std::fs::write(&efiboot_grub_cfg, efi_text)?;
    tools::mtools::write_file(&efiboot_img, &efiboot_grub_cfg, EFIBOOT_GRUB_CFG)?;
    if n_entries == 0 {
        bail!(
            "{} has no installer boot entries (no kernel line with inst.stage2=) to add the kickstart to",
            base.display()
        );
    }

    let iso = ctx.out.join(format!("{guest}.iso"));
    let mappings = [
        xorriso::Mapping { local: kickstart.clone(), iso_path: format!("/{kickstart_name}") },
        xorriso::Mapping { local: isolinux_cfg, iso_path: ISOLINUX_CFG.into() },
        xorriso::Mapping { local: grub_cfg, iso_path: GRUB_CFG.into() },
        xorriso::Mapping { local: efiboot_img, iso_path: EFIBOOT_IMG.into() },
    ];
    ctx.progress.note(&format!("writing {} from {}", iso.display(), base.display()));
    xorriso::remaster(&xorriso::Remaster { base: &base, output: &iso, volume_id: &volume_id, mappings: &mappings })?;
    let implanted = tools::isomd5::available();
    if implanted {
        tools::isomd5::implant(&iso)?;
    }
    std::fs::remove_dir_all(&work)?;

    let digest = crate::hash::digest_file(&iso)?;
    Ok(StageOutput {
        output_digest: digest,
        extra: json!({
            "iso": format!("{guest}.iso"),
            "volume-id": volume_id,
            "boot-args": args.join(" "),
            "boot-entries": n_entries,
            "implanted-md5": implanted,
        }),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    /// `append initrd=initrd.img inst.stage2=... quiet`
    Isolinux,
    /// `linux /images/pxeboot/vmlinuz inst.stage2=... quiet` (or `linuxefi`)
    Grub,
}

fn param_str(ctx: &StageCtx, name: &str) -> anyhow::Result<String> {
    match ctx.stage.params.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        _ => bail!("stage `{}` has no parameter `{name}`", ctx.stage.id),
    }
}

fn check_base_exists(base: &Path) -> anyhow::Result<()> {
    if !base.is_file() {
        bail!(
            "the RHEL boot ISO {} does not exist: download the RHEL 8 \"Boot ISO\" (x86_64) from the Red Hat \
             Customer Portal (access.redhat.com/downloads, Red Hat Enterprise Linux 8) and save it there, or \
             point `boot-iso file=...` in lab.kdl at it",
            base.display()
        );
    }
    Ok(())
}

fn check_layout(base: &Path) -> anyhow::Result<()> {
    let wanted = [ISOLINUX_CFG, GRUB_CFG, EFIBOOT_IMG];
    let found = xorriso::existing(base, &wanted)?;
    let missing: Vec<&str> = wanted.iter().copied().filter(|path| !found.iter().any(|it| it == path)).collect();
    if !missing.is_empty() {
        bail!(
            "{} is not a RHEL boot ISO: it has no {} (a RHEL 8 boot ISO has isolinux/isolinux.cfg, \
             EFI/BOOT/grub.cfg and images/efiboot.img)",
            base.display(),
            missing.join(", ")
        );
    }
    Ok(())
}

/// The arguments every installer entry gets: where the kickstart is, then
/// the guest's own.
fn boot_args(volume_id: &str, kickstart_name: &str, kernel_args: &str) -> Vec<String> {
    // Anaconda's label syntax writes spaces as \x20, as the boot ISO's own
    // inst.stage2= does.
    let label = volume_id.replace(' ', "\\x20");
    std::iter::once(format!("inst.ks=hd:LABEL={label}:/{kickstart_name}"))
        .chain(kernel_args.split_whitespace().map(str::to_string))
        .collect()
}

/// Appends `args` to every installer kernel line of a boot config, first
/// dropping any earlier `inst.ks=` and earlier values of the same arguments,
/// so remastering a remastered image does not pile them up. Returns the new
/// text and how many lines were changed.
fn add_kernel_args(text: &str, syntax: Syntax, args: &[String]) -> (String, usize) {
    let key = |arg: &str| arg.split_once('=').map(|(key, _)| key.to_string()).unwrap_or_else(|| arg.to_string());
    let mut out = String::with_capacity(text.len() + 256);
    let mut n_changed = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        let indent = &body[..body.len() - body.trim_start().len()];
        let mut tokens = body.split_whitespace();
        let command = tokens.next().unwrap_or("");
        let is_kernel_line = match syntax {
            Syntax::Isolinux => command.eq_ignore_ascii_case("append"),
            Syntax::Grub => command == "linux" || command == "linuxefi",
        };
        if !is_kernel_line || !body.contains("inst.stage2=") {
            out.push_str(line);
            continue;
        }
        let kept: Vec<&str> = tokens
            .filter(|token| {
                let token_key = key(token);
                if token_key == "inst.ks" {
                    return false;
                }
                !args.iter().any(|arg| {
                    if REPEATABLE_ARGS.contains(&key(arg).as_str()) { arg == token } else { key(arg) == token_key }
                })
            })
            .collect();
        let new_tokens: Vec<&str> =
            std::iter::once(command).chain(kept).chain(args.iter().map(String::as_str)).collect();
        out.push_str(indent);
        out.push_str(&new_tokens.join(" "));
        out.push_str(ending);
        n_changed += 1;
    }
    (out, n_changed)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn kernel_args_are_appended_once() {
        let args = boot_args(
            "RHEL-8-6-0-BaseOS-x86_64",
            "edge-device-2.ks",
            "inst.text console=ttyS0 vip_state=BACKUP vip_priority=254",
        );
        let grub = "menuentry 'Install' {\n\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=RHEL-8-6-0-BaseOS-x86_64 quiet\n\tinitrdefi /images/pxeboot/initrd.img\n}\n";
        let (once, n) = add_kernel_args(grub, Syntax::Grub, &args);
        assert_eq!(n, 1);
        expect![[r#"
            menuentry 'Install' {
            	linuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL=RHEL-8-6-0-BaseOS-x86_64 quiet inst.ks=hd:LABEL=RHEL-8-6-0-BaseOS-x86_64:/edge-device-2.ks inst.text console=ttyS0 vip_state=BACKUP vip_priority=254
            	initrdefi /images/pxeboot/initrd.img
            }
        "#]]
        .assert_eq(&once);
        let (twice, _) = add_kernel_args(&once, Syntax::Grub, &args);
        assert_eq!(once, twice);

        // A remaster with a new priority replaces the old one; other consoles stay.
        let isolinux = "label linux\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL=X console=tty0 console=ttyS0 vip_priority=1 inst.ks=hd:LABEL=X:/old.ks\n";
        let (text, _) = add_kernel_args(isolinux, Syntax::Isolinux, &args);
        expect![[r#"
            label linux
              kernel vmlinuz
              append initrd=initrd.img inst.stage2=hd:LABEL=X console=tty0 inst.ks=hd:LABEL=RHEL-8-6-0-BaseOS-x86_64:/edge-device-2.ks inst.text console=ttyS0 vip_state=BACKUP vip_priority=254
        "#]]
        .assert_eq(&text);
    }
}

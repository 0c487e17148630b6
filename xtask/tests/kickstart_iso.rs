//! The kickstart and iso stages against the real tools: pykickstart's
//! ksvalidator, keepalived, systemd-analyze, bash, shellcheck, xorriso,
//! mtools and implantisomd5. The boot ISO is a synthetic one with the RHEL
//! boot ISO's layout (isolinux and EFI El Torito images, an efiboot.img with
//! a grub.cfg, a RHEL volume id), built here: the real one is 800 MB and
//! behind a Red Hat login. The demo Lab is lab.kdl itself
//! (`support/demo_lab.rs`) with the RHEL world pinned.

#[path = "support/demo_lab.rs"]
mod demo_lab;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Instant,
};

use edgelab::{
    graph::{self, StageId, StageKind},
    key::{Facts, Preimage},
    lab::*,
    progress::Progress,
    stages::{self, Input, StageCtx, StageOutput},
    store::Store,
    tools::{self, Cmd},
};

const VOLUME_ID: &str = "RHEL-8-6-0-BaseOS-x86_64";

#[test]
fn kickstarts_for_both_guests_render_and_pass_the_validators() {
    require_validators();
    let tmp = tempfile::tempdir().unwrap();
    let lab = demo_lab(None);
    for (guest, state, priority) in [("edge-device-1", "MASTER", 255), ("edge-device-2", "BACKUP", 254)] {
        let out = tmp.path().join(guest);
        let output = run_kickstart(&lab, guest, &out).unwrap();
        let kickstart = std::fs::read_to_string(out.join(format!("{guest}.ks"))).unwrap();
        eprintln!("{guest}.ks: {} bytes", kickstart.len());
        std::fs::write(format!("/tmp/sample-{guest}.ks"), &kickstart).unwrap();

        // The stage ran every validator; run the main ones again here so a
        // silently skipped validator cannot pass this test.
        let validated = output.extra["validated-with"].clone();
        assert_eq!(
            validated,
            serde_json::json!(["ksvalidator", "keepalived", "systemd-analyze", "bash -n", "shellcheck"])
        );
        tools::ksvalidator::validate(&out.join(format!("{guest}.ks"))).unwrap();
        let keepalived_conf = out.join("files/etc/keepalived/keepalived.conf");
        tools::keepalived::config_test(&keepalived_conf, "enp1s0").unwrap();
        let scripts: Vec<PathBuf> =
            walk(&out.join("files")).into_iter().filter(|p| p.to_string_lossy().ends_with(".sh")).collect();
        assert_eq!(scripts.len(), 4, "{scripts:?}");
        tools::shellcheck::check(&scripts).unwrap();

        for wanted in [
            "ostreesetup --nogpg --url=http://192.168.122.1:8000/repo/ --osname=rhel --remote=edge --ref=rhel/8/x86_64/edge",
            "user --name=core --groups=wheel --iscrypted --password=$6$edgelab$",
            &format!("network --bootproto=dhcp --noipv6 --hostname={guest}"),
            "global_defs {\n    vrrp_version 3\n}\n",
            "    advert_int 0.3\n",
            &format!("    state {state}\n"),
            &format!("    priority {priority}\n"),
            "        192.168.122.100/24\n",
            "ListenStream=192.168.122.100:8080\nFreeBind=true\n",
            "podman run --cidfile=%t/%n.ctr-id --cgroups=no-conmon --sdnotify=conmon --rm --replace -d --name httpd --network=none --label io.containers.autoupdate=registry 192.168.122.1:5000/httpd:prod",
            "Restart=on-failure",
            "location = \"192.168.122.1:5000\"\ninsecure = true",
            "AutomaticUpdatePolicy=stage",
            "firewall-offline-cmd --add-rich-rule='rule protocol value=\"vrrp\" accept'",
            "touch \"/var/lib/systemd/linger/$user\"",
            "cat > /etc/greenboot/check/required.d/01_check_upgrade.sh <<'EDGELAB_EOF'",
            "chmod 755 /etc/greenboot/check/required.d/01_check_upgrade.sh",
            "/usr/local/libexec/edgelab/configure-guest.sh\n%end",
        ] {
            assert!(kickstart.contains(wanted), "{guest}.ks lacks {wanted:?}:\n{kickstart}");
        }
        assert!(!kickstart.contains("@@"), "unrendered placeholder in {guest}.ks");
        // The files the %post writes are the same ones the local installer gets.
        let keepalived_text = std::fs::read_to_string(&keepalived_conf).unwrap();
        assert!(kickstart.contains(&keepalived_text));
    }
}

#[test]
fn validators_reject_broken_files() {
    require_validators();
    let tmp = tempfile::tempdir().unwrap();
    let lab = demo_lab(None);
    let out = tmp.path().join("ks");
    run_kickstart(&lab, "edge-device-2", &out).unwrap();

    let keepalived_conf = out.join("files/etc/keepalived/keepalived.conf");
    let text = std::fs::read_to_string(&keepalived_conf).unwrap();
    std::fs::write(&keepalived_conf, text.replace("priority 254", "priority 300")).unwrap();
    let err = tools::keepalived::config_test(&keepalived_conf, "enp1s0").unwrap_err();
    assert!(format!("{err:#}").contains("outside range"), "{err:#}");

    let socket = out.join("files/etc/systemd/user/container-httpd.socket");
    let text = std::fs::read_to_string(&socket).unwrap();
    std::fs::write(&socket, text.replace("FreeBind=true", "FreeBnd=true")).unwrap();
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&runtime).unwrap();
    let err = tools::systemd_analyze::verify(&[socket], tools::systemd_analyze::Manager::User, &runtime).unwrap_err();
    assert!(format!("{err:#}").contains("FreeBnd"), "{err:#}");

    let kickstart = out.join("edge-device-2.ks");
    let text = std::fs::read_to_string(&kickstart).unwrap();
    std::fs::write(&kickstart, text.replace("--osname=rhel", "--os-name=rhel")).unwrap();
    assert!(tools::ksvalidator::validate(&kickstart).is_err());
}

#[test]
fn auto_addresses_resolve_from_the_default_route() {
    let host = tools::ip::default_route_address().unwrap();
    let mut lab = demo_lab(None);
    lab.network.host_address = Auto::Auto;
    let tmp = tempfile::tempdir().unwrap();
    let output = run_kickstart(&lab, "edge-device-1", tmp.path()).unwrap();
    assert_eq!(output.extra["host-address"], host.to_string());
    let octets = host.addr.octets();
    let vip = format!("{}.{}.{}.100/{}", octets[0], octets[1], octets[2], host.prefix);
    assert_eq!(output.extra["vip"], vip, "host {host} (this check assumes a /24 or larger)");
    assert_eq!(output.extra["registry"], format!("{}:5000", host.addr));
    assert_eq!(output.extra["repo-url"], format!("http://{}:8000/repo/", host.addr));
}

#[test]
fn changing_only_the_backups_priority_changes_only_the_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let before = demo_lab(Some(tmp.path().join("boot.iso")));
    let mut after = before.clone();
    after.guests[1].priority = 253;

    // The rendered kickstarts.
    let mut digests: BTreeMap<(&str, &str), String> = BTreeMap::new();
    for (which, lab) in [("before", &before), ("after", &after)] {
        for guest in ["edge-device-1", "edge-device-2"] {
            let out = tmp.path().join(which).join(guest);
            let output = run_kickstart(lab, guest, &out).unwrap();
            digests.insert((which, guest), output.output_digest);
        }
    }
    let read = |which: &str, guest: &str| {
        std::fs::read_to_string(tmp.path().join(which).join(guest).join(format!("{guest}.ks"))).unwrap()
    };
    assert_eq!(read("before", "edge-device-1"), read("after", "edge-device-1"));
    // Root's only key is the lab's check key; validated by ksvalidator with the rest.
    assert!(read("before", "edge-device-1").contains("\nsshkey --username=root \"ssh-ed25519 "));
    assert_ne!(read("before", "edge-device-2"), read("after", "edge-device-2"));
    assert_eq!(digests[&("before", "edge-device-1")], digests[&("after", "edge-device-1")]);

    // The stage keys, with fixed host facts and the kickstarts' real outputs.
    let facts = Facts::default();
    let keys = |lab: &Lab, which: &str| -> BTreeMap<StageId, String> {
        let graph = graph::build(lab);
        let mut keys = BTreeMap::new();
        for stage in graph.stages.iter().filter(|s| matches!(s.id.kind, StageKind::Kickstart | StageKind::Iso)) {
            let inputs = match stage.id.kind {
                StageKind::Iso => {
                    BTreeMap::from([("kickstart".to_string(), digests[&(which, guest_name(&stage.id.name))].clone())])
                }
                _ => BTreeMap::new(),
            };
            keys.insert(stage.id.clone(), Preimage::of(stage, &facts, inputs).key().0);
        }
        keys
    };
    let (keys_before, keys_after) = (keys(&before, "before"), keys(&after, "after"));
    assert_eq!(keys_before.len(), 4, "{keys_before:?}");
    let changed: Vec<String> =
        keys_before.iter().filter(|(id, key)| keys_after[*id] != **key).map(|(id, _)| id.to_string()).collect();
    assert_eq!(changed, ["kickstart edge-device-2", "iso edge-device-2"]);
}

#[test]
fn remastered_iso_has_the_kickstart_and_boot_args_once_and_keeps_boot_records() {
    let tmp = tempfile::tempdir().unwrap();
    let base = build_synthetic_boot_iso(tmp.path());
    let lab = demo_lab(Some(base.clone()));
    let ks_out = tmp.path().join("ks");
    let ks = run_kickstart(&lab, "edge-device-2", &ks_out).unwrap();

    let started = Instant::now();
    let iso_out = tmp.path().join("iso1");
    let output = run_iso(&lab, "edge-device-2", &ks_out, &ks, &iso_out).unwrap();
    eprintln!("remastered the synthetic ISO in {:.2?}", started.elapsed());
    let iso = iso_out.join("edge-device-2.iso");
    assert_eq!(output.output_digest, edgelab::hash::digest_file(&iso).unwrap());
    assert_eq!(output.extra["implanted-md5"], true);
    // 2 isolinux entries + 2 grub entries + 2 in efiboot.img's grub.cfg.
    assert_eq!(output.extra["boot-entries"], 6);
    check_remastered(&base, &iso, &ks_out.join("edge-device-2.ks"), tmp.path());
    Cmd::new("checkisomd5").arg(&iso).run().unwrap();

    // Remastering the remastered image does not pile arguments up.
    let lab_again = demo_lab(Some(iso.clone()));
    let iso_out2 = tmp.path().join("iso2");
    run_iso(&lab_again, "edge-device-2", &ks_out, &ks, &iso_out2).unwrap();
    check_remastered(&base, &iso_out2.join("edge-device-2.iso"), &ks_out.join("edge-device-2.ks"), tmp.path());
}

#[test]
fn iso_stage_explains_a_bad_base_image() {
    let tmp = tempfile::tempdir().unwrap();
    let ks_out = tmp.path().join("ks");
    let lab = demo_lab(None);
    let ks = run_kickstart(&lab, "edge-device-1", &ks_out).unwrap();

    let missing = demo_lab(Some(tmp.path().join("nowhere.iso")));
    let err = format!("{:#}", run_iso(&missing, "edge-device-1", &ks_out, &ks, &tmp.path().join("a")).unwrap_err());
    assert!(err.contains("does not exist") && err.contains("Red Hat Customer Portal"), "{err}");

    let junk = tmp.path().join("junk.iso");
    std::fs::write(&junk, vec![0x5a; 64 * 1024]).unwrap();
    let err = format!(
        "{:#}",
        run_iso(&demo_lab(Some(junk)), "edge-device-1", &ks_out, &ks, &tmp.path().join("b")).unwrap_err()
    );
    assert!(err.contains("volume id"), "{err}");

    let tree = tmp.path().join("plain");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("README"), "not a boot ISO\n").unwrap();
    let plain = tmp.path().join("plain.iso");
    xorriso_mkisofs(&["-o", path_str(&plain), "-V", "PLAIN", "-R", path_str(&tree)]);
    let err = format!(
        "{:#}",
        run_iso(&demo_lab(Some(plain)), "edge-device-1", &ks_out, &ks, &tmp.path().join("c")).unwrap_err()
    );
    assert!(err.contains("is not a RHEL boot ISO") && err.contains("/isolinux/isolinux.cfg"), "{err}");
}

/// Reads `iso` back with xorriso and mtools and checks it against `base`.
#[track_caller]
fn check_remastered(base: &Path, iso: &Path, kickstart: &Path, tmp: &Path) {
    assert_eq!(tools::xorriso::volume_id(iso).unwrap().as_deref(), Some(VOLUME_ID));
    let records = |image: &Path| {
        let report = tools::xorriso::boot_records(image).unwrap();
        report.lines().filter(|line| !line.starts_with("--modification-date")).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(records(base), records(iso));
    assert!(records(iso).contains("-b '/isolinux/isolinux.bin'") && records(iso).contains("-e '/images/efiboot.img'"));

    let extracted = tmp.join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    let read_back = |iso_path: &str, name: &str| {
        let local = extracted.join(name);
        std::fs::remove_file(&local).ok();
        tools::xorriso::extract(iso, iso_path, &local).unwrap();
        std::fs::read(&local).unwrap()
    };
    assert_eq!(read_back("/edge-device-2.ks", "ks"), std::fs::read(kickstart).unwrap());
    let isolinux = String::from_utf8(read_back("/isolinux/isolinux.cfg", "isolinux.cfg")).unwrap();
    let grub = String::from_utf8(read_back("/EFI/BOOT/grub.cfg", "grub.cfg")).unwrap();
    read_back("/images/efiboot.img", "efiboot.img");
    let efi_grub = tools::mtools::read_text(&extracted.join("efiboot.img"), "/EFI/BOOT/grub.cfg").unwrap();

    let args = [
        format!("inst.ks=hd:LABEL={VOLUME_ID}:/edge-device-2.ks"),
        "inst.text".into(),
        "console=ttyS0".into(),
        "vip_state=BACKUP".into(),
        "vip_priority=254".into(),
    ];
    for (name, text, command) in [
        ("isolinux.cfg", &isolinux, "append"),
        ("grub.cfg", &grub, "linuxefi"),
        ("efiboot.img grub.cfg", &efi_grub, "linuxefi"),
    ] {
        let kernel_lines: Vec<&str> = text.lines().filter(|line| line.trim_start().starts_with(command)).collect();
        assert_eq!(kernel_lines.len(), 2, "{name}:\n{text}");
        for line in kernel_lines {
            for arg in &args {
                let n = line.split_whitespace().filter(|token| token == arg).count();
                assert_eq!(n, 1, "{name}: `{arg}` appears {n} times in `{line}`");
            }
            assert_eq!(line.matches("inst.ks=").count(), 1, "{name}: {line}");
        }
    }
}

// ---- the demo lab ----

/// The Lab lab.kdl declares, with the host address given (tests must not
/// depend on this machine's network) and the RHEL world pinned.
fn demo_lab(boot_iso: Option<PathBuf>) -> Lab {
    let mut lab = demo_lab::demo_lab();
    lab.backends = demo_lab::all_backends(Backend::Rhel);
    lab.network.host_address = Auto::Given(Ipv4Cidr { addr: Ipv4Addr::new(192, 168, 122, 1), prefix: 24 });
    if let Some(file) = boot_iso {
        lab.boot_iso = Some(BootIso { file });
    }
    lab.package_map.clear();
    lab.check_key = Some(check_key());
    lab
}

/// One check key for every lab of this test binary, as one store has one.
fn check_key() -> PathBuf {
    static KEY: std::sync::OnceLock<(tempfile::TempDir, PathBuf)> = std::sync::OnceLock::new();
    let (_, public) = KEY.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("lab_ed25519");
        tools::ssh::keygen(&private, "edgelab test").unwrap();
        let public = dir.path().join("lab_ed25519.pub");
        (dir, public)
    });
    public.clone()
}

fn guest_name(name: &str) -> &'static str {
    match name {
        "edge-device-1" => "edge-device-1",
        "edge-device-2" => "edge-device-2",
        other => panic!("unknown guest {other}"),
    }
}

// ---- running stages ----

fn run_kickstart(lab: &Lab, guest: &str, out: &Path) -> anyhow::Result<StageOutput> {
    run_stage(lab, &StageId::new(StageKind::Kickstart, guest), BTreeMap::new(), out)
}

fn run_iso(lab: &Lab, guest: &str, ks_out: &Path, ks: &StageOutput, out: &Path) -> anyhow::Result<StageOutput> {
    let input = Input { output_digest: ks.output_digest.clone(), out: ks_out.to_path_buf(), extra: ks.extra.clone() };
    run_stage(lab, &StageId::new(StageKind::Iso, guest), BTreeMap::from([("kickstart".to_string(), input)]), out)
}

fn run_stage(lab: &Lab, id: &StageId, inputs: BTreeMap<String, Input>, out: &Path) -> anyhow::Result<StageOutput> {
    let graph = graph::build(lab);
    let stage = graph.stage(id).unwrap_or_else(|| panic!("no stage {id} in the demo graph"));
    std::fs::create_dir_all(out).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let progress = Progress::new(true);
    let ctx = StageCtx { lab, stage, inputs, out: out.to_path_buf(), store: &store, progress: &progress };
    stages::capability(stage).map_err(anyhow::Error::msg)?;
    stages::run(&ctx)
}

#[track_caller]
fn require_validators() {
    assert!(tools::ksvalidator::available(), "{}", tools::ksvalidator::INSTALL_HINT);
    for program in ["keepalived", "unshare", "ip", "systemd-analyze", "bash", "shellcheck", "podman"] {
        tools::require(program).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir).into_iter().map(|e| e.unwrap().into_path()).filter(|p| p.is_file()).collect()
}

// ---- a synthetic RHEL boot ISO ----

/// An ISO with the RHEL 8 boot ISO's layout: BIOS (isolinux) and UEFI
/// (efiboot.img) El Torito images, grub.cfg both on the ISO and inside the
/// FAT image, and the RHEL volume id the boot entries refer to.
fn build_synthetic_boot_iso(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    for sub in ["isolinux", "EFI/BOOT", "images/pxeboot"] {
        std::fs::create_dir_all(tree.join(sub)).unwrap();
    }
    std::fs::write(
        tree.join("isolinux/isolinux.cfg"),
        format!(
            "default vesamenu.c32\ntimeout 600\n\nlabel linux\n  menu label ^Install Red Hat Enterprise Linux 8.6\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL={VOLUME_ID} quiet\n\nlabel check\n  menu label Test this ^media & install Red Hat Enterprise Linux 8.6\n  menu default\n  kernel vmlinuz\n  append initrd=initrd.img inst.stage2=hd:LABEL={VOLUME_ID} rd.live.check quiet\n\nlabel local\n  menu label Boot from ^local drive\n  localboot 0xffff\n"
        ),
    )
    .unwrap();
    let grub = format!(
        "set default=\"1\"\nsearch --no-floppy --set=root -l '{VOLUME_ID}'\nmenuentry 'Install Red Hat Enterprise Linux 8.6' --class fedora --class gnu-linux --class gnu --class os {{\n\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL={VOLUME_ID} quiet\n\tinitrdefi /images/pxeboot/initrd.img\n}}\nmenuentry 'Test this media & install Red Hat Enterprise Linux 8.6' --class fedora --class gnu-linux --class gnu --class os {{\n\tlinuxefi /images/pxeboot/vmlinuz inst.stage2=hd:LABEL={VOLUME_ID} rd.live.check quiet\n\tinitrdefi /images/pxeboot/initrd.img\n}}\n"
    );
    std::fs::write(tree.join("EFI/BOOT/grub.cfg"), &grub).unwrap();
    // A dummy BIOS boot image: xorriso only needs a file to point the
    // El Torito record at (and patches its boot info table).
    std::fs::write(tree.join("isolinux/isolinux.bin"), vec![0u8; 2048]).unwrap();
    std::fs::write(tree.join("images/pxeboot/vmlinuz"), b"kernel").unwrap();
    std::fs::write(tree.join("images/pxeboot/initrd.img"), b"initrd").unwrap();

    let efiboot = tree.join("images/efiboot.img");
    let mtools = |program: &str, args: &[&str]| {
        Cmd::new(program).arg("-i").arg(&efiboot).args(args).env("MTOOLS_SKIP_CHECK", "1").run().unwrap();
    };
    mtools("mformat", &["-C", "-f", "1440", "::"]);
    mtools("mmd", &["::/EFI", "::/EFI/BOOT"]);
    mtools("mcopy", &[path_str(&tree.join("EFI/BOOT/grub.cfg")), "::/EFI/BOOT/grub.cfg"]);

    let iso = dir.join("boot.iso");
    xorriso_mkisofs(&[
        "-o",
        path_str(&iso),
        "-V",
        VOLUME_ID,
        "-b",
        "isolinux/isolinux.bin",
        "-c",
        "isolinux/boot.cat",
        "-no-emul-boot",
        "-boot-load-size",
        "4",
        "-boot-info-table",
        "-eltorito-alt-boot",
        "-e",
        "images/efiboot.img",
        "-no-emul-boot",
        "-R",
        "-J",
        path_str(&tree),
    ]);
    iso
}

fn xorriso_mkisofs(args: &[&str]) {
    tools::require("xorriso").unwrap();
    Cmd::new("xorriso").args(["-as", "mkisofs"]).args(args).run().unwrap();
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

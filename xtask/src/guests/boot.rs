//! What the local launcher decides as a bootloader, kept pure so it is tested
//! with strings: parsing BLS entries, and greenboot's boot counting.
//!
//! On RHEL, GRUB keeps `boot_counter` in grubenv: an upgrade sets it to 3,
//! each boot decrements it, greenboot's green path clears it, and at zero
//! GRUB boots the previous deployment. Here the launcher keeps the same
//! counter in the guest's run state, and the guest's health check verdict
//! comes from a line it prints on the serial console.

use serde::{Deserialize, Serialize};

/// Boots a new default deployment gets before the previous one boots.
pub const BOOT_ATTEMPTS: u32 = 3;

/// The console line of a passing health check.
pub const HEALTHY_MARK: &str = "edgelab-greenboot: healthy";
/// The console line of a failing health check.
pub const RED_MARK: &str = "edgelab-greenboot: red";
/// What the kernel prints last on a power-off (a reboot prints "Restarting").
pub const POWER_OFF_MARK: &str = "reboot: Power down";
/// The console line naming a required check that failed (before the red
/// verdict), as `<mark><folder>/<script> (exit N)`.
pub const CHECK_FAILED_MARK: &str = "edgelab-greenboot: check failed: ";
/// The prefix of each line of the failed check's output that follows it
/// (its last lines, as greenboot's journal would show them).
pub const CHECK_OUTPUT_MARK: &str = "edgelab-greenboot: | ";

/// A required health check that failed in a boot, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedCheck {
    /// `required.d/01_check_upgrade.sh (exit 1)`.
    pub name: String,
    pub output: String,
}

/// One Boot Loader Specification entry (`/boot/loader/entries/*.conf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootEntry {
    /// The file name, e.g. `ostree-2-debian.conf`.
    pub file: String,
    pub title: String,
    /// ostree numbers entries so the default deployment has the highest.
    pub version: u64,
    pub linux: String,
    pub initrd: String,
    pub options: String,
}

/// The launcher's boot counter for a guest (its grubenv).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootCounter {
    /// The default entry being counted, by its `ostree=` target
    /// (`<commit>.<serial>`); a different default restarts the count.
    pub deployment: Option<String>,
    /// Boots of that deployment that ended without a healthy verdict.
    pub failed_boots: u32,
    /// Its health check passed once: it is kept whatever happens later.
    pub good: bool,
}

/// Which entry boots next and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub entry: BootEntry,
    pub deployment: String,
    pub fallback: bool,
    /// What the guest sees as `edgelab.boot_counter=N` (GRUB's
    /// `boot_counter`): the attempts left, this one included. `None` when
    /// nothing is counted: a good or fallback deployment, or one that used
    /// its attempts with nothing to fall back to, where greenboot's red
    /// path finds no counter, runs the red scripts and does not reboot.
    pub boot_counter: Option<u32>,
    /// For the launcher's log: "new deployment abc123.0, attempt 2 of 3".
    pub reason: String,
}

/// How a boot ended, as read from the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// The health check said red, or the boot ended without a verdict.
    Unhealthy,
}

/// How a boot ended, for the counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest's verdict, or `Unhealthy` for a boot that hung or
    /// rebooted without one (the OS's failure, as a watchdog reset is).
    Os(Verdict),
    /// The host's hypervisor failed under the guest (a KVM internal
    /// error): the boot says nothing about the deployment and is not one
    /// of its attempts.
    HostFault,
}

/// Parses one BLS entry file.
pub fn parse_entry(file: &str, text: &str) -> Option<BootEntry> {
    let mut entry = BootEntry {
        file: file.to_string(),
        title: String::new(),
        version: 0,
        linux: String::new(),
        initrd: String::new(),
        options: String::new(),
    };
    for line in text.lines() {
        let line = line.trim();
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let value = value.trim().to_string();
        match key {
            "title" => entry.title = value,
            "version" => entry.version = value.parse().unwrap_or(0),
            "linux" => entry.linux = value,
            "initrd" => entry.initrd = value,
            "options" => entry.options = value,
            _ => {}
        }
    }
    (!entry.linux.is_empty()).then_some(entry)
}

/// The `ostree=` kernel argument of an entry.
pub fn ostree_arg(entry: &BootEntry) -> Option<&str> {
    entry.options.split_whitespace().find_map(|word| word.strip_prefix("ostree="))
}

/// Picks the entry to boot and updates the counter for a new default.
/// `entries` carry the deployment each resolves to. With one deployment and
/// its attempts used, it boots again (as GRUB does with nothing to fall
/// back to), uncounted.
pub fn choose(entries: &[(BootEntry, String)], counter: &mut BootCounter) -> Option<Choice> {
    let mut sorted: Vec<&(BootEntry, String)> = entries.iter().collect();
    sorted.sort_by_key(|entry| std::cmp::Reverse(entry.0.version));
    let (default, default_deployment) = sorted.first()?;
    if counter.deployment.as_deref() != Some(default_deployment.as_str()) {
        *counter = BootCounter { deployment: Some(default_deployment.clone()), failed_boots: 0, good: false };
    }
    let short = |id: &str| id.get(..12).unwrap_or(id).to_string();
    let exhausted = !counter.good && counter.failed_boots >= BOOT_ATTEMPTS;
    if exhausted && let Some((previous, previous_deployment)) = sorted.get(1) {
        return Some(Choice {
            entry: previous.clone(),
            deployment: previous_deployment.clone(),
            fallback: true,
            boot_counter: None,
            reason: format!(
                "{} failed {} boots: booting the previous deployment {}",
                short(default_deployment),
                counter.failed_boots,
                short(previous_deployment)
            ),
        });
    }
    let (boot_counter, reason) = if counter.good {
        (None, format!("deployment {} (healthy)", short(default_deployment)))
    } else if exhausted {
        (
            None,
            format!(
                "deployment {} failed {} boots, no deployment to fall back to: booting it again, \
                 uncounted (greenboot's red scripts run)",
                short(default_deployment),
                counter.failed_boots
            ),
        )
    } else {
        let attempt = counter.failed_boots + 1;
        (
            Some(BOOT_ATTEMPTS - counter.failed_boots),
            format!("deployment {}, attempt {attempt} of {BOOT_ATTEMPTS}", short(default_deployment)),
        )
    };
    Some(Choice {
        entry: default.clone(),
        deployment: default_deployment.clone(),
        fallback: false,
        boot_counter,
        reason,
    })
}

/// Records how a boot of `choice` ended.
pub fn record(choice: &Choice, outcome: Outcome, counter: &mut BootCounter) {
    let verdict = match outcome {
        Outcome::HostFault => return,
        Outcome::Os(verdict) => verdict,
    };
    if choice.fallback {
        // A healthy fallback boot made the rollback permanent (the guest
        // undeployed the failed deployment before saying so). If that
        // deployment is the default again later, it was deployed again (the
        // same commit gets the same `<commit>.<serial>`): it gets three new
        // attempts, as greenboot sets boot_counter for every new deployment.
        if verdict == Verdict::Healthy {
            *counter = BootCounter::default();
        }
        return;
    }
    if counter.good {
        return;
    }
    match verdict {
        Verdict::Healthy => {
            counter.good = true;
            counter.failed_boots = 0;
        }
        // Saturating: a guest left red for years must not wrap its count.
        Verdict::Unhealthy => counter.failed_boots = counter.failed_boots.saturating_add(1),
    }
}

/// The verdict in what the console printed during one boot: the last
/// health line wins (a later red after a green is a failure). `None` when
/// the guest printed none (yet); a boot that ends so counts as unhealthy.
pub fn verdict(console: &str) -> Option<Verdict> {
    let last = console.lines().rev().find(|line| line.contains(HEALTHY_MARK) || line.contains(RED_MARK))?;
    Some(if last.contains(HEALTHY_MARK) { Verdict::Healthy } else { Verdict::Unhealthy })
}

/// The required checks that failed in what the console printed during one
/// boot, each with its output lines, in the order the guest printed them.
pub fn failed_checks(console: &str) -> Vec<FailedCheck> {
    let mut checks: Vec<FailedCheck> = Vec::new();
    for line in console.lines() {
        let line = line.trim_end_matches('\r');
        if let Some((_, name)) = line.split_once(CHECK_FAILED_MARK) {
            checks.push(FailedCheck { name: name.trim().to_string(), output: String::new() });
        } else if let Some((_, text)) = line.split_once(CHECK_OUTPUT_MARK)
            && let Some(check) = checks.last_mut()
        {
            check.output.push_str(text);
            check.output.push('\n');
        }
    }
    checks
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    const ENTRY: &str = "title Debian GNU/Linux 12 (bookworm) (ostree:0)
version 2
options root=/dev/vda rw console=ttyS0 ostree=/ostree/boot.1/debian/4a5b/0
linux /boot/ostree/debian-4a5b/vmlinuz-6.1.0-31-cloud-amd64
initrd /boot/ostree/debian-4a5b/initramfs-6.1.0-31-cloud-amd64.img
";

    #[test]
    fn parses_an_ostree_entry() {
        let entry = parse_entry("ostree-2-debian.conf", ENTRY).unwrap();
        expect![[r#"
            BootEntry {
                file: "ostree-2-debian.conf",
                title: "Debian GNU/Linux 12 (bookworm) (ostree:0)",
                version: 2,
                linux: "/boot/ostree/debian-4a5b/vmlinuz-6.1.0-31-cloud-amd64",
                initrd: "/boot/ostree/debian-4a5b/initramfs-6.1.0-31-cloud-amd64.img",
                options: "root=/dev/vda rw console=ttyS0 ostree=/ostree/boot.1/debian/4a5b/0",
            }
        "#]]
        .assert_debug_eq(&entry);
        assert_eq!(ostree_arg(&entry), Some("/ostree/boot.1/debian/4a5b/0"));
    }

    fn entry(version: u64) -> BootEntry {
        BootEntry {
            file: format!("ostree-{version}-debian.conf"),
            title: String::new(),
            version,
            linux: "vmlinuz".into(),
            initrd: "initrd".into(),
            options: String::new(),
        }
    }

    /// Runs boots with the given verdicts over two entries (`new` default,
    /// `old` previous) and shows what booted each time.
    #[track_caller]
    fn check(verdicts: &[Verdict], expect: Expect) {
        let entries = vec![(entry(1), "old.0".to_string()), (entry(2), "new.0".to_string())];
        let mut counter = BootCounter { deployment: Some("old.0".into()), failed_boots: 0, good: true };
        let mut log = String::new();
        for verdict in verdicts {
            let choice = choose(&entries, &mut counter).unwrap();
            record(&choice, Outcome::Os(*verdict), &mut counter);
            log.push_str(&format!("{} ({}) -> {verdict:?}\n", choice.deployment, choice.reason));
        }
        expect.assert_eq(&log);
    }

    /// After the healthy fallback the entries here still hold new.0: that is
    /// new.0 deployed again, which is counted afresh.
    #[test]
    fn three_bad_boots_fall_back() {
        use Verdict::*;
        check(
            &[Unhealthy, Unhealthy, Unhealthy, Healthy, Unhealthy],
            expect![[r#"
                new.0 (deployment new.0, attempt 1 of 3) -> Unhealthy
                new.0 (deployment new.0, attempt 2 of 3) -> Unhealthy
                new.0 (deployment new.0, attempt 3 of 3) -> Unhealthy
                old.0 (new.0 failed 3 boots: booting the previous deployment old.0) -> Healthy
                new.0 (deployment new.0, attempt 1 of 3) -> Unhealthy
            "#]],
        );
    }

    #[test]
    fn a_healthy_boot_keeps_the_new_deployment() {
        use Verdict::*;
        check(
            &[Unhealthy, Healthy, Unhealthy, Unhealthy, Unhealthy, Unhealthy],
            expect![[r#"
                new.0 (deployment new.0, attempt 1 of 3) -> Unhealthy
                new.0 (deployment new.0, attempt 2 of 3) -> Healthy
                new.0 (deployment new.0 (healthy)) -> Unhealthy
                new.0 (deployment new.0 (healthy)) -> Unhealthy
                new.0 (deployment new.0 (healthy)) -> Unhealthy
                new.0 (deployment new.0 (healthy)) -> Unhealthy
            "#]],
        );
    }

    /// A fresh install: one deployment, nothing to fall back to. After its
    /// three attempts it boots again, uncounted, as GRUB does.
    #[test]
    fn one_deployment_keeps_booting_after_three_red_boots() {
        let entries = vec![(entry(1), "only.0".to_string())];
        let mut counter = BootCounter::default();
        let mut log = String::new();
        for _ in 0..6 {
            let choice = choose(&entries, &mut counter).unwrap();
            record(&choice, Outcome::Os(Verdict::Unhealthy), &mut counter);
            log.push_str(&format!("{} counter={:?} ({})\n", choice.deployment, choice.boot_counter, choice.reason));
        }
        expect![[r#"
            only.0 counter=Some(3) (deployment only.0, attempt 1 of 3)
            only.0 counter=Some(2) (deployment only.0, attempt 2 of 3)
            only.0 counter=Some(1) (deployment only.0, attempt 3 of 3)
            only.0 counter=None (deployment only.0 failed 3 boots, no deployment to fall back to: booting it again, uncounted (greenboot's red scripts run))
            only.0 counter=None (deployment only.0 failed 4 boots, no deployment to fall back to: booting it again, uncounted (greenboot's red scripts run))
            only.0 counter=None (deployment only.0 failed 5 boots, no deployment to fall back to: booting it again, uncounted (greenboot's red scripts run))
        "#]].assert_eq(&log);
    }

    /// Boots with random outcomes over entries that change at random (a new
    /// deployment staged, the old one undeployed), against a model of
    /// greenboot's rules: the counter never panics or leaves its bounds, a
    /// fallback comes only after three OS failures of a deployment that never
    /// passed, and host faults change nothing.
    #[test]
    fn random_boot_sequences_keep_greenboots_rules() {
        for seed in 0..2000u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut next_version = 1u64;
            let mut entries: Vec<(BootEntry, String)> = Vec::new();
            for _ in 0..rng.usize(1..=3) {
                entries.push((entry(next_version), format!("d{next_version}.0")));
                next_version += 1;
            }
            // Any counter a boot.json could hold, overflowing ones included.
            let good = rng.bool();
            let failed_boots = match (good, rng.u8(..10)) {
                (true, _) => 0,
                (false, 0) => u32::MAX - rng.u32(..3),
                (false, _) => rng.u32(..5),
            };
            let mut counter = BootCounter {
                deployment: rng.bool().then(|| entries[entries.len() - 1].1.clone()),
                failed_boots,
                good,
            };
            // The model: OS failures of the current default since it became
            // the default, and whether it passed once.
            let mut model: Option<(String, u32, bool)> = None;
            let mut trace = Vec::new();
            for _ in 0..rng.usize(1..40) {
                match rng.u8(..10) {
                    0 => {
                        entries.push((entry(next_version), format!("d{next_version}.0")));
                        next_version += 1;
                    }
                    1 if entries.len() > 1 => {
                        let index = rng.usize(..entries.len());
                        entries.remove(index);
                    }
                    _ => {}
                }
                let before = counter.clone();
                let choice = choose(&entries, &mut counter).expect("entries are never empty");
                let default = entries.iter().max_by_key(|(entry, _)| entry.version).unwrap().1.clone();
                let outcome = match rng.u8(..4) {
                    0 => Outcome::Os(Verdict::Healthy),
                    1 => Outcome::Os(Verdict::Unhealthy),
                    // A hang: no verdict, which the launcher counts as red.
                    2 => Outcome::Os(Verdict::Unhealthy),
                    _ => Outcome::HostFault,
                };
                trace.push(format!("{:?} -> {} {:?}", before, choice.reason, outcome));
                let fresh = before.deployment.as_deref() != Some(default.as_str());
                if fresh || model.as_ref().is_none_or(|(deployment, ..)| *deployment != default) {
                    let (failed, good) = if fresh { (0, false) } else { (before.failed_boots, before.good) };
                    model = Some((default.clone(), failed, good));
                }
                let (_, model_failed, model_good) = model.clone().unwrap();
                let context = || trace.join("\n");
                assert!(!choice.reason.contains("attempt 4"), "{}", context());
                if let Some(left) = choice.boot_counter {
                    assert!((1..=BOOT_ATTEMPTS).contains(&left), "counter {left}:\n{}", context());
                }
                if choice.fallback {
                    assert!(model_failed >= BOOT_ATTEMPTS && !model_good, "early fallback:\n{}", context());
                    assert_ne!(choice.deployment, default, "{}", context());
                } else {
                    assert_eq!(choice.deployment, default, "{}", context());
                    let has_previous = entries.len() > 1;
                    assert!(
                        model_good || model_failed < BOOT_ATTEMPTS || !has_previous,
                        "no fallback after {model_failed} failures:\n{}",
                        context()
                    );
                }
                let chosen = counter.clone();
                record(&choice, outcome, &mut counter);
                match outcome {
                    Outcome::HostFault => assert_eq!(counter, chosen, "a host fault was counted:\n{}", context()),
                    Outcome::Os(verdict) if !choice.fallback && !model_good => {
                        let failed = match verdict {
                            Verdict::Healthy => 0,
                            Verdict::Unhealthy => model_failed.saturating_add(1),
                        };
                        model = Some((default.clone(), failed, verdict == Verdict::Healthy));
                        assert_eq!(counter.failed_boots, failed, "{}", context());
                    }
                    Outcome::Os(Verdict::Healthy) if choice.fallback => model = None,
                    Outcome::Os(_) => {}
                }
                assert!(!(counter.good && counter.failed_boots > 0), "good with failures:\n{}", context());
            }
        }
    }

    #[test]
    fn failed_checks_come_with_their_output() {
        let console = "[  9.1] systemd[1]: Started x\r\n\
            edgelab-greenboot: | stray line before any check\n\
            edgelab-greenboot: check failed: required.d/01_check_upgrade.sh (exit 1)\r\n\
            edgelab-greenboot: | 1c1\r\n\
            [  9.2] random: crng init done\n\
            edgelab-greenboot: | < aaa\n\
            edgelab-greenboot: check failed: required.d/02_x.sh (exit 2)\n\
            edgelab-greenboot: red deployment=bbb.1\n";
        assert_eq!(
            failed_checks(console),
            vec![
                FailedCheck { name: "required.d/01_check_upgrade.sh (exit 1)".into(), output: "1c1\n< aaa\n".into() },
                FailedCheck { name: "required.d/02_x.sh (exit 2)".into(), output: String::new() },
            ]
        );
        assert!(failed_checks("edgelab-greenboot: healthy deployment=a.0\n").is_empty());
    }

    #[test]
    fn the_last_health_line_wins() {
        assert_eq!(verdict("x\nedgelab-greenboot: healthy deployment=a.0\n"), Some(Verdict::Healthy));
        assert_eq!(verdict("edgelab-greenboot: healthy\nedgelab-greenboot: red\n"), Some(Verdict::Unhealthy));
        assert_eq!(verdict("Startup finished\nreboot: Restarting system\n"), None);
    }
}

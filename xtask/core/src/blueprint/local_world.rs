//! What a blueprint asks for that the local world's composer and guests do
//! not do, by key and why: `lab plan` and the blueprint stage report each
//! one, so no key is silently without effect. Everything not listed here
//! takes effect in a local compose (`compose/local/customize` in the
//! xtask crate applies it), and composer applies everything in the RHEL
//! world.

use super::{Blueprint, Customizations};

/// A key without effect in the local world.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NoLocalEffect {
    /// The key as the blueprint writes it (`customizations.fdo`).
    pub key: String,
    pub why: &'static str,
}

/// Every key of `blueprint` the local world does not apply, in file order.
pub fn no_local_effect(blueprint: &Blueprint) -> Vec<NoLocalEffect> {
    let mut gaps = Vec::new();
    let mut gap = |present: bool, key: &str, why: &'static str| {
        if present {
            gaps.push(NoLocalEffect { key: key.to_string(), why });
        }
    };
    gap(blueprint.distro.is_some(), "distro", "local composes are built from Debian 12 whatever the distro");
    gap(!blueprint.modules.is_empty(), "modules", "module streams are RPM metadata; Debian has none");
    gap(!blueprint.enabled_modules.is_empty(), "enabled_modules", "module streams are RPM metadata; Debian has none");
    gap(!blueprint.groups.is_empty(), "groups", "package groups are RPM comps metadata; Debian has none");
    gap(
        !blueprint.containers.is_empty(),
        "containers",
        "the local composer embeds no images (no registry outside is reachable); apps come from the lab registry",
    );
    gap(blueprint.minimal.is_some(), "minimal", "the local base is always the minimal Debian root");
    customizations(&blueprint.customizations, &mut gap);
    gaps
}

fn customizations(c: &Customizations, gap: &mut impl FnMut(bool, &str, &'static str)) {
    gap(
        c.kernel.as_ref().is_some_and(|kernel| kernel.name.is_some()),
        "customizations.kernel.name",
        "local guests boot the Debian kernel of the base",
    );
    gap(
        c.timezone.as_ref().is_some_and(|timezone| !timezone.ntpservers.is_empty()),
        "customizations.timezone.ntpservers",
        "local guests run no NTP client",
    );
    gap(c.firewall.is_some(), "customizations.firewall", "local guests run no firewall; every port is open");
    gap(
        !c.filesystem.is_empty(),
        "customizations.filesystem",
        "the local installer lays one root file system over the whole disk",
    );
    gap(
        c.installation_device.is_some(),
        "customizations.installation_device",
        "local guests are installed by edgelab's installer onto their own disk",
    );
    gap(
        c.partitioning_mode.is_some(),
        "customizations.partitioning_mode",
        "the local installer lays one root file system over the whole disk",
    );
    gap(c.disk.is_some(), "customizations.disk", "the local installer lays one root file system over the whole disk");
    gap(c.fdo.is_some(), "customizations.fdo", "device onboarding needs the simplified installer and an FDO server");
    gap(c.openscap.is_some(), "customizations.openscap", "local guests carry no OpenSCAP scanner");
    gap(c.ignition.is_some(), "customizations.ignition", "local guests are configured by the kickstart, not ignition");
    gap(
        !c.repositories.is_empty(),
        "customizations.repositories",
        "local composes read Debian's archive; RPM repositories do not apply",
    );
    gap(c.fips.is_some(), "customizations.fips", "the Debian kernel of local guests has no FIPS mode set up");
    gap(c.installer.is_some(), "customizations.installer", "local guests are installed by edgelab, not Anaconda");
    gap(c.rpm.is_some(), "customizations.rpm", "local guests have no RPM database");
    gap(c.rhsm.is_some(), "customizations.rhsm", "local guests carry no subscription-manager");
    gap(
        c.cacerts.is_some(),
        "customizations.cacerts",
        "the local composer does not yet add certificates to the trust store",
    );
    gap(
        c.containers_storage.is_some(),
        "customizations.containers-storage",
        "the local composer embeds no images, so there is no storage to place",
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::parse_blueprint;

    #[test]
    fn the_demo_blueprint_has_full_effect() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest/blueprints/RFE.toml")).unwrap();
        let blueprint = parse_blueprint("RFE.toml", &text).unwrap();
        let keys: Vec<String> = no_local_effect(&blueprint).into_iter().map(|gap| gap.key).collect();
        // Its firewall port is the one gap: local guests run no firewall.
        assert_eq!(keys, ["customizations.firewall"]);
    }

    #[test]
    fn applied_keys_are_not_reported() {
        let text = r#"
name = "x"
version = "0.0.1"
[customizations]
hostname = "edge"
[customizations.kernel]
append = "quiet"
[[customizations.group]]
name = "ops"
gid = 2000
[customizations.locale]
languages = ["en_US.UTF-8"]
[customizations.services]
masked = ["rsyslog"]
"#;
        let blueprint = parse_blueprint("x.toml", text).unwrap();
        assert_eq!(no_local_effect(&blueprint), []);
    }
}

//! The blueprint corpus: every key of osbuild's blueprint reference written at
//! least once (tests/blueprints/ and the demo's RFE.toml), each accepted,
//! kept through normalisation, and either applied by the local world or
//! named by `no_local_effect`.

use std::{collections::BTreeSet, path::PathBuf};

use edgelab_core::blueprint::{Blueprint, no_local_effect, parse_blueprint};
use serde_json::Value;

/// osbuild's blueprint reference, key by key (osbuild/images
/// `pkg/blueprint`, and composer's `sshkey`); tables of tables by path.
const REFERENCE: &[&str] = &[
    "name",
    "description",
    "version",
    "distro",
    "minimal",
    "packages.name",
    "packages.version",
    "modules.name",
    "modules.version",
    "groups.name",
    "enabled_modules.name",
    "enabled_modules.stream",
    "containers.source",
    "containers.name",
    "containers.tls-verify",
    "containers.local-storage",
    "customizations.hostname",
    "customizations.kernel.name",
    "customizations.kernel.append",
    "customizations.sshkey.user",
    "customizations.sshkey.key",
    "customizations.user.name",
    "customizations.user.description",
    "customizations.user.password",
    "customizations.user.key",
    "customizations.user.home",
    "customizations.user.shell",
    "customizations.user.groups",
    "customizations.user.uid",
    "customizations.user.gid",
    "customizations.user.expiredate",
    "customizations.user.force_password_reset",
    "customizations.group.name",
    "customizations.group.gid",
    "customizations.timezone.timezone",
    "customizations.timezone.ntpservers",
    "customizations.locale.languages",
    "customizations.locale.keyboard",
    "customizations.firewall.ports",
    "customizations.firewall.services.enabled",
    "customizations.firewall.services.disabled",
    "customizations.firewall.zones.name",
    "customizations.firewall.zones.sources",
    "customizations.services.enabled",
    "customizations.services.disabled",
    "customizations.services.masked",
    "customizations.filesystem.mountpoint",
    "customizations.filesystem.minsize",
    "customizations.installation_device",
    "customizations.partitioning_mode",
    "customizations.fdo.manufacturing_server_url",
    "customizations.fdo.diun_pub_key_insecure",
    "customizations.fdo.diun_pub_key_hash",
    "customizations.fdo.diun_pub_key_root_certs",
    "customizations.fdo.di_mfg_string_type_mac_iface",
    "customizations.openscap.datastream",
    "customizations.openscap.profile_id",
    "customizations.openscap.tailoring.selected",
    "customizations.openscap.tailoring.unselected",
    "customizations.openscap.json_tailoring.profile_id",
    "customizations.openscap.json_tailoring.filepath",
    "customizations.ignition.embedded.config",
    "customizations.ignition.firstboot.url",
    "customizations.directories.path",
    "customizations.directories.user",
    "customizations.directories.group",
    "customizations.directories.mode",
    "customizations.directories.ensure_parents",
    "customizations.files.path",
    "customizations.files.user",
    "customizations.files.group",
    "customizations.files.mode",
    "customizations.files.data",
    "customizations.repositories.id",
    "customizations.repositories.baseurls",
    "customizations.repositories.gpgkeys",
    "customizations.repositories.metalink",
    "customizations.repositories.mirrorlist",
    "customizations.repositories.name",
    "customizations.repositories.priority",
    "customizations.repositories.enabled",
    "customizations.repositories.gpgcheck",
    "customizations.repositories.repo_gpgcheck",
    "customizations.repositories.sslverify",
    "customizations.repositories.filename",
    "customizations.repositories.module_hotfixes",
    "customizations.fips",
    "customizations.installer.unattended",
    "customizations.installer.sudo-nopasswd",
    "customizations.installer.kickstart.contents",
    "customizations.installer.modules.enable",
    "customizations.installer.modules.disable",
    "customizations.installer.kernel.append",
    "customizations.rpm.import_keys.files",
    "customizations.rhsm.config",
    "customizations.cacerts.pem_certs",
    "customizations.containers-storage.destination-path",
    "customizations.disk",
];

/// Keys the local world applies (compose/local/customize and the
/// installer); every other key must be named by `no_local_effect`.
const APPLIED_LOCALLY: &[&str] = &[
    "name",
    "description",
    "version",
    "packages",
    "customizations.hostname",
    "customizations.kernel.append",
    "customizations.sshkey",
    "customizations.user",
    "customizations.group",
    "customizations.timezone.timezone",
    "customizations.locale",
    "customizations.services",
    "customizations.directories",
    "customizations.files",
];

fn corpus() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/blueprints"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.push(root.join("../../guest/blueprints/RFE.toml"));
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// Dotted key paths of a value (arrays are transparent; `disk` and
/// `rhsm.config` are kept whole, as the model keeps them).
fn key_paths(value: &Value, prefix: &str, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if !["customizations.disk", "customizations.rhsm.config"].contains(&prefix) => {
            for (key, value) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                key_paths(value, &path, into);
            }
        }
        Value::Array(items) if items.is_empty() => {}
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for item in items {
                key_paths(item, prefix, into);
            }
        }
        _ => {
            into.insert(prefix.to_string());
        }
    }
}

fn parsed() -> Vec<(String, Blueprint)> {
    corpus()
        .into_iter()
        .map(|(name, text)| match parse_blueprint(&name, &text) {
            Ok(blueprint) => (name, blueprint),
            Err(err) => panic!("{name} is refused:\n{}", err.to_plain()),
        })
        .collect()
}

#[test]
fn the_corpus_writes_every_reference_key_and_normalisation_keeps_it() {
    let mut written = BTreeSet::new();
    for (name, blueprint) in parsed() {
        let json = serde_json::to_value(&blueprint).unwrap();
        key_paths(&json, "", &mut written);
        // Normalised TOML (what composer is sent) parses back the same.
        let again = parse_blueprint(&name, &blueprint.to_toml())
            .unwrap_or_else(|err| panic!("{name} normalised is refused:\n{}", err.to_plain()));
        assert_eq!(again, blueprint, "{name}");
        // And so does the JSON the compose stages read.
        let from_json: Blueprint = serde_json::from_value(json).unwrap();
        assert_eq!(from_json, blueprint, "{name}");
    }
    let missing: Vec<&&str> = REFERENCE.iter().filter(|key| !written.contains(**key)).collect();
    assert!(missing.is_empty(), "reference keys the corpus never writes (or the model drops): {missing:?}");
    let unknown: Vec<&String> = written.iter().filter(|key| !REFERENCE.contains(&key.as_str())).collect();
    assert!(unknown.is_empty(), "keys the model writes that the reference does not have: {unknown:?}");
}

#[test]
fn every_key_is_applied_locally_or_named() {
    for (name, blueprint) in parsed() {
        let mut written = BTreeSet::new();
        key_paths(&serde_json::to_value(&blueprint).unwrap(), "", &mut written);
        let gaps = no_local_effect(&blueprint);
        for key in &written {
            let covers = |prefix: &str| key == prefix || key.starts_with(&format!("{prefix}."));
            let applied = APPLIED_LOCALLY.iter().any(|prefix| covers(prefix));
            let named = gaps.iter().any(|gap| covers(&gap.key));
            assert!(applied != named, "{name}: `{key}` is {}", if applied { "applied and named" } else { "silent" });
        }
        for gap in &gaps {
            assert!(!gap.why.is_empty(), "{name}: {} has no reason", gap.key);
        }
    }
}

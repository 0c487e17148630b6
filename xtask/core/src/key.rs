//! Keys: the content hash that names an artifact.
//!
//! A key is sha256 over the canonical JSON of a `Preimage`: the stage kind and
//! schema, its resolved parameters, the digests of the files it reads, the
//! identity of the tools it runs, and the OUTPUT digests of the stages it
//! depends on. Using outputs rather than upstream keys gives early cutoff: an
//! upstream rebuilt to the same output does not invalidate what follows.
//! Every artifact records its preimage, so `plan --explain` can diff them.

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::graph::{Stage, StageKind};

/// The hex sha256 naming an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Key(pub String);

/// Everything a key is computed from, kept with the artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preimage {
    pub kind: StageKind,
    pub schema: u32,
    pub params: BTreeMap<String, Value>,
    /// File label -> digest (`sha256:...`), or `missing`.
    pub files: BTreeMap<String, String>,
    /// Tool name -> identity (`ostree 2022.7`).
    pub tools: BTreeMap<String, String>,
    /// Dependency role -> the dependency's output digest.
    pub inputs: BTreeMap<String, String>,
    /// Run state the stage reads that is set (`channel edge` -> `v2`, a
    /// promotion). Left out when empty, so stages reading none keep the
    /// keys they had before run state entered keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state: BTreeMap<String, String>,
}

/// Digests and tool identities gathered from the host; the pure core only reads them.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Absolute path -> digest of the file or folder (`missing` when absent).
    pub file_digests: BTreeMap<std::path::PathBuf, String>,
    /// Tool name -> identity string.
    pub tool_ids: BTreeMap<String, String>,
    /// Run state by name (`channel edge` -> the image it was promoted to);
    /// a name without an entry is unset.
    pub state: BTreeMap<String, String>,
}

impl Key {
    pub fn short(&self) -> &str {
        &self.0[..12.min(self.0.len())]
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Preimage {
    /// The preimage of `stage` given host facts and its deps' output digests
    /// (role -> digest). Every dep must have an output already.
    pub fn of(stage: &Stage, facts: &Facts, inputs: BTreeMap<String, String>) -> Preimage {
        let files = stage
            .files
            .iter()
            .map(|(label, path)| {
                let digest = facts.file_digests.get(path).cloned().unwrap_or_else(|| "missing".into());
                (label.clone(), digest)
            })
            .collect();
        let tools = stage
            .tools
            .iter()
            .map(|tool| {
                let id = facts.tool_ids.get(*tool).cloned().unwrap_or_else(|| "missing".into());
                (tool.to_string(), id)
            })
            .collect();
        let state = stage
            .state
            .iter()
            .filter_map(|name| facts.state.get(name).map(|value| (name.clone(), value.clone())))
            .collect();
        Preimage {
            kind: stage.id.kind,
            schema: stage.schema,
            params: stage.params.clone(),
            files,
            tools,
            inputs,
            state,
        }
    }

    /// Canonical bytes: JSON with sorted keys and no whitespace.
    pub fn canonical(&self) -> Vec<u8> {
        // serde_json's Map is a BTreeMap here (no preserve_order), and every map
        // in a Preimage is a BTreeMap, so serialisation is already canonical.
        serde_json::to_vec(self).expect("a preimage always serialises")
    }

    pub fn key(&self) -> Key {
        Key(hex::encode(Sha256::digest(self.canonical())))
    }

    /// What differs from an older preimage, as sentences for `plan --explain`.
    pub fn explain_changes(&self, old: &Preimage) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.schema != old.schema {
            reasons.push(format!("stage schema changed ({} -> {})", old.schema, self.schema));
        }
        diff_maps("parameter", &old.params, &self.params, &mut reasons, |value| value.to_string());
        diff_maps("", &old.files, &self.files, &mut reasons, |digest| short_digest(digest));
        diff_maps("tool", &old.tools, &self.tools, &mut reasons, |id| id.clone());
        diff_maps("input", &old.inputs, &self.inputs, &mut reasons, |digest| short_digest(digest));
        explain_state(&old.state, &self.state, &mut reasons);
        reasons
    }
}

fn diff_maps<V: PartialEq>(
    what: &str,
    old: &BTreeMap<String, V>,
    new: &BTreeMap<String, V>,
    reasons: &mut Vec<String>,
    show: impl Fn(&V) -> String,
) {
    let prefix = if what.is_empty() { String::new() } else { format!("{what} ") };
    for (name, new_value) in new {
        match old.get(name) {
            None => reasons.push(format!("{prefix}{name} added ({})", show(new_value))),
            Some(old_value) if old_value != new_value => {
                reasons.push(format!("{prefix}{name} changed ({} -> {})", show(old_value), show(new_value)))
            }
            Some(_) => {}
        }
    }
    for name in old.keys() {
        if !new.contains_key(name) {
            reasons.push(format!("{prefix}{name} removed"));
        }
    }
}

/// Run state changes in words: `channel edge promoted to v2`, `channel
/// edge back to lab.kdl's image (was v2)`.
fn explain_state(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>, reasons: &mut Vec<String>) {
    for (name, value) in new {
        match old.get(name) {
            None => reasons.push(format!("{name} promoted to {value}")),
            Some(was) if was != value => reasons.push(format!("{name} promoted to {value} (was {was})")),
            Some(_) => {}
        }
    }
    for (name, was) in old {
        if !new.contains_key(name) {
            reasons.push(format!("{name} back to lab.kdl's image (was {was})"));
        }
    }
}

/// `sha256:0123456789ab` from a full digest, for humans.
pub fn short_digest(digest: &str) -> String {
    match digest.split_once(':') {
        Some((algo, hex)) => format!("{algo}:{}", &hex[..12.min(hex.len())]),
        None => digest[..12.min(digest.len())].to_string(),
    }
}

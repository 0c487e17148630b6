//! edgelab: RHEL for Edge labs as a build system.
//!
//! `lab.kdl` is parsed into a `Lab` (lab/), turned into a `Graph` of stages
//! (graph.rs) whose keys (key.rs) are content hashes of their inputs; `plan`
//! decides what must run and why, the runner runs it (runner.rs, stages/),
//! and the store (store/) keeps the results. Only tools/ starts processes.
//! ARCHITECTURE.md at the repository root has the map.

pub use edgelab_core::{blueprint, diag, graph, key, lab, plan};

pub mod cli;
pub mod compose;
pub mod current;
pub mod demo;
pub mod facts;
pub mod guests;
pub mod hash;
pub mod progress;
pub mod runner;
pub mod services;
pub mod stages;
pub mod store;
pub mod tools;
pub mod world;

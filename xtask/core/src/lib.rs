//! edgelab's pure core: `lab.kdl` parsed into a typed `Lab` (lab/, with
//! every mistake as a `diag` diagnostic), osbuild blueprints (blueprint),
//! the artifact graph (graph), keys (key), the plan (plan) and which
//! world each capability runs in (world).
//!
//! This crate reads input files at most and starts no process; its
//! dependencies hold no process, network or async crate, so the purity is a
//! crate boundary rather than a convention. It is tested with strings.

pub mod blueprint;
pub mod diag;
pub mod graph;
pub mod key;
pub mod lab;
pub mod plan;
pub mod world;

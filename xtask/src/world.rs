//! The worlds as behaviour: one trait per capability (compose, registry,
//! guests, guest access), one implementation per world, chosen here and
//! only here from the core's `world` (which reads the lab's resolved
//! backends). Commands ask `world::guests(lab)` or `world::registry(lab)`
//! for the capability and call it; none asks which world it is in.

use std::path::Path;

use anyhow::Result;

pub use edgelab_core::world::{
    Addresses, ComposeWorld, GuestWorld, LOCAL_LAB_SEGMENT, RegistryWorld, addresses, local_addresses,
};

use crate::{
    cli::Session,
    compose::ComposeBackend,
    guests::channel::GuestChannel,
    lab::{Backend, Lab},
    services::Ensured,
    store::Store,
};

/// What the lab's guests can be asked to do.
pub trait Guests: Sync {
    /// The host programs the guests and their network run (the prereqs stage).
    fn programs(&self) -> &'static [&'static str];
    /// The guests' part of `lab up`.
    fn up(&self, session: &Session, reinstall: &[String]) -> Result<()>;
    /// The guests' part of `lab down`: every running guest destroyed.
    fn down(&self, session: &Session) -> Result<()> {
        for guest in &session.lab.guests {
            if self.destroy(session, &guest.name)? {
                println!("guest {}: destroyed", guest.name);
            }
        }
        Ok(())
    }
    /// Starts the guest; `Ok(false)` when it was already running.
    fn start(&self, session: &Session, name: &str) -> Result<bool>;
    /// Stops the guest as hard as `virsh destroy`; `Ok(false)` when it was
    /// not running.
    fn destroy(&self, session: &Session, name: &str) -> Result<bool>;
    /// The guest's serial console, attached to the terminal.
    fn console(&self, session: &Session, name: &str) -> Result<()>;
    /// The guests' lines of `lab status`.
    fn status(&self, session: &Session) -> Result<Vec<String>>;
    /// How a root command line reaches a guest (scenario steps, `guest exec`).
    fn channel<'a>(&self, lab: &'a Lab, store: &'a Store) -> Result<Box<dyn GuestChannel + 'a>>;
    /// `Ok` where `what` (the demo scenarios, `bench boot`) can run against
    /// these guests; otherwise why not and what to change.
    fn supports(&self, what: &str) -> Result<()>;
}

/// What the lab registry can be asked to do.
pub trait Registry: Sync {
    /// The host programs it runs (the prereqs stage).
    fn programs(&self) -> &'static [&'static str];
    /// Starts it with its data in `data` (under `run_dir`) unless it runs.
    fn ensure(&self, lab: &Lab, store: &Store, run_dir: &Path, data: &Path) -> Result<Ensured>;
    /// Stops it; `Ok(false)` when it was not running.
    fn stop(&self, store: &Store) -> Result<bool>;
    /// What runs it (`pid N`, `unit NAME`), or `None` when stopped.
    fn running(&self, store: &Store) -> Option<String>;
}

/// The lab's guests.
pub fn guests(lab: &Lab) -> &'static dyn Guests {
    match GuestWorld::of(lab) {
        GuestWorld::Local => &crate::cli::guest::LocalGuests,
        GuestWorld::Libvirt => &crate::cli::guest_libvirt::LibvirtGuests,
    }
}

/// The lab registry.
pub fn registry(lab: &Lab) -> &'static dyn Registry {
    match RegistryWorld::of(lab) {
        RegistryWorld::Local => &crate::services::registry::LocalRegistry,
        RegistryWorld::Podman => &crate::services::registry::PodmanRegistry,
    }
}

/// The composer for a compose stage, by the backend in its key.
pub fn composer(backend: Backend, store: &Store) -> Result<Box<dyn ComposeBackend>> {
    match ComposeWorld::of_stage(backend) {
        ComposeWorld::Local => crate::stages::compose::local_backend(store),
        ComposeWorld::Weldr => crate::stages::compose::weldr_backend(store),
    }
}

/// Whether the lab's images are composed by edgelab's own composer (whose
/// blueprint keys without local effect `lab plan` warns of).
pub fn composes_locally(lab: &Lab) -> bool {
    ComposeWorld::of(lab) == ComposeWorld::Local
}

//! Deployed components: what each is (a service, or a provider exporting interfaces) and which
//! one is active for each service name and each exported interface.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::InstancePre;

use super::HostState;
use super::limits::Limits;
use super::provider_settings::OwnSettings;
use crate::bindings::handler::ServiceInfo;
use crate::bindings::recoverable::exports::cairn::durable::recovery::GuestIndices as RecoveryIndices;
use crate::bindings::service::ServicePre;

/// What a deployed component is.
#[derive(Debug, Clone)]
pub enum DeploymentKind {
    Service(ServiceInfo),
    /// A component others call: the interfaces it exports (names with versions), each linked to
    /// the services that import it.
    Provider {
        exports: Vec<String>,
    },
}

impl DeploymentKind {
    pub fn kind_str(&self) -> &'static str {
        match self {
            DeploymentKind::Service(_) => "service",
            DeploymentKind::Provider { .. } => "provider",
        }
    }

    /// The service name, or the exported interfaces.
    pub fn name(&self) -> String {
        match self {
            DeploymentKind::Service(info) => info.name.clone(),
            DeploymentKind::Provider { exports } => exports.join(", "),
        }
    }
}

/// A deployment's pre-linked component, typed by its world: the world's exports are looked up
/// once, when it is deployed, instead of at every instantiation.
#[derive(Clone)]
pub enum Linked {
    Service(ServicePre<HostState>),
    Provider {
        pre: InstancePre<HostState>,
        /// Its `cairn:durable/recovery` export, if it has one.
        recovery: Option<RecoveryIndices>,
    },
}

/// A compiled, pre-linked component.
#[derive(Clone)]
pub struct Deployment {
    /// Hex SHA-256 of the component bytes.
    pub id: String,
    pub kind: DeploymentKind,
    /// The name the component gives itself, if it does (see [`super::component_name`]).
    pub component_name: Option<String>,
    pub linked: Linked,
    pub size: usize,
    pub created_at: i64,
    /// Sandbox limits set for this deployment (host defaults fill the rest).
    pub limits: Limits,
    /// A provider's own settings (`None`: the host's defaults for the interfaces it exports).
    pub own: Option<OwnSettings>,
    /// A service's imports of interfaces that other components export.
    pub imports: Vec<String>,
}

/// Deployments by id, and the active one per service name and per exported interface.
#[derive(Clone, Default)]
pub struct Registry {
    pub deployments: BTreeMap<String, Arc<Deployment>>,
    pub services: BTreeMap<String, String>,
    /// Interface name (with version) → the deployment that implements it for new invocations.
    pub interfaces: BTreeMap<String, String>,
}

impl Registry {
    /// Adds (or replaces) `deployment` and makes it the active one of its service or of every
    /// interface it exports.
    pub fn insert(&mut self, deployment: Arc<Deployment>) {
        match &deployment.kind {
            DeploymentKind::Service(info) => {
                self.services
                    .insert(info.name.clone(), deployment.id.clone());
            }
            DeploymentKind::Provider { exports } => {
                for name in exports {
                    self.interfaces.insert(name.clone(), deployment.id.clone());
                }
            }
        }
        self.deployments.insert(deployment.id.clone(), deployment);
    }

    /// Whether deployment `id` is the active one of its service or of one of its interfaces.
    pub fn is_active(&self, id: &str) -> bool {
        self.services
            .values()
            .chain(self.interfaces.values())
            .any(|a| a == id)
    }

    /// The interfaces deployment `id` is the active implementation of.
    pub fn active_for(&self, id: &str) -> Vec<&str> {
        self.interfaces
            .iter()
            .filter(|(_, a)| *a == id)
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Removes an inactive deployment; returns it.
    pub fn remove(&mut self, id: &str) -> Option<Arc<Deployment>> {
        if self.is_active(id) {
            return None;
        }
        self.deployments.remove(id)
    }

    /// The active deployment of service `name`.
    pub fn service(&self, name: &str) -> Option<(&Arc<Deployment>, &ServiceInfo)> {
        let deployment = self.deployments.get(self.services.get(name)?)?;
        match &deployment.kind {
            DeploymentKind::Service(info) => Some((deployment, info)),
            DeploymentKind::Provider { .. } => None,
        }
    }

    /// Interface → deployment id of the active implementations of what `deployment` imports:
    /// what a new invocation of it is pinned to.
    pub fn pins(&self, deployment: &Deployment) -> BTreeMap<String, String> {
        deployment
            .imports
            .iter()
            .filter_map(|name| Some((name.clone(), self.interfaces.get(name)?.clone())))
            .collect()
    }
}

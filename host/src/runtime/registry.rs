//! Deployed components: what each is (a service or a provider role) and which one is active.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::HostState;
use super::limits::Limits;
use super::provider_settings::OwnSettings;
use crate::bindings::email_provider::EmailProviderPre;
use crate::bindings::handler::ServiceInfo;
use crate::bindings::payments_provider::PaymentsProviderPre;
use crate::bindings::service::ServicePre;
use crate::bindings::shipping_provider::ShippingProviderPre;

/// The provider roles a service can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderRole {
    Payments,
    Email,
    Shipping,
}

impl ProviderRole {
    pub const ALL: [ProviderRole; 3] = [
        ProviderRole::Payments,
        ProviderRole::Email,
        ProviderRole::Shipping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderRole::Payments => "payments",
            ProviderRole::Email => "email",
            ProviderRole::Shipping => "shipping",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The interface a provider of this role exports.
    pub fn export_name(self) -> &'static str {
        match self {
            ProviderRole::Payments => "cairn:commerce/payments@0.1.0",
            ProviderRole::Email => "cairn:commerce/email@0.1.0",
            ProviderRole::Shipping => "cairn:commerce/shipping@0.1.0",
        }
    }
}

/// What a deployed component is.
#[derive(Debug, Clone)]
pub enum DeploymentKind {
    Service(ServiceInfo),
    Provider(ProviderRole),
}

impl DeploymentKind {
    pub fn kind_str(&self) -> &'static str {
        match self {
            DeploymentKind::Service(_) => "service",
            DeploymentKind::Provider(role) => role.as_str(),
        }
    }

    pub fn name(&self) -> String {
        match self {
            DeploymentKind::Service(info) => info.name.clone(),
            DeploymentKind::Provider(role) => role.as_str().to_string(),
        }
    }
}

/// A deployment's pre-linked component, typed by its world: the world's exports are looked up
/// once, when it is deployed, instead of at every instantiation.
#[derive(Clone)]
pub enum Linked {
    Service(ServicePre<HostState>),
    Payments(PaymentsProviderPre<HostState>),
    Email(EmailProviderPre<HostState>),
    Shipping(ShippingProviderPre<HostState>),
}

/// A compiled, pre-linked component.
#[derive(Clone)]
pub struct Deployment {
    /// Hex SHA-256 of the component bytes.
    pub id: String,
    pub kind: DeploymentKind,
    pub linked: Linked,
    pub size: usize,
    pub created_at: i64,
    /// Sandbox limits set for this deployment (host defaults fill the rest).
    pub limits: Limits,
    /// A provider's own settings, replacing its role's (`None`: the role's settings).
    pub own: Option<OwnSettings>,
}

/// Deployments by id, and the active one per service name and per provider role.
#[derive(Clone, Default)]
pub struct Registry {
    pub deployments: BTreeMap<String, Arc<Deployment>>,
    pub services: BTreeMap<String, String>,
    pub providers: BTreeMap<ProviderRole, String>,
}

impl Registry {
    /// Adds (or replaces) `deployment` and makes it the active one of its service or role.
    pub fn insert(&mut self, deployment: Arc<Deployment>) {
        match &deployment.kind {
            DeploymentKind::Service(info) => {
                self.services
                    .insert(info.name.clone(), deployment.id.clone());
            }
            DeploymentKind::Provider(role) => {
                self.providers.insert(*role, deployment.id.clone());
            }
        }
        self.deployments.insert(deployment.id.clone(), deployment);
    }

    /// Whether deployment `id` is the active one of its service or role.
    pub fn is_active(&self, id: &str) -> bool {
        self.services
            .values()
            .chain(self.providers.values())
            .any(|a| a == id)
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
            DeploymentKind::Provider(_) => None,
        }
    }

    /// Role → deployment id of the active providers: what a new invocation is pinned to.
    pub fn active_providers(&self) -> BTreeMap<String, String> {
        self.providers
            .iter()
            .map(|(role, id)| (role.as_str().to_string(), id.clone()))
            .collect()
    }
}

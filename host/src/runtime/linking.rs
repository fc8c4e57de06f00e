//! One linker per world, and what a component of each world may import.
//!
//! A **service** (exports `cairn:durable/handler`) may import the durable capabilities and any
//! interface that other components export: those are linked per deployment, generically, as
//! journaled calls into the component pinned for the invocation (see
//! [`crate::capabilities::imported`]). A **provider** (exports other interfaces) may import only
//! `http`, `log` and `call-context`: its calls run inside a journaled call of a service, so what
//! it does is not journaled on its own. An import a world does not allow is refused at
//! deployment, naming the import, rather than trapping at its first call.

use wasmtime::Engine;
use wasmtime::component::types::{ComponentInstance, ComponentItem};
use wasmtime::component::{Component, InstancePre, Linker};

use super::HostState;
use super::deploy::DeployError;
use crate::journal::values::check_passable;

/// The worlds a deployed component can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Service,
    Provider,
}

impl World {
    pub fn name(self) -> &'static str {
        match self {
            World::Service => "cairn:durable/service",
            World::Provider => "cairn:durable/provider",
        }
    }

    /// The `cairn:durable` interfaces a component of this world may import.
    fn host_interfaces(self) -> &'static [&'static str] {
        match self {
            World::Service => &[
                "context", "run", "state", "http", "log", "timer", "calls", "promise",
            ],
            World::Provider => &["http", "log", "call-context"],
        }
    }
}

/// The package of the host's own interfaces.
const DURABLE: &str = "cairn:durable/";

/// `cairn:commerce/payments@0.1.0` → `cairn:commerce/payments`.
pub fn unversioned(name: &str) -> &str {
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// Whether `name` is one of the host's own interfaces (`cairn:durable/*`) or WASI's.
pub fn is_host_interface(name: &str) -> bool {
    name.starts_with(DURABLE) || name.starts_with("wasi:")
}

pub struct Linkers {
    service: Linker<HostState>,
    provider: Linker<HostState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Self> {
        let mut service = Linker::new(engine);
        crate::capabilities::add_service_world(&mut service)?;
        let mut provider = Linker::new(engine);
        crate::capabilities::add_provider_world(&mut provider)?;
        Ok(Linkers { service, provider })
    }

    /// Checks the imports of `component` against `world` and pre-instantiates it. A service's
    /// imports of other components' interfaces are defined here, for this component only; each
    /// must be `exported` by a deployed component. Also returns those interfaces (the ones an
    /// invocation of it pins).
    pub fn link(
        &self,
        engine: &Engine,
        world: World,
        component: &Component,
        exported: &dyn Fn(&str) -> bool,
    ) -> Result<(InstancePre<HostState>, Vec<String>), DeployError> {
        let ty = component.component_type();
        // Interfaces of other components: (name, its functions).
        let mut imported = Vec::new();
        for (name, item) in ty.imports(engine) {
            if let Some(interface) = name.strip_prefix(DURABLE) {
                if !world.host_interfaces().contains(&unversioned(interface)) {
                    return Err(forbidden(world, name));
                }
                continue;
            }
            if name.starts_with("wasi:") {
                continue;
            }
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                return Err(DeployError::Link(format!(
                    "{name}: only interfaces can be imported from other components"
                )));
            };
            let functions = functions(engine, name, &instance)?;
            // An interface of types only (`cairn:commerce/types`) needs nothing from anyone.
            if !functions.is_empty() {
                if world == World::Provider {
                    return Err(forbidden(world, name));
                }
                if !exported(name) {
                    return Err(DeployError::Unimplemented(name.to_string()));
                }
            }
            imported.push((name.to_string(), functions));
        }
        let link = |e: wasmtime::Error| DeployError::Link(format!("{e:#}"));
        let called: Vec<String> = imported
            .iter()
            .filter(|(_, functions)| !functions.is_empty())
            .map(|(name, _)| name.clone())
            .collect();
        let pre = if imported.is_empty() {
            self.linker(world).instantiate_pre(component)
        } else {
            let mut linker = self.linker(world).clone();
            for (name, functions) in imported {
                linker.instance(&name).map_err(link)?;
                for function in functions {
                    crate::capabilities::imported::define(&mut linker, &name, &function)
                        .map_err(link)?;
                }
            }
            linker.instantiate_pre(component)
        };
        Ok((pre.map_err(link)?, called))
    }

    fn linker(&self, world: World) -> &Linker<HostState> {
        match world {
            World::Service => &self.service,
            World::Provider => &self.provider,
        }
    }
}

/// The functions of interface `name` (an import or export between components), each checked to
/// pass values only.
fn functions(
    engine: &Engine,
    name: &str,
    instance: &ComponentInstance,
) -> Result<Vec<String>, DeployError> {
    let mut out = Vec::new();
    for (function, item) in instance.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                for ty in func.params().map(|(_, t)| t).chain(func.results()) {
                    check_passable(&ty)
                        .map_err(|e| DeployError::Link(format!("{name}#{function}: {e}")))?;
                }
                out.push(function.to_string());
            }
            ComponentItem::Type(_) => {}
            _ => {
                return Err(DeployError::Link(format!(
                    "{name}#{function}: only functions and plain types can cross between \
                     components"
                )));
            }
        }
    }
    Ok(out)
}

fn forbidden(world: World, import: &str) -> DeployError {
    let allowed: Vec<String> = world
        .host_interfaces()
        .iter()
        .map(|i| format!("{DURABLE}{i}"))
        .collect();
    let others = match world {
        World::Service => ", and interfaces that other components export",
        World::Provider => "",
    };
    DeployError::ForbiddenImport {
        import: import.to_string(),
        world: world.name(),
        allowed: format!("wasi:*, {}{others}", allowed.join(", ")),
    }
}

/// The interfaces a provider component exports for others to import, with the functions of
/// each checked to pass values only. The host's own (`cairn:durable/recovery`) and interfaces
/// without functions are left out.
pub fn exported_interfaces(
    engine: &Engine,
    component: &Component,
) -> Result<Vec<String>, DeployError> {
    let mut exports = Vec::new();
    for (name, item) in component.component_type().exports(engine) {
        if is_host_interface(name) {
            continue;
        }
        let ComponentItem::ComponentInstance(instance) = item.ty else {
            continue;
        };
        if !functions(engine, name, &instance)?.is_empty() {
            exports.push(name.to_string());
        }
    }
    Ok(exports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_their_version_and_host_interfaces_are_known() {
        assert_eq!(
            unversioned("acme:tax/calculate@1.2.0"),
            "acme:tax/calculate"
        );
        assert_eq!(unversioned("acme:tax/calculate"), "acme:tax/calculate");
        assert!(is_host_interface("cairn:durable/recovery@0.1.2"));
        assert!(is_host_interface("wasi:io/streams@0.2.6"));
        assert!(!is_host_interface("cairn:commerce/payments@0.1.0"));
    }

    #[test]
    fn a_forbidden_import_is_named_with_what_the_world_allows() {
        let err = forbidden(World::Provider, "cairn:durable/state@0.1.2").to_string();
        assert!(err.contains("cairn:durable/state@0.1.2"), "{err}");
        assert!(err.contains("cairn:durable/provider"), "{err}");
        assert!(err.contains("cairn:durable/call-context"), "{err}");
    }
}

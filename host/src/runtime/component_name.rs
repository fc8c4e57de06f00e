//! The name a component gives itself, shown beside a deployment's role so two providers of one
//! role can be told apart: the component-model `component-name` custom section's first
//! subsection, as `wasm-tools metadata add --name` and cargo-component write it, or else the
//! `cairn:component-name` section the SDK's `generate!` writes in the core module (the crate's
//! package name; plain cargo writes no `component-name`).

use wasmparser::{ComponentName, KnownCustom, Parser, Payload};

/// The longest name kept; the rest is cut (a deployed component is untrusted input).
const MAX_NAME_CHARS: usize = 128;

/// The custom section the SDK writes in a core module: the crate's package name, ended by NUL.
const SDK_SECTION: &str = "cairn:component-name";

/// The component's own name, if its top-level `component-name` section has one, or else a core
/// module of its own (not of a nested component) carries the SDK's section.
pub fn component_name(bytes: &[u8]) -> Option<String> {
    // Nested modules and components have sections of their own: which one a section is in, by
    // kind (`true` for a core module), outermost first.
    let mut nesting: Vec<bool> = Vec::new();
    let mut from_sdk = None;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::ModuleSection { .. } => nesting.push(true),
            Payload::ComponentSection { .. } => nesting.push(false),
            Payload::End(_) => {
                // The outer component's own end has nothing to pop.
                nesting.pop();
            }
            Payload::CustomSection(section) if nesting.is_empty() => {
                let KnownCustom::ComponentName(names) = section.as_known() else {
                    continue;
                };
                // wit-component writes one naming only the component's parts: no name of its own.
                let own = names.into_iter().find_map(|name| match name.ok()? {
                    ComponentName::Component { name, .. } => Some(name),
                    _ => None,
                });
                if let Some(name) = own {
                    return bounded(name);
                }
            }
            Payload::CustomSection(section)
                if nesting == [true] && section.name() == SDK_SECTION && from_sdk.is_none() =>
            {
                let text = std::str::from_utf8(section.data()).ok();
                from_sdk = text
                    .and_then(|text| text.split('\0').next())
                    .and_then(bounded);
            }
            _ => {}
        }
    }
    from_sdk
}

/// `name` without control characters, at most [`MAX_NAME_CHARS`]; `None` if nothing is left.
fn bounded(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component with a top-level `component-name` section naming it `name`.
    fn named(name: &str) -> Vec<u8> {
        let mut names = wasm_encoder::ComponentNameSection::new();
        names.component(name);
        let mut component = wasm_encoder::Component::new();
        component.section(&names);
        component.finish()
    }

    #[test]
    fn reads_the_outer_name_and_bounds_it() {
        assert_eq!(
            component_name(&named("acme-email")).as_deref(),
            Some("acme-email")
        );
        let long = "x".repeat(500);
        assert_eq!(component_name(&named(&long)).unwrap().len(), MAX_NAME_CHARS);
        assert_eq!(
            component_name(&named("a\u{1b}[31mb")).as_deref(),
            Some("a[31mb")
        );
        assert_eq!(
            component_name(&wasm_encoder::Component::new().finish()),
            None
        );
        assert_eq!(component_name(b"not wasm"), None);
    }

    /// A component whose one core module carries the SDK's section, `data`, and then the
    /// `component-name` section `names`, if any.
    fn with_sdk_section(data: &[u8], names: Option<wasm_encoder::ComponentNameSection>) -> Vec<u8> {
        let mut module = wasm_encoder::Module::new();
        module.section(&wasm_encoder::CustomSection {
            name: SDK_SECTION.into(),
            data: data.into(),
        });
        let mut component = wasm_encoder::Component::new();
        component.section(&wasm_encoder::ModuleSection(&module));
        if let Some(names) = names {
            component.section(&names);
        }
        component.finish()
    }

    #[test]
    fn without_a_component_name_the_sdks_package_name_is_read() {
        let sdk = with_sdk_section(b"acme-email\0", None);
        assert_eq!(component_name(&sdk).as_deref(), Some("acme-email"));
        // Two exports in one crate write it twice, one after the other.
        let twice = with_sdk_section(b"acme-email\0acme-email\0", None);
        assert_eq!(component_name(&twice).as_deref(), Some("acme-email"));
        // The component's own name comes first.
        let mut own = wasm_encoder::ComponentNameSection::new();
        own.component("acme-email-v2");
        let both = with_sdk_section(b"acme-email\0", Some(own));
        assert_eq!(component_name(&both).as_deref(), Some("acme-email-v2"));
        // A `component-name` section naming only its parts (as wit-component writes one)
        // names nothing: the SDK's name stands.
        let mut parts = wasm_encoder::ComponentNameSection::new();
        let mut modules = wasm_encoder::NameMap::new();
        modules.append(0, "main");
        parts.core_modules(&modules);
        let sdk = with_sdk_section(b"acme-email\0", Some(parts));
        assert_eq!(component_name(&sdk).as_deref(), Some("acme-email"));
        // An empty or non-UTF-8 one is none.
        assert_eq!(component_name(&with_sdk_section(b"\0", None)), None);
        assert_eq!(component_name(&with_sdk_section(b"\xff\xfe", None)), None);
    }

    #[test]
    fn a_nested_components_name_is_not_the_outer_ones() {
        let mut outer = wasm_encoder::Component::new();
        outer.section(&wasm_encoder::NestedComponentSection(&{
            let mut inner = wasm_encoder::Component::new();
            let mut names = wasm_encoder::ComponentNameSection::new();
            names.component("inner");
            inner.section(&names);
            inner
        }));
        assert_eq!(component_name(&outer.finish()), None);
    }
}

//! The name a component gives itself: the component-model `component-name` custom section's
//! first subsection, as `wasm-tools metadata add --name` and cargo-component write it. Shown
//! beside a deployment's role, so two providers of one role can be told apart. A component
//! built with plain cargo carries none.

use wasmparser::{ComponentName, KnownCustom, Parser, Payload};

/// The longest name kept; the rest is cut (a deployed component is untrusted input).
const MAX_NAME_CHARS: usize = 128;

/// The component's own name, if its top-level `component-name` section has one.
pub fn component_name(bytes: &[u8]) -> Option<String> {
    // Nested modules and components have name sections of their own: only the outermost counts.
    let mut depth = 0_usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.ok()? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.checked_sub(1)?,
            Payload::CustomSection(section) if depth == 0 => {
                let KnownCustom::ComponentName(names) = section.as_known() else {
                    continue;
                };
                let name = names.into_iter().find_map(|name| match name.ok()? {
                    ComponentName::Component { name, .. } => Some(name),
                    _ => None,
                })?;
                let name: String = name
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_NAME_CHARS)
                    .collect();
                return (!name.is_empty()).then_some(name);
            }
            _ => {}
        }
    }
    None
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

//! Hand-made components for deployment tests: ones no host world accepts, and a real component
//! made into another deployment (same code, other bytes).

/// A component binary with an extra custom section: the same code, another deployment id.
pub fn with_custom_section(mut bytes: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            out.push(if n == 0 { byte } else { byte | 0x80 });
            if n == 0 {
                break;
            }
        }
    }
    let name = b"cairn-test";
    let mut section = Vec::new();
    leb(name.len(), &mut section);
    section.extend_from_slice(name);
    section.extend_from_slice(payload);
    bytes.push(0);
    leb(section.len(), &mut bytes);
    bytes.extend_from_slice(&section);
    bytes
}

/// A component that imports an interface this host does not provide (with one function: an
/// import of an empty instance needs nothing from the host).
pub fn component_importing(name: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
    };
    let mut instance = InstanceType::new();
    instance
        .ty()
        .function()
        .params(Vec::<(&str, wasm_encoder::ComponentValType)>::new())
        .result(None);
    instance.export("read", ComponentTypeRef::Func(0));
    let mut component = Component::new();
    let mut types = ComponentTypeSection::new();
    types.instance(&instance);
    component.section(&types);
    let mut imports = ComponentImportSection::new();
    imports.import(name, ComponentTypeRef::Instance(0));
    component.section(&imports);
    component.finish()
}

/// A component exporting an empty instance under `name`.
pub fn component_exporting(name: &str) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentExportKind, ComponentExportSection, ComponentInstanceSection,
    };
    let mut component = Component::new();
    let mut instances = ComponentInstanceSection::new();
    instances.export_items(Vec::<(&str, ComponentExportKind, u32)>::new());
    component.section(&instances);
    let mut exports = ComponentExportSection::new();
    exports.export(name, ComponentExportKind::Instance, 0, None);
    component.section(&exports);
    component.finish()
}

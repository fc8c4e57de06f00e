//! `cairn_sdk::generate!`: the bindings of a world, or of a list of imported interfaces, written
//! by `wit_bindgen::generate!` with what every Cairn component needs:
//!
//! - the durable interfaces the SDK already binds (`context`, `run`, `state`, `http`, ...) are
//!   mapped to `cairn_sdk::bindings` (`with`), so one set of import glue serves the component;
//!   which ones the world uses is read from its WIT here, since `with` refuses unused keys;
//! - every other interface is generated, its types with `serde` derives (and `PartialEq`), so
//!   WIT records travel as JSON in handler inputs, outputs and state;
//! - the generated code names the SDK's re-export of wit-bindgen, so a crate needs no
//!   wit-bindgen dependency of its own (it needs `serde`, which the derives name).
//!
//! ```ignore
//! cairn_sdk::generate!({ path: "../../wit", import: ["cairn:commerce/payments@0.1.0"] });
//! cairn_sdk::generate!({
//!     path: "../../wit",
//!     world: "cairn:commerce/payments-provider@0.1.0",
//!     with: { "cairn:commerce/types@0.1.0": cairn_provider::types },
//!     export: super::StripePayments, // the type implementing the exports, exported in wasm
//! });
//! ```

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token, braced, bracketed};
use wit_parser::{Resolve, WorldKey};

/// The durable interfaces that `cairn_sdk::bindings` imports (its world `cairn:sdk/imports`).
const SDK_IMPORTS: [&str; 9] = [
    "context",
    "run",
    "state",
    "http",
    "log",
    "timer",
    "call-context",
    "calls",
    "promise",
];

/// The durable package these bindings are for, the one `cairn_sdk::bindings` binds.
const DURABLE: (&str, &str, &str) = ("cairn", "durable", "0.1.2");

/// The durable WIT package, in the crate (a link to the repository's `wit/deps/durable`, which
/// `cargo package` copies).
const DURABLE_WIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wit");

/// Where the bindings come from.
enum Source {
    /// A world of the WIT packages under `path`.
    World(LitStr),
    /// A world that imports these interfaces, and nothing else.
    Imports(Vec<LitStr>),
}

struct Options {
    paths: Vec<LitStr>,
    source: Source,
    with: Vec<(LitStr, syn::Path)>,
    derives: Vec<syn::Path>,
    /// The type that implements the world's exports, exported in wasm builds.
    export: Option<syn::Path>,
    /// Whether the `export!` macro is public (to export from another crate).
    pub_export_macro: bool,
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let braced_content;
        let input = if input.peek(syn::token::Brace) {
            braced!(braced_content in input);
            &braced_content
        } else {
            input
        };
        let mut paths = Vec::new();
        let mut source = None;
        let mut with = Vec::new();
        let mut derives = Vec::new();
        let mut export = None;
        let mut pub_export_macro = false;
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            match key.to_string().as_str() {
                "path" => paths = lit_or_list(input)?,
                "world" => source = Some(Source::World(input.parse()?)),
                "import" => source = Some(Source::Imports(lit_or_list(input)?)),
                "with" => {
                    let content;
                    braced!(content in input);
                    while !content.is_empty() {
                        let name: LitStr = content.parse()?;
                        content.parse::<Token![:]>()?;
                        with.push((name, content.parse()?));
                        if !content.is_empty() {
                            content.parse::<Token![,]>()?;
                        }
                    }
                }
                "export" => export = Some(input.parse()?),
                "pub_export_macro" => pub_export_macro = input.parse::<syn::LitBool>()?.value,
                "derives" => {
                    let content;
                    bracketed!(content in input);
                    derives = Punctuated::<syn::Path, Token![,]>::parse_terminated(&content)?
                        .into_iter()
                        .collect();
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown option `{other}`: expected `path`, `world`, `import`, `with`, `derives`, `export` or `pub_export_macro`"
                        ),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        let source = source.ok_or_else(|| {
            input.error("say what to bind: `world: \"pkg:name/world\"` or `import: [\"pkg:name/interface@version\", ...]`")
        })?;
        if paths.is_empty() {
            paths.push(LitStr::new("wit", proc_macro2::Span::call_site()));
        }
        Ok(Options {
            paths,
            source,
            with,
            derives,
            export,
            pub_export_macro,
        })
    }
}

/// `"a"` or `["a", "b"]`.
fn lit_or_list(input: ParseStream<'_>) -> syn::Result<Vec<LitStr>> {
    if input.peek(syn::token::Bracket) {
        let content;
        bracketed!(content in input);
        Ok(Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?
            .into_iter()
            .collect())
    } else {
        Ok(vec![input.parse()?])
    }
}

pub fn expand(input: TokenStream) -> TokenStream {
    syn::parse2::<Options>(input)
        .and_then(|options| options.generate())
        .unwrap_or_else(syn::Error::into_compile_error)
}

impl Options {
    fn generate(&self) -> syn::Result<TokenStream> {
        let (resolve, world, source) = self.resolve()?;
        let (ns, name, version) = DURABLE;
        let user_keys: Vec<String> = self.with.iter().map(|(k, _)| k.value()).collect();
        let mut with = Vec::new();
        for key in resolve.worlds[world].imports.keys() {
            let WorldKey::Interface(id) = key else {
                continue;
            };
            let interface = &resolve.interfaces[*id];
            let (Some(package), Some(iface)) = (interface.package, interface.name.as_deref())
            else {
                continue;
            };
            let package = &resolve.packages[package].name;
            let durable = package.namespace == ns
                && package.name == name
                && package.version.as_ref().map(ToString::to_string).as_deref() == Some(version);
            let full = format!("{ns}:{name}/{iface}@{version}");
            if durable && SDK_IMPORTS.contains(&iface) && !user_keys.contains(&full) {
                let module: syn::Path = syn::parse_str(&format!(
                    "::cairn_sdk::bindings::cairn::durable::{}",
                    iface.replace('-', "_")
                ))?;
                with.push(quote!(#full: #module));
            }
        }
        let user_with = self.with.iter().map(|(k, v)| quote!(#k: #v));
        let paths = &self.paths;
        let derives = &self.derives;
        let pub_export_macro = self.pub_export_macro;
        // The glue names symbols like `acme:tax/calculate@1.0.0#tax`, which only a wasm linker
        // accepts: native builds (unit tests) leave it out.
        let export = self.export.as_ref().map(|ty| {
            // The crate's package name goes in the core module as `cairn:component-name` (ended
            // by a NUL, should a crate export twice), which the host shows beside the
            // deployment's role when the component has no `component-name` section of its own
            // (plain cargo writes none).
            let name = std::env::var("CARGO_PKG_NAME").unwrap_or_default() + "\0";
            let name_bytes = proc_macro2::Literal::byte_string(name.as_bytes());
            let name_len = name.len();
            quote! {
                #[cfg(target_arch = "wasm32")]
                #[allow(unsafe_code, reason = "the export glue generated by wit-bindgen")]
                const _: () = {
                    use #ty as __CairnExports;
                    export!(__CairnExports with_types_in self);

                    #[unsafe(link_section = "cairn:component-name")]
                    #[used]
                    static CAIRN_COMPONENT_NAME: [u8; #name_len] = *#name_bytes;
                };
            }
        });
        Ok(quote! {
            ::cairn_sdk::__private::wit_bindgen::generate!({
                #source
                path: [#(#paths),*],
                with: { #(#with,)* #(#user_with,)* },
                generate_all,
                runtime_path: "::cairn_sdk::__private::wit_bindgen::rt",
                additional_derives: [::serde::Serialize, ::serde::Deserialize, PartialEq, #(#derives),*],
                pub_export_macro: #pub_export_macro,
            });
            #export
        })
    }

    /// Parses the WIT as wit-bindgen will, to see which durable interfaces the world imports.
    fn resolve(&self) -> syn::Result<(Resolve, wit_parser::WorldId, TokenStream)> {
        let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
        let mut resolve = Resolve::default();
        let mut packages = Vec::new();
        for path in &self.paths {
            let dir = root.join(path.value());
            let (package, _) = resolve
                .push_path(&dir)
                .map_err(|e| syn::Error::new(path.span(), format!("{}: {e:#}", dir.display())))?;
            packages.push(package);
        }
        let (world_name, source) = match &self.source {
            Source::World(world) => (world.clone(), quote!(world: #world,)),
            Source::Imports(interfaces) => {
                let package = format!("cairn-imports:{}@0.0.0", crate_id());
                let imports: String = interfaces
                    .iter()
                    .map(|i| format!("  import {};\n", i.value()))
                    .collect();
                let text = format!("package {package};\nworld imports {{\n{imports}}}\n");
                let span = interfaces
                    .first()
                    .map_or_else(proc_macro2::Span::call_site, LitStr::span);
                packages = vec![
                    resolve
                        .push_str("import.wit", &text)
                        .map_err(|e| syn::Error::new(span, format!("{e:#}")))?,
                ];
                let inline = LitStr::new(&text, span);
                (
                    LitStr::new("imports", span),
                    quote!(inline: #inline, world: "imports",),
                )
            }
        };
        let world = resolve
            .select_world(&packages, Some(&world_name.value()))
            .map_err(|e| syn::Error::new(world_name.span(), format!("{e:#}")))?;
        Ok((resolve, world, source))
    }
}

/// The crate being compiled as a WIT identifier (`order-orchestrator`), so that the import
/// world of each crate is its own package.
fn crate_id() -> String {
    let name = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "component".into());
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|s| !s.is_empty())
        .map(|s| {
            let s = s.to_ascii_lowercase();
            if s.starts_with(|c: char| c.is_ascii_digit()) {
                format!("x{s}")
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The bindings of the `cairn:durable/handler` export alone (its types, its `Guest` trait, its
/// `export!` macro), for the module that `cairn_sdk::__export_handler!` writes.
pub fn handler_bindings() -> TokenStream {
    let (ns, name, version) = DURABLE;
    let inline = format!(
        "package cairn:sdk-handler@{version};\nworld handler {{\n  export {ns}:{name}/handler@{version};\n}}\n"
    );
    quote! {
        ::cairn_sdk::__private::wit_bindgen::generate!({
            inline: #inline,
            path: #DURABLE_WIT,
            world: "handler",
            runtime_path: "::cairn_sdk::__private::wit_bindgen::rt",
        });
    }
}

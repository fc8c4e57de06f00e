//! `#[cairn_sdk::object]` and `#[cairn_sdk::service]`.
//!
//! Over an `impl`, every `fn` is a handler: `fn name(ctx: &Ctx[, input: In]) -> Result<Out, E>`
//! with `In: Deserialize` (or `&[u8]`, the raw input, for a handler that decodes its own),
//! `Out: Serialize`, `E: Into<Failure>`. The context type says what the
//! handler may do and is checked here: `Context` in a plain service, `ObjectContext` in an
//! exclusive handler of a keyed object, `SharedContext` in a `#[shared]` one. The macro writes
//! `cairn_sdk::__private::Service` (name, kind, handler table, dispatch with JSON in and out),
//! and the `cairn:durable/handler` export.
//!
//! Over a `trait` (the same signatures, no bodies) it declares a service that another component
//! implements (or this one, for calls to itself), and writes its typed client `{Trait}Client`:
//! there the inputs must serialize and the outputs deserialize, which an implementation's types
//! need not.

use std::collections::HashMap;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, LitStr, ReturnType, Signature, Token, Type, Visibility};

/// Which macro: a plain service or a keyed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Object,
}

/// How a handler runs beside others on its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Exclusive,
    Shared,
}

/// `#[object(name = "Cart", rename_all = "PascalCase")]`.
#[derive(Default)]
struct Args {
    name: Option<LitStr>,
    pascal_case: bool,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut args = Args::default();
        while !input.is_empty() {
            let key: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            match key.to_string().as_str() {
                "name" => args.name = Some(value),
                "rename_all" if value.value() == "PascalCase" => args.pascal_case = true,
                "rename_all" => {
                    return Err(syn::Error::new(
                        value.span(),
                        "rename_all supports \"PascalCase\" (handler `process_order` is `ProcessOrder`)",
                    ));
                }
                other => {
                    return Err(syn::Error::new(
                        key.span(),
                        format!("unknown argument `{other}`: expected `name` or `rename_all`"),
                    ));
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// One handler, as read from its signature.
struct Handler {
    ident: Ident,
    /// The name callers use (`POST /{service}/{key}/{name}`).
    name: String,
    access: Access,
    ctx_mut: bool,
    input: Option<Type>,
    output: Type,
    ret_span: Span,
}

pub fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let result = syn::parse2::<Args>(attr).and_then(|args| {
        if let Ok(item_impl) = syn::parse2::<syn::ItemImpl>(item.clone()) {
            expand_impl(kind, &args, item_impl)
        } else {
            let item_trait = syn::parse2::<syn::ItemTrait>(item).map_err(|e| {
                syn::Error::new(
                    e.span(),
                    "#[cairn_sdk::object] / #[cairn_sdk::service] go on an `impl` (a service) or a `trait` (another component's service, for its client)",
                )
            })?;
            expand_trait(kind, &args, item_trait)
        }
    });
    result.unwrap_or_else(syn::Error::into_compile_error)
}

fn expand_impl(kind: Kind, args: &Args, mut item: syn::ItemImpl) -> syn::Result<TokenStream> {
    if let Some((_, path, _)) = &item.trait_ {
        return Err(syn::Error::new(
            path.span(),
            "put the attribute on an inherent `impl Type { … }`, not a trait impl",
        ));
    }
    if !item.generics.params.is_empty() {
        return Err(syn::Error::new(
            item.generics.span(),
            "a service type has no generics",
        ));
    }
    let ty = match &*item.self_ty {
        Type::Path(path) if path.qself.is_none() => path.path.get_ident().cloned(),
        _ => None,
    }
    .ok_or_else(|| {
        syn::Error::new(
            item.self_ty.span(),
            "expected the name of a type of this module, e.g. `impl Cart`",
        )
    })?;
    let mut handlers = Vec::new();
    for impl_item in &mut item.items {
        if let syn::ImplItem::Fn(f) = impl_item {
            handlers.push(read_handler(kind, args, &mut f.attrs, &f.sig)?);
        }
    }
    check_names(&handlers)?;
    let name = args
        .name
        .as_ref()
        .map_or_else(|| ty.to_string(), LitStr::value);
    let service = service_impl(kind, &ty, &name, &handlers);
    Ok(quote! {
        #item
        #service
        ::cairn_sdk::__export_handler!(#ty);
    })
}

fn expand_trait(kind: Kind, args: &Args, mut item: syn::ItemTrait) -> syn::Result<TokenStream> {
    let mut handlers = Vec::new();
    for trait_item in &mut item.items {
        if let syn::TraitItem::Fn(f) = trait_item {
            if f.default.is_some() {
                return Err(syn::Error::new(
                    f.sig.ident.span(),
                    "a declared handler has no body: its implementation is another component",
                ));
            }
            handlers.push(read_handler(kind, args, &mut f.attrs, &f.sig)?);
        }
    }
    check_names(&handlers)?;
    let name = args
        .name
        .as_ref()
        .map_or_else(|| item.ident.to_string(), LitStr::value);
    let client_ident = format_ident!("{}Client", item.ident);
    let docs: Vec<_> = item
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .cloned()
        .collect();
    let client = client(kind, &name, &client_ident, &item.vis, &handlers);
    Ok(quote! {
        // Kept (with its attributes read) so that its types are checked and its imports used.
        #[allow(dead_code)]
        #item
        #(#docs)*
        #client
    })
}

/// Reads one handler and strips its `#[exclusive]`, `#[shared]`, `#[handler(..)]` attributes.
fn read_handler(
    kind: Kind,
    args: &Args,
    attrs: &mut Vec<Attribute>,
    sig: &Signature,
) -> syn::Result<Handler> {
    let mut access = None;
    let mut explicit_name = None;
    let mut error = None;
    attrs.retain(|attr| {
        let path = attr.path();
        if path.is_ident("exclusive") || path.is_ident("shared") {
            let this = if path.is_ident("shared") {
                Access::Shared
            } else {
                Access::Exclusive
            };
            if kind == Kind::Service {
                error.get_or_insert(syn::Error::new(
                    attr.span(),
                    "a plain service has no exclusive or shared handlers: only a keyed object (#[cairn_sdk::object]) has",
                ));
            } else if access.replace(this).is_some() {
                error.get_or_insert(syn::Error::new(
                    attr.span(),
                    "a handler is either #[exclusive] or #[shared]",
                ));
            }
            false
        } else if path.is_ident("handler") {
            let parsed = attr.parse_args_with(|input: ParseStream<'_>| {
                let key: Ident = input.parse()?;
                if key != "name" {
                    return Err(syn::Error::new(key.span(), "expected `name = \"…\"`"));
                }
                input.parse::<Token![=]>()?;
                input.parse::<LitStr>()
            });
            match parsed {
                Ok(name) => explicit_name = Some(name.value()),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            false
        } else {
            true
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    let access = access.unwrap_or(Access::Exclusive);
    if let Some(asyncness) = &sig.asyncness {
        return Err(syn::Error::new(
            asyncness.span(),
            "a handler is not async: durable calls block the guest and the host suspends it",
        ));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "a handler has no generics",
        ));
    }
    let mut inputs = sig.inputs.iter();
    let (ctx_ty, ctx_mut) = match inputs.next() {
        Some(FnArg::Typed(arg)) => match &*arg.ty {
            Type::Reference(r) => (&*r.elem, r.mutability.is_some()),
            other => return Err(context_error(kind, access, other.span())),
        },
        Some(FnArg::Receiver(receiver)) => {
            return Err(syn::Error::new(
                receiver.span(),
                "a handler takes no `self`: its first parameter is its context",
            ));
        }
        None => return Err(context_error(kind, access, sig.ident.span())),
    };
    let expected = context_name(kind, access);
    let found = match ctx_ty {
        Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    };
    if found.as_deref() != Some(expected) {
        return Err(context_error(kind, access, ctx_ty.span()));
    }
    let input = match inputs.next() {
        Some(FnArg::Typed(arg)) => Some((*arg.ty).clone()),
        Some(FnArg::Receiver(r)) => return Err(syn::Error::new(r.span(), "unexpected `self`")),
        None => None,
    };
    if let Some(extra) = inputs.next() {
        return Err(syn::Error::new(
            extra.span(),
            "a handler takes its context and at most one input: put several values in one struct",
        ));
    }
    let (output, ret_span) = result_ok_type(&sig.output)?;
    let name = explicit_name.unwrap_or_else(|| {
        let rust = sig.ident.unraw().to_string();
        if args.pascal_case {
            pascal_case(&rust)
        } else {
            rust
        }
    });
    Ok(Handler {
        ident: sig.ident.clone(),
        name,
        access,
        ctx_mut,
        input,
        output,
        ret_span,
    })
}

fn context_name(kind: Kind, access: Access) -> &'static str {
    match (kind, access) {
        (Kind::Service, _) => "Context",
        (Kind::Object, Access::Exclusive) => "ObjectContext",
        (Kind::Object, Access::Shared) => "SharedContext",
    }
}

fn context_error(kind: Kind, access: Access, span: Span) -> syn::Error {
    let message = match (kind, access) {
        (Kind::Service, _) => {
            "a handler of a plain service takes `&Context` first: a plain service has no state"
        }
        (Kind::Object, Access::Exclusive) => {
            "an exclusive handler takes `&ObjectContext` (or `&mut ObjectContext`) first"
        }
        (Kind::Object, Access::Shared) => {
            "a #[shared] handler takes `&SharedContext` first: it reads the object's state and cannot write it"
        }
    };
    syn::Error::new(span, message)
}

/// `Out` of `-> Result<Out, E>`.
fn result_ok_type(output: &ReturnType) -> syn::Result<(Type, Span)> {
    let error = |span| {
        syn::Error::new(
            span,
            "a handler returns `Result<Output, E>` with `E: Into<cairn_sdk::Failure>` (e.g. `Result<Order, Failure>`)",
        )
    };
    let ReturnType::Type(_, ty) = output else {
        return Err(error(output.span()));
    };
    let Type::Path(path) = &**ty else {
        return Err(error(ty.span()));
    };
    let Some(last) = path.path.segments.last() else {
        return Err(error(ty.span()));
    };
    if last.ident != "Result" {
        return Err(error(ty.span()));
    }
    match &last.arguments {
        syn::PathArguments::AngleBracketed(args) => match args.args.first() {
            Some(syn::GenericArgument::Type(ok)) if args.args.len() == 2 => {
                Ok((ok.clone(), ty.span()))
            }
            _ => Err(error(ty.span())),
        },
        _ => Err(error(ty.span())),
    }
}

fn check_names(handlers: &[Handler]) -> syn::Result<()> {
    let mut seen: HashMap<&str, &Ident> = HashMap::new();
    for h in handlers {
        if let Some(first) = seen.insert(&h.name, &h.ident) {
            return Err(syn::Error::new(
                h.ident.span(),
                format!(
                    "duplicate handler name `{}`: `fn {first}` has it already",
                    h.name
                ),
            ));
        }
    }
    Ok(())
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut chars = s.chars();
            chars.next().map_or_else(String::new, |c| {
                c.to_uppercase().chain(chars).collect::<String>()
            })
        })
        .collect()
}

/// `&[u8]`: a handler that decodes its own input gets the raw bytes.
fn is_bytes(ty: &Type) -> bool {
    let Type::Reference(r) = ty else {
        return false;
    };
    let Type::Slice(slice) = &*r.elem else {
        return false;
    };
    matches!(&*slice.elem, Type::Path(p) if p.path.is_ident("u8"))
}

fn kind_tokens(kind: Kind) -> TokenStream {
    match kind {
        Kind::Service => quote!(::cairn_sdk::__private::ServiceKind::Service),
        Kind::Object => quote!(::cairn_sdk::__private::ServiceKind::KeyedObject),
    }
}

/// `impl cairn_sdk::__private::Service for Type`.
fn service_impl(kind: Kind, ty: &Ident, name: &str, handlers: &[Handler]) -> TokenStream {
    let kind_tokens = kind_tokens(kind);
    let infos = handlers.iter().map(|h| {
        let name = &h.name;
        let access = match h.access {
            Access::Exclusive => quote!(::cairn_sdk::__private::HandlerKind::Exclusive),
            Access::Shared => quote!(::cairn_sdk::__private::HandlerKind::Shared),
        };
        quote!(::cairn_sdk::__private::HandlerInfo { name: #name, kind: #access })
    });
    let arms = handlers.iter().map(|h| {
        let wire = &h.name;
        let f = &h.ident;
        let ctx_ty = format_ident!("{}", context_name(kind, h.access));
        let ctx = if h.ctx_mut {
            quote!(&mut ctx)
        } else {
            quote!(&ctx)
        };
        let input = h.input.as_ref().map(|t| {
            if is_bytes(t) {
                quote!(input)
            } else {
                quote_spanned!(t.span()=> <#t as ::cairn_sdk::__private::HandlerInput>::decode(input)?)
            }
        });
        let output = &h.output;
        let encode = quote_spanned!(h.ret_span=>
            ::cairn_sdk::__private::encode_output::<#output, _>(output)
        );
        quote! {
            #wire => {
                #[allow(unused_mut)]
                let mut ctx = ::cairn_sdk::#ctx_ty::__new();
                let output = Self::#f(#ctx, #input);
                #encode
            }
        }
    });
    quote! {
        impl ::cairn_sdk::__private::Service for #ty {
            const NAME: &'static str = #name;
            const KIND: ::cairn_sdk::__private::ServiceKind = #kind_tokens;
            const HANDLERS: &'static [::cairn_sdk::__private::HandlerInfo] = &[#(#infos),*];

            fn handle(
                handler: &str,
                input: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::cairn_sdk::Failure> {
                #[allow(unused_variables)]
                let input = input;
                match handler {
                    #(#arms)*
                    other => ::core::result::Result::Err(
                        ::cairn_sdk::__private::no_handler(#name, other),
                    ),
                }
            }
        }
    }
}

/// `{Type}Client<'ctx>`: one method per handler, each giving a [`Request`] to call or send.
fn client(
    kind: Kind,
    name: &str,
    client: &Ident,
    vis: &Visibility,
    handlers: &[Handler],
) -> TokenStream {
    let client_trait = match kind {
        Kind::Service => quote!(::cairn_sdk::ServiceClient),
        Kind::Object => quote!(::cairn_sdk::ObjectClient),
    };
    let methods = handlers.iter().map(|h| {
        let f = &h.ident;
        let wire = &h.name;
        let output = &h.output;
        let doc = format!("`{name}/{wire}`: call it (`.call()`) or send it (`.send()`).");
        match &h.input {
            Some(input) => quote! {
                #[doc = #doc]
                pub fn #f(&self, input: &#input) -> ::cairn_sdk::Request<'ctx, #output> {
                    self.target.request(#wire, input)
                }
            },
            None => quote! {
                #[doc = #doc]
                pub fn #f(&self) -> ::cairn_sdk::Request<'ctx, #output> {
                    self.target.request(#wire, &())
                }
            },
        }
    });
    let doc =
        format!("A typed client of `{name}`, from `ctx.object_client` / `ctx.service_client`.");
    quote! {
        #[doc = #doc]
        #vis struct #client<'ctx> {
            target: ::cairn_sdk::__private::ClientTarget<'ctx>,
        }

        impl<'ctx> #client_trait<'ctx> for #client<'ctx> {
            const SERVICE: &'static str = #name;

            fn from_target(target: ::cairn_sdk::__private::ClientTarget<'ctx>) -> Self {
                Self { target }
            }
        }

        impl<'ctx> #client<'ctx> {
            #(#methods)*
        }
    }
}
